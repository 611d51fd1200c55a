"""Real ``kubectl`` against ``netplane server``: TLS with the server's own CA,
a bearer token, discovery, server-side Table printing, create from a
manifest. Everything stays on loopback (127.0.0.1, a free port)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK),
                                reason="kubectl is not installed (looked on PATH and in "
                                       "/usr/bin/kubectl)")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: hello
        image: busybox
        command: [sleep, "3600"]
"""


@dataclass
class Cluster:
    home: Path
    kubeconfig: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "KUBECONFIG": str(self.kubeconfig)}
        out = subprocess.run([KUBECTL, "--cache-dir", str(self.home / "cache"),
                              "--request-timeout=20s", *args],
                             capture_output=True, text=True, env=env, timeout=60, check=False)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out


def wait_listening(port_file: Path, proc: subprocess.Popen[bytes], log: Path) -> int:
    """The port the server chose (it was started with --port 0), once it answers."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text()}")
        try:
            port = int(port_file.read_text())
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return port
        except (OSError, ValueError):
            time.sleep(0.1)
    pytest.fail(f"the server did not listen on 127.0.0.1: {log.read_text()}")


def write_kubeconfig(path: Path, *, port: int, ca: Path, token: str) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
    }
    path.write_text(json.dumps(config))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("kubectl")
    data, log = base / "data", base / "server.log"
    cmd = [sys.executable, "-c", "import sys; from netplane.cli.main import main; "
           "sys.exit(main())", "server", "--data-dir", str(data),
           "--socket-path", str(base / "api.sock"), "--bind-address", "127.0.0.1",
           "--advertise-address", "127.0.0.1", "--port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = wait_listening(data / "apiserver.port", proc, log)
        home = base / "home"
        home.mkdir()
        kubeconfig = base / "kubeconfig"
        write_kubeconfig(kubeconfig, port=port, ca=data / "pki" / "ca.crt",
                         token=(data / "pki" / "admin.token").read_text().strip())
        yield Cluster(home, kubeconfig)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_get_namespaces(cluster: Cluster) -> None:
    out = rows(cluster.kubectl("get", "ns").stdout)
    assert out[0] == ["NAME", "STATUS", "AGE"]
    assert {r[0]: r[1] for r in out[1:]} == {
        "default": "Active", "kube-public": "Active", "kube-system": "Active"}


def test_get_services_in_all_namespaces(cluster: Cluster) -> None:
    out = rows(cluster.kubectl("get", "svc", "-A").stdout)
    assert out[0][:5] == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    by_name = {r[1]: r for r in out[1:]}
    assert by_name["kubernetes"][:6] == ["default", "kubernetes", "ClusterIP", "10.96.0.1",
                                         "<none>", "443/TCP"]
    assert by_name["kube-dns"][:6] == ["kube-system", "kube-dns", "ClusterIP", "10.96.0.10",
                                       "<none>", "53/UDP,53/TCP"]


def test_get_pods_and_nodes_when_there_are_none(cluster: Cluster) -> None:
    pods = cluster.kubectl("get", "pods", "-A", "-l", "app=nothing")
    assert "No resources found" in pods.stderr
    nodes = cluster.kubectl("get", "nodes")
    assert "No resources found" in nodes.stderr


def test_create_deployment_and_get_it(cluster: Cluster) -> None:
    manifest = cluster.home / "hello.yaml"
    manifest.write_text(DEPLOYMENT)
    created = cluster.kubectl("create", "-f", str(manifest), "--validate=false")
    assert created.stdout.strip() == "deployment.apps/hello created"
    out = rows(cluster.kubectl("get", "deploy").stdout)
    assert out[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [r[0] for r in out[1:]] == ["hello"]
    again = cluster.kubectl("create", "-f", str(manifest), "--validate=false", check=False)
    assert again.returncode != 0
    assert 'deployments "hello" already exists' in again.stderr
    as_json = json.loads(cluster.kubectl("get", "deploy", "hello", "-o", "json").stdout)
    assert as_json["spec"]["template"]["spec"]["containers"][0]["command"] == ["sleep", "3600"]
    # The controllers make its pod; with no nodes it stays Pending.
    deadline = time.monotonic() + 15
    while True:
        pods = rows(cluster.kubectl("get", "pods", "-A", "-l", "app=hello").stdout)
        if len(pods) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pods[0][:4] == ["NAMESPACE", "NAME", "READY", "STATUS"]
    assert pods[1][0] == "default" and pods[1][1].startswith("hello-")
    assert pods[1][2:4] == ["0/1", "Pending"]


def test_get_pods_json_parses(cluster: Cluster) -> None:
    body = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)
    assert body["kind"] == "List" and isinstance(body["items"], list)
    for pod in body["items"]:
        assert pod["kind"] == "Pod" and pod["metadata"]["resourceVersion"]


def test_errors_reach_kubectl(cluster: Cluster) -> None:
    missing = cluster.kubectl("get", "pod", "nope", check=False)
    assert missing.returncode != 0
    assert 'pods "nope" not found' in missing.stderr
    bad = cluster.kubectl("get", "pods", "-l", "app in nothing", check=False)
    assert bad.returncode != 0


def test_wrong_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    other = tmp_path / "kubeconfig"
    other.write_text(json.dumps(config))
    out = Cluster(cluster.home, other).kubectl("get", "ns", check=False)
    assert out.returncode != 0
    assert "Unauthorized" in out.stderr or "must be logged in" in out.stderr
