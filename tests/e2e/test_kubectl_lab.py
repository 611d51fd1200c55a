"""The real kubectl and the Python ``kubernetes`` client against a real lab,
from the user's shell through the lab's kubeconfig, and from inside a pod
through ``load_incluster_config()`` with and without an RBAC binding.

Address plan: the lab's defaults (underlay 192.168.56.0/24, pods
10.244.N.0/24, Services 10.96.0.0/12 with the API at 10.96.0.1:443)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Lab, wait_for

pytestmark = pytest.mark.e2e
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
if not os.access(KUBECTL, os.X_OK):
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason="kubectl is not installed")]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      containers:
      - name: echo
        image: netplane/echo
        ports: [{{containerPort: 8080}}]
"""

# What the pod runs: the Python client with in-cluster configuration.
IN_CLUSTER = textwrap.dedent("""\
    from kubernetes import client, config
    config.load_incluster_config()
    try:
        pods = client.CoreV1Api().list_namespaced_pod("robots")
        print("LISTED", sorted(p.metadata.name for p in pods.items))
    except client.ApiException as e:
        print("STATUS", e.status, e.body)
    """)


class Kubectl:
    def __init__(self, lab: Lab, home: Path) -> None:
        self.lab, self.home = lab, home

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                "KUBECONFIG": str(self.lab.paths.kubeconfig)}

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([KUBECTL, "--request-timeout=30s", *args], capture_output=True,
                             text=True, env=self.env, timeout=90, input=stdin, check=False)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    yield Kubectl(lab, tmp_path_factory.mktemp("kubectl-home"))


def test_apply_with_default_validation_then_reapply(kubectl: Kubectl) -> None:
    manifest = kubectl.home / "hello.yaml"
    manifest.write_text(DEPLOYMENT.format(replicas=1))
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == \
        "deployment.apps/hello created"
    manifest.write_text(DEPLOYMENT.format(replicas=2))
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == \
        "deployment.apps/hello configured"
    assert kubectl.json("get", "deploy", "hello")["spec"]["replicas"] == 2
    wait_for("2 ready replicas", lambda: kubectl.json("get", "deploy", "hello").get(
        "status", {}).get("readyReplicas") == 2, timeout=90)
    bad = kubectl.home / "bad.yaml"
    bad.write_text(DEPLOYMENT.format(replicas=1).replace("replicas:", "replica:"))
    out = kubectl("apply", "-f", str(bad), check=False)
    assert out.returncode != 0
    assert 'strict decoding error: unknown field "spec.replica"' in out.stderr


def test_create_scale_and_get(kubectl: Kubectl) -> None:
    kubectl("create", "deployment", "web", "--image=netplane/echo", "--replicas=1")
    kubectl("create", "configmap", "settings", "--from-literal=mode=fast",
            "--from-literal=size=3")
    kubectl("create", "secret", "generic", "creds", "--from-literal=password=hunter2")
    assert kubectl.json("get", "cm", "settings")["data"] == {"mode": "fast", "size": "3"}
    secret = kubectl.json("get", "secret", "creds")
    assert secret["type"] == "Opaque"
    assert kubectl("get", "secret", "creds", "-o", "jsonpath={.data.password}").stdout == \
        "aHVudGVyMg=="
    assert kubectl("scale", "deployment/web", "--replicas=2").stdout.strip() == \
        "deployment.apps/web scaled"
    wait_for("2 pods of web", lambda: len(kubectl.json("get", "pods", "-l", "app=web")[
        "items"]) == 2, timeout=60)
    everything = kubectl("get", "all").stdout
    for name in ("deployment.apps/web", "service/kubernetes", "replicaset.apps/web-"):
        assert name in everything
    assert "pod/web-" in everything


def test_events_and_describe(kubectl: Kubectl) -> None:
    wait_for("a started hello pod", lambda: any(
        e["reason"] == "Started" and e["involvedObject"]["name"].startswith("hello-")
        for e in kubectl.json("get", "events")["items"]), timeout=60)
    listing = kubectl("get", "events", "--sort-by=.lastTimestamp").stdout.splitlines()
    assert listing[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    reasons = {line.split()[2] for line in listing[1:]}
    assert {"Scheduled", "Started", "SuccessfulCreate", "ScalingReplicaSet"} <= reasons
    pod = kubectl.json("get", "pods", "-l", "app=hello")["items"][0]["metadata"]["name"]
    described = kubectl("describe", "pod", pod).stdout
    events = described[described.index("Events:"):]
    assert "Scheduled" in events and f"Successfully assigned default/{pod} to node-" in events
    assert "Started container echo" in events


def test_discovery_explain_and_can_i(kubectl: Kubectl) -> None:
    resources = kubectl("api-resources").stdout
    for line in ("configmaps", "secrets", "serviceaccounts", "events", "deployments",
                 "rolebindings"):
        assert f"\n{line} " in resources
    explained = kubectl("explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in explained and "type" in explained
    assert kubectl("auth", "can-i", "create", "deployments").stdout.strip() == "yes"
    sa = "--as=system:serviceaccount:default:default"
    assert kubectl("auth", "can-i", "list", "secrets", sa, check=False).stdout.strip() == "no"
    assert kubectl.json("get", "sa", "default")["metadata"]["name"] == "default"


def test_python_client_from_the_users_shell(lab: Lab) -> None:
    from kubernetes import client, config, watch

    api = config.new_client_from_config(str(lab.paths.kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"by": "py"}),
                              data={"a": "1"})
    created = core.create_namespaced_config_map("default", body)
    stream = watch.Watch().stream(core.list_namespaced_config_map, "default",
                                  label_selector="by=py",
                                  resource_version=created.metadata.resource_version,
                                  timeout_seconds=30)
    core.patch_namespaced_config_map("py-cm", "default", {"data": {"a": "2"}})
    event = next(stream)
    assert event["type"] == "MODIFIED" and event["object"].data == {"a": "2"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "default", label_selector="by=py").items] == ["py-cm"]
    scaled = apps.patch_namespaced_deployment_scale("web", "default",
                                                    {"spec": {"replicas": 1}})
    assert scaled.spec.replicas == 1
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 1
    core.delete_namespaced_config_map("py-cm", "default")
    assert not core.list_namespaced_config_map("default", label_selector="by=py").items


def _in_cluster_pod(kubectl: Kubectl, name: str) -> str:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "robots"},
           "spec": {"restartPolicy": "Never", "serviceAccountName": "lister",
                    "containers": [{"name": "py", "image": "python",
                                    "command": [sys.executable, "-c", IN_CLUSTER]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    wait_for(f"{name} to finish", lambda: kubectl.json("get", "pod", name, "-n", "robots")[
        "status"].get("phase") in ("Succeeded", "Failed"), timeout=90)
    return str(kubectl("logs", name, "-n", "robots").stdout)


def test_python_client_in_cluster_with_and_without_rbac(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "robots")
    kubectl("create", "serviceaccount", "lister", "-n", "robots")
    denied = _in_cluster_pod(kubectl, "no-binding")
    assert "STATUS 403" in denied
    assert ('pods is forbidden: User \\"system:serviceaccount:robots:lister\\" cannot list '
            'resource \\"pods\\" in API group \\"\\" in the namespace \\"robots\\"') in denied
    kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", "robots")
    kubectl("create", "rolebinding", "lister-reads", "--role=pod-reader",
            "--serviceaccount=robots:lister", "-n", "robots")
    allowed = _in_cluster_pod(kubectl, "with-binding")
    assert "LISTED ['no-binding', 'with-binding']" in allowed


def test_logs_of_the_previous_instance(kubectl: Kubectl) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": [
               "sh", "-c", "echo instance $(cat /proc/sys/kernel/random/uuid); exit 1"]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def restarted() -> bool:
        statuses = kubectl.json("get", "pod", "crasher")["status"].get("containerStatuses")
        return bool(statuses) and statuses[0].get("restartCount", 0) >= 1
    wait_for("crasher to restart", restarted, timeout=90)
    before = kubectl("logs", "crasher", "--previous").stdout.split()
    assert before[0] == "instance" and len(before) == 2
    now = wait_for("the new instance's output", lambda: kubectl(
        "logs", "crasher", check=False).stdout.split(), timeout=60)
    assert now[0] == "instance" and now[1] != before[1]


def test_server_side_apply_conflict_and_force(kubectl: Kubectl) -> None:
    manifest = kubectl.home / "ssa.yaml"
    manifest.write_text(DEPLOYMENT.format(replicas=1).replace("hello", "ssa"))
    out = kubectl("apply", "--server-side", "-f", str(manifest))
    assert out.stdout.strip() == "deployment.apps/ssa serverside-applied"
    kubectl("scale", "deployment/ssa", "--replicas=2")
    failed = kubectl("apply", "--server-side", "-f", str(manifest), check=False)
    assert failed.returncode != 0
    assert 'conflict with "kubectl" with subresource "scale"' in failed.stderr
    assert ".spec.replicas" in failed.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert kubectl.json("get", "deploy", "ssa")["spec"]["replicas"] == 1


def test_rollout_status_history_undo_pause_resume_and_restart(kubectl: Kubectl) -> None:
    """kubectl's rollout commands read and write what the Deployment
    controller keeps: revisions on ReplicaSets, change-cause, conditions."""
    manifest = kubectl.home / "roll.yaml"
    manifest.write_text(DEPLOYMENT.replace("name: hello", "name: roll").replace(
        "app: hello", "app: roll").format(replicas=2).replace(
        "spec:\n  replicas", "spec:\n  strategy:\n    rollingUpdate: {maxSurge: 1, "
        "maxUnavailable: 0}\n  replicas"))
    kubectl("apply", "-f", str(manifest))
    status = kubectl("rollout", "status", "deployment/roll", "--timeout=90s")
    assert 'deployment "roll" successfully rolled out' in status.stdout

    kubectl("set", "env", "deployment/roll", "COLOUR=blue")
    kubectl("annotate", "deployment/roll", "kubernetes.io/change-cause=blue")
    status = kubectl("rollout", "status", "deployment/roll", "--timeout=90s")
    assert 'deployment "roll" successfully rolled out' in status.stdout
    history = kubectl("rollout", "history", "deployment/roll").stdout.splitlines()
    assert history[0] == "deployment.apps/roll "
    rows = [line.split(None, 1) for line in history[2:] if line.strip()]
    assert rows == [["1", "<none>"], ["2", "blue"]]
    revision_2 = kubectl("rollout", "history", "deployment/roll", "--revision=2").stdout
    assert "COLOUR:\tblue" in revision_2 or "COLOUR: blue" in revision_2.replace("\t", " ")

    undo = kubectl("rollout", "undo", "deployment/roll").stdout
    assert undo.strip() == "deployment.apps/roll rolled back"
    kubectl("rollout", "status", "deployment/roll", "--timeout=90s")
    env = kubectl.json("get", "deploy", "roll")["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in env
    rows = [line.split(None, 1)[0] for line in
            kubectl("rollout", "history", "deployment/roll").stdout.splitlines()[2:]
            if line.strip()]
    assert rows == ["2", "3"]  # revision 1 came back as 3
    again = kubectl("rollout", "undo", "deployment/roll", "--to-revision=3", check=False)
    assert "skipped rollback (current template already matches revision 3)" in again.stdout

    kubectl("rollout", "pause", "deployment/roll")
    kubectl("set", "image", "deployment/roll", "echo=netplane/echo:paused")
    paused = kubectl.json("get", "deploy", "roll")
    wait_for("the pause observed", lambda: any(
        c["reason"] == "DeploymentPaused" for c in kubectl.json("get", "deploy", "roll")[
            "status"].get("conditions", [])), timeout=30)
    replica_sets = kubectl.json("get", "rs", "-l", "app=roll")["items"]
    assert len(replica_sets) == 2 and paused["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "3"
    kubectl("set", "image", "deployment/roll", "echo=netplane/echo")  # back: nothing to roll
    kubectl("rollout", "resume", "deployment/roll")
    kubectl("rollout", "restart", "deployment/roll")
    status = kubectl("rollout", "status", "deployment/roll", "--timeout=90s")
    assert 'deployment "roll" successfully rolled out' in status.stdout
    template = kubectl.json("get", "deploy", "roll")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert kubectl.json("get", "deploy", "roll")["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"] == "4"


ZERO_DOWNTIME = """\
apiVersion: v1
kind: Service
metadata: {name: steady}
spec:
  selector: {app: steady}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 3
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: steady}
  template:
    metadata:
      labels: {app: steady}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
      - name: echo
        image: netplane/echo
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
        lifecycle:
          # Time for every node's proxy to drop the endpoint, as users give it.
          preStop:
            sleep: {seconds: 2}
"""

# What the client pod runs: a new connection per request, by name, as a curl
# loop does; a progress line per 100 requests; stops when told on stdin once
# it has made at least MIN requests.
CURL_LOOP = textwrap.dedent("""\
    import http.client, sys, threading
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    ok = failed = 0
    while not (stop.is_set() and ok + failed >= int(sys.argv[1])):
        conn = http.client.HTTPConnection("steady.default.svc.cluster.local", 80, timeout=5)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200 and body.startswith(b"pod=steady-"):
                ok += 1
            else:
                failed += 1
                print("BAD", resp.status, body[:80], flush=True)
        except Exception as e:
            failed += 1
            print("FAILED", repr(e), flush=True)
        finally:
            conn.close()
        if (ok + failed) % 100 == 0:
            print("PROGRESS", ok, failed, flush=True)
    print("DONE", ok, failed, flush=True)
    """)


def test_rolling_update_under_a_curl_loop_loses_no_request(kubectl: Kubectl) -> None:
    """Readiness gates each step; a pod being replaced leaves the Service's
    endpoints, runs its preStop hook, then finishes what it was answering."""
    manifest = kubectl.home / "steady.yaml"
    manifest.write_text(ZERO_DOWNTIME)
    kubectl("apply", "-f", str(manifest))
    kubectl("run", "curler", "--image=busybox", "--restart=Never", "--command", "--",
            "sleep", "3600")
    kubectl("rollout", "status", "deployment/steady", "--timeout=90s")
    kubectl("wait", "--for=condition=Ready", "pod/curler", "--timeout=60s")
    before = {p["metadata"]["name"] for p in kubectl.json("get", "pods", "-l", "app=steady")[
        "items"]}

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(kubectl.home),
           "KUBECONFIG": str(kubectl.lab.paths.kubeconfig)}
    loop = subprocess.Popen([KUBECTL, "exec", "-i", "curler", "--", "python3", "-c", CURL_LOOP,
                             "2000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    assert loop.stdin is not None and loop.stdout is not None
    lines: list[str] = []
    try:
        for line in loop.stdout:  # traffic flows before the rollout starts
            lines.append(line)
            if line.startswith(("PROGRESS", "DONE")):
                break
        kubectl("set", "env", "deployment/steady", "VERSION=2")
        kubectl("rollout", "status", "deployment/steady", "--timeout=120s")
        wait_for("the old pods gone", lambda: not before & {
            p["metadata"]["name"] for p in kubectl.json("get", "pods", "-l", "app=steady")[
                "items"]}, timeout=90)
        loop.stdin.write("stop\n")
        loop.stdin.close()
        lines += loop.stdout.readlines()
        assert loop.wait(timeout=120) == 0, "".join(lines)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    done = [line.split() for line in lines if line.startswith("DONE")]
    assert done, "".join(lines)
    ok, failed = int(done[0][1]), int(done[0][2])
    assert failed == 0, "".join(lines[-40:])
    assert ok >= 2000
    after = kubectl.json("get", "pods", "-l", "app=steady")["items"]
    assert len(after) == 3 and all(c["name"] == "VERSION" for p in after
                                   for c in p["spec"]["containers"][0]["env"])


def test_pre_stop_hook_runs_before_sigterm_and_grace_ends_in_sigkill(
        kubectl: Kubectl, tmp_path: Path) -> None:
    """The process runtime shares the node's file system, so the hook and the
    container's SIGTERM trap can both leave a line in one file of the test's."""
    trail = tmp_path / "trail"
    trail.touch()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "polite"},
           "spec": {"terminationGracePeriodSeconds": 30, "containers": [{
               "name": "main", "image": "busybox", "command": ["sh", "-c",
                   f"trap 'echo term >> {trail}; exit 0' TERM; echo up >> {trail}; "
                   "while :; do sleep 0.1; done"],
               "lifecycle": {"preStop": {"exec": {"command": [
                   "sh", "-c", f'echo "prestop $HOSTNAME" >> {trail}']}}}}]}}
    stubborn = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "main", "image": "busybox", "command": [
                        "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": [pod, stubborn]}))
    kubectl("wait", "--for=condition=Ready", "pod/polite", "pod/stubborn", "--timeout=60s")
    wait_for("the container up", lambda: trail.read_text() == "up\n", timeout=30)
    kubectl("delete", "pod", "polite", "stubborn", "--timeout=60s")
    assert trail.read_text() == "up\nprestop polite\nterm\n"
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=stubborn",
                     "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Killing" in events


def test_post_start_hooks_run_and_hung_ones_hold_up_no_other_pod(
        kubectl: Kubectl, tmp_path: Path) -> None:
    """The agent sets new pods up a few at a time; a postStart hook that
    never ends must not keep that turn, or pods behind it would wait."""
    hooked = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"hooked-{i}"},
               "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "main", "image": "busybox",
                            "command": ["sh", "-c", "while :; do sleep 0.1; done"],
                            "lifecycle": {"postStart": {"exec": {"command": [
                                "sh", "-c", f"echo $HOSTNAME > {tmp_path}/$HOSTNAME; "
                                "sleep 600"]}}}}]}}
              for i in range(4)]
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "behind-the-hooks"},
             "spec": {"nodeName": "node-1", "containers": [
                 {"name": "echo", "image": "netplane/echo"}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": hooked}))
    wait_for("the hooks to run", lambda: sorted(f.name for f in tmp_path.iterdir())
             == [f"hooked-{i}" for i in range(4)], timeout=60)
    assert (tmp_path / "hooked-0").read_text() == "hooked-0\n"
    kubectl("apply", "-f", "-", stdin=json.dumps(plain))
    kubectl("wait", "--for=condition=Ready", "pod/behind-the-hooks", "--timeout=60s")
    kubectl("delete", "pod", "behind-the-hooks", *(f"hooked-{i}" for i in range(4)),
            "--timeout=60s")


def test_liveness_failure_restarts_the_container_then_backs_off(kubectl: Kubectl) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unwell"},
           "spec": {"containers": [{
               "name": "echo", "image": "netplane/echo", "ports": [{"containerPort": 8080}],
               "livenessProbe": {"httpGet": {"path": "/", "port": 9999}, "periodSeconds": 1,
                                 "failureThreshold": 1}}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    wait_for("the crash loop", lambda: "CrashLoopBackOff" in kubectl(
        "get", "pod", "unwell", "--no-headers").stdout, timeout=90)
    status = kubectl.json("get", "pod", "unwell")["status"]["containerStatuses"][0]
    assert status["restartCount"] >= 1
    assert status["lastState"]["terminated"]["finishedAt"]
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=unwell",
                     "-o", "jsonpath={range .items[*]}{.reason}: {.message}{'\\n'}{end}").stdout
    assert "Unhealthy: Liveness probe failed: Get \"http://" in events
    assert ":9999/\": dial tcp " in events and "connect: connection refused" in events
    assert "Killing: Container echo failed liveness probe, will be restarted" in events
    assert "BackOff: Back-off restarting failed container echo in pod unwell_default(" in events
    kubectl("delete", "pod", "unwell", "--wait=false")


def test_init_containers_then_sidecar_and_app_in_kubernetes_order(
        kubectl: Kubectl, tmp_path: Path) -> None:
    """An init container runs to completion first; the sidecar starts (its
    startup probe passes) before the app and, once the app is done, stops
    after it."""
    trail = tmp_path / "trail"
    trail.touch()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered"},
           "spec": {"restartPolicy": "Never",
                    "initContainers": [
                        {"name": "setup", "image": "busybox",
                         "command": ["sh", "-c", f"echo setup >> {trail}"]},
                        {"name": "side", "image": "busybox", "restartPolicy": "Always",
                         "command": ["sh", "-c", f"trap 'echo side-stop >> {trail}; exit 0' "
                                     f"TERM; echo side-up >> {trail}; "
                                     "while :; do sleep 0.1; done"],
                         # What holds the app back: the sidecar said it is up.
                         "startupProbe": {"exec": {"command": ["grep", "-q", "side-up",
                                                               str(trail)]},
                                          "periodSeconds": 1, "failureThreshold": 30}}],
                    "containers": [{"name": "app", "image": "busybox",
                                    "command": ["sh", "-c", f"echo app >> {trail}"]}]}}
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    wait_for("the pod to succeed", lambda: kubectl.json("get", "pod", "ordered")["status"].get(
        "phase") == "Succeeded", timeout=90)
    wait_for("the sidecar to stop", lambda: trail.read_text().endswith("side-stop\n"),
             timeout=60)
    assert trail.read_text() == "setup\nside-up\napp\nside-stop\n"
    status = kubectl.json("get", "pod", "ordered")["status"]
    assert [s["name"] for s in status["initContainerStatuses"]] == ["setup", "side"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    kubectl("delete", "pod", "ordered")


def test_cascade_foreground_waits_for_the_pods_to_stop_on_their_nodes(
        kubectl: Kubectl) -> None:
    """The Deployment stays, with its foregroundDeletion finalizer, while its
    pods stop on their nodes; one pod held by a finalizer after its node has
    stopped it holds the ReplicaSet and the Deployment too, until released."""
    kubectl("create", "deployment", "cascade", "--image=netplane/echo", "--replicas=2")
    wait_for("2 ready replicas of cascade", lambda: kubectl.json("get", "deploy", "cascade").get(
        "status", {}).get("readyReplicas") == 2, timeout=90)
    held, free = (p["metadata"]["name"]
                  for p in kubectl.json("get", "pods", "-l", "app=cascade")["items"])
    kubectl("patch", "pod", held, "--type=merge",
            "-p", json.dumps({"metadata": {"finalizers": ["example.com/hold"]}}))
    kubectl("delete", "deploy", "cascade", "--cascade=foreground", "--wait=false")
    wait_for("the free pod to go", lambda: kubectl("get", "pod", free, check=False).returncode,
             timeout=90)
    wait_for("the held pod stopped by its node", lambda: kubectl.json("get", "pod", held)[
        "metadata"].get("deletionGracePeriodSeconds") == 0, timeout=90)
    waiting = kubectl.json("get", "deploy", "cascade")["metadata"]
    assert waiting["finalizers"] == ["foregroundDeletion"] and waiting["deletionTimestamp"]
    kubectl("patch", "pod", held, "--type=json",
            "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    kubectl("wait", "--for=delete", "deploy/cascade", "--timeout=60s")
    assert not kubectl.json("get", "rs,pods", "-l", "app=cascade")["items"]


def test_every_node_renews_its_lease(kubectl: Kubectl, lab: Lab) -> None:
    nodes = sorted(n["metadata"]["name"] for n in kubectl.json("get", "nodes")["items"])
    table = kubectl("get", "leases", "-n", "kube-node-lease").stdout.splitlines()
    assert table[0].split() == ["NAME", "HOLDER", "AGE"]
    assert sorted(r.split()[:2] for r in table[1:]) == [[n, n] for n in nodes]
    first = kubectl.json("get", "lease", nodes[0], "-n", "kube-node-lease")
    assert first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"
    # Renewed every quarter of the duration: a newer renewTime comes within one.
    wait_for("the lease renewed", lambda: kubectl.json(
        "get", "lease", nodes[0], "-n", "kube-node-lease")["spec"]["renewTime"]
        > first["spec"]["renewTime"], timeout=40)


def test_every_node_reports_its_pressure_conditions(kubectl: Kubectl) -> None:
    def reported() -> Any:
        nodes = kubectl.json("get", "nodes")["items"]
        by = [{c["type"]: c for c in n["status"]["conditions"]} for n in nodes]
        return by if all({"MemoryPressure", "DiskPressure", "PIDPressure"} <= set(b)
                         for b in by) else None
    for conds in wait_for("pressure conditions on every node", reported, timeout=30):
        # Not under pressure on the machines CI runs on; read from it, not assumed.
        assert conds["MemoryPressure"]["reason"] in ("KubeletHasSufficientMemory",
                                                     "KubeletHasInsufficientMemory")
        assert conds["PIDPressure"]["reason"] == "KubeletHasSufficientPID"
        assert conds["DiskPressure"]["message"] in ("kubelet has no disk pressure",
                                                    "kubelet has disk pressure")


HTTPROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: canary
spec:
  parentRefs: [{group: "", kind: Service, name: hello, port: 8080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "1"}]}]
    backendRefs: [{name: hello-v2, port: 8080}]
  - backendRefs: [{name: hello, port: 8080}]
"""


def test_the_lab_serves_the_gateway_api_kinds(kubectl: Kubectl) -> None:
    crds = kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/httproutes.gateway.networking.k8s.io" \
        in crds
    manifest = kubectl.home / "route.yaml"
    manifest.write_text(HTTPROUTE)
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == \
        "httproute.gateway.networking.k8s.io/canary created"
    route = kubectl.json("get", "httproute", "canary")
    assert route["spec"]["rules"][1]["matches"] == [{"path": {"type": "PathPrefix",
                                                              "value": "/"}}]
    explained = kubectl("explain", "httproute.spec.rules.backendRefs").stdout
    assert "weight" in explained
    bad = kubectl("apply", "-f", "-", check=False,
                  stdin=HTTPROUTE.replace("name: x-canary", "name: x-canary, type: Fuzzy"))
    assert bad.returncode != 0 and "Unsupported value" in bad.stderr
    kubectl("delete", "httproute", "canary")
