"""What the containers of one pod share and see, in a real lab with the real
kubectl: an emptyDir (and a memory-backed one), the IPC namespace, a
ConfigMap mounted as files that follow the object, the downward API, and an
environment made from ConfigMaps, Secrets and the pod's own fields.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from netplane.node.runtime.command import entrypoint
from tests.e2e.conftest import Lab, wait_for
from tests.e2e.test_kubectl_lab import Kubectl
from tests.e2e.test_kubectl_lab import pytestmark as kubectl_marks

pytestmark = kubectl_marks

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sharing", "labels": {"app": "vols"}},
    "spec": {
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "cfg", "configMap": {"name": "game"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
        "containers": [
            {"name": "writer", "image": "busybox",
             "command": ["sh", "-c", "ipcmk -M 4096 && echo hi > /data/greeting && "
                         "while :; do sleep 1; done"],
             "volumeMounts": [{"name": "scratch", "mountPath": "/data"},
                              {"name": "fast", "mountPath": "/fast"}]},
            {"name": "reader", "image": "busybox",
             "command": ["sh", "-c", "while :; do sleep 1; done"],
             "env": [{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {
                         "name": "game", "key": "level"}}},
                     {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                         "name": "db", "key": "password"}}},
                     {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                     {"name": "GREETING", "value": "level $(LEVEL)"}],
             "envFrom": [{"configMapRef": {"name": "game"}, "prefix": "GAME_"}],
             "volumeMounts": [{"name": "scratch", "mountPath": "/shared"},
                              {"name": "cfg", "mountPath": "/etc/game"},
                              {"name": "info", "mountPath": "/etc/podinfo"}]}]}}


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    k = Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))
    k("create", "configmap", "game", "--from-literal=level=1", "--from-literal=mode=easy")
    k("create", "secret", "generic", "db", "--from-literal=password=s3cret")
    k("apply", "-f", "-", stdin=json.dumps(POD))
    k("wait", "--for=condition=Ready", "pod/sharing", "--timeout=90s")
    yield k


def sh(kubectl: Kubectl, container: str, script: str) -> str:
    return str(kubectl("exec", "sharing", "-c", container, "--", "sh", "-c", script).stdout)


def test_containers_share_an_empty_dir_and_the_ipc_namespace(kubectl: Kubectl) -> None:
    assert wait_for("the greeting", lambda: sh(kubectl, "reader", "cat /shared/greeting "
                                               "2>/dev/null || true") == "hi\n", timeout=30)
    keys = "ipcs -m | awk '$1 ~ /^0x/ {print $1}'"
    made = sh(kubectl, "writer", keys).split()
    assert len(made) == 1 and sh(kubectl, "reader", keys).split() == made
    assert sh(kubectl, "writer", "df -k /fast | tail -1").split()[:2] == ["tmpfs", "8192"]


def test_environment_from_configmap_secret_and_fields(kubectl: Kubectl) -> None:
    pod_ip = kubectl.json("get", "pod", "sharing")["status"]["podIP"]
    env = dict(line.split("=", 1) for line in sh(kubectl, "reader", "env").splitlines()
               if "=" in line)
    assert (env["LEVEL"], env["PASSWORD"], env["MY_IP"]) == ("1", "s3cret", pod_ip)
    assert (env["GAME_level"], env["GAME_mode"], env["GREETING"]) == ("1", "easy", "level 1")


def test_a_configmap_change_and_a_new_label_show_in_the_mounted_files(kubectl: Kubectl) -> None:
    assert sh(kubectl, "reader", "cat /etc/game/level") == "1"
    assert sh(kubectl, "reader", "readlink /etc/game/level") == "..data/level\n"
    kubectl("patch", "configmap", "game", "-p", '{"data": {"level": "2"}}')
    kubectl("label", "pod", "sharing", "tier=front")
    wait_for("the new level", lambda: sh(kubectl, "reader", "cat /etc/game/level") == "2",
             timeout=60)
    wait_for("the new label", lambda: sh(kubectl, "reader", "cat /etc/podinfo/labels") ==
             'app="vols"\ntier="front"', timeout=60)
    # The mount is read-only, as the kubelet mounts projections.
    denied = kubectl("exec", "sharing", "-c", "reader", "--", "touch", "/etc/game/x",
                     check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_share_process_namespace_or_a_pid_namespace_per_container(kubectl: Kubectl) -> None:
    loop = "trap 'exit 0' TERM; while :; do sleep 1; done"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one-pid-space"},
           "spec": {"shareProcessNamespace": True, "containers": [
               {"name": "app", "image": "netplane/echo"},
               {"name": "debug", "image": "busybox", "command": ["sh", "-c", loop]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    kubectl("wait", "--for=condition=Ready", "pod/one-pid-space", "--timeout=60s")
    seen = kubectl("exec", "one-pid-space", "-c", "debug", "--", "ps", "-o", "args").stdout
    # The app container's process: the echo server the runtime picked.
    assert entrypoint("netplane/echo", python=sys.executable)[-1] in seen
    # Without it each container is PID 1 of its own: the other is not there.
    apart = sh(kubectl, "writer", "ps -o pid=,args=").splitlines()
    assert apart[0].split(None, 1) == ["1", "sh -c ipcmk -M 4096 && echo hi > /data/greeting "
                                       "&& while :; do sleep 1; done"]
    assert not any("while :; do sleep 1; done" in line and "ipcmk" not in line
                   for line in apart)
    kubectl("delete", "pod", "one-pid-space")


def _keeper(kubectl: Kubectl) -> str:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keeper"},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
                    "containers": [{"name": "c", "image": "busybox",
                                    "command": ["sh", "-c", "hostname >> /data/log; "
                                                "trap 'exit 0' TERM; while :; do sleep 1; done"],
                                    "volumeMounts": [{"name": "d", "mountPath": "/data"}]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    kubectl("wait", "--for=condition=Ready", "pod/keeper", "--timeout=90s")
    return str(kubectl.json("get", "pod", "keeper")["spec"]["nodeName"])


def test_a_claim_gets_a_local_volume_that_outlives_its_pod(kubectl: Kubectl) -> None:
    """local-path (the default class) waits for the first pod, makes a folder
    on that pod's node, and keeps the pod's successors on that node."""
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}}
    kubectl("apply", "-f", "-", stdin=json.dumps(claim))
    pending = kubectl.json("get", "pvc", "data")
    assert pending["spec"]["storageClassName"] == "local-path"
    first = _keeper(kubectl)
    pvc = kubectl.json("get", "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    pv = kubectl.json("get", "pv", pvc["spec"]["volumeName"])
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == [first]
    kubectl("delete", "pod", "keeper")
    assert _keeper(kubectl) == first  # the volume's node affinity holds the pod there
    assert sh_in(kubectl, "keeper", "cat /data/log") == "keeper\nkeeper\n"
    kubectl("delete", "pod", "keeper")
    kubectl("delete", "pvc", "data")
    wait_for("the volume deleted", lambda: not kubectl.json("get", "pv")["items"], timeout=60)


def sh_in(kubectl: Kubectl, pod: str, script: str) -> str:
    return str(kubectl("exec", pod, "--", "sh", "-c", script).stdout)
