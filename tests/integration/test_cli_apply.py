"""``netplane apply|get|delete`` against a real server on a Unix socket: bad
input gives one clear line and stores nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

NETPLANE = str(Path(sys.executable).with_name("netplane"))

GOOD = """
apiVersion: v1
kind: Service
metadata: {name: good}
spec:
  selector: {app: good}
  ports: [{port: 80}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("server")
    sock = tmp / "api.sock"
    proc = subprocess.Popen(
        [NETPLANE, "server", "--data-dir", str(tmp / "data"), "--socket-path", str(sock),
         "--bind-address", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), "server did not start"
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(sock: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NETPLANE, "--socket", str(sock), *args], capture_output=True,
                          text=True, input=stdin, timeout=30)


def services(sock: Path) -> list[str]:
    out = run(sock, "get", "svc", "-o", "json")
    return [i["metadata"]["name"] for i in json.loads(out.stdout)["items"]]


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_malformed_yaml_is_one_line_and_stores_nothing(server: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "---\napiVersion: v1\nkind: Service\nmetadata: {name: [oops\n")
    line = _one_line_error(run(server, "apply", "-f", str(bad)))
    assert "bad.yaml:" in line and "invalid YAML" in line
    assert "good" not in services(server)


def test_unknown_kind_is_one_line_and_stores_nothing(server: Path) -> None:
    doc = GOOD + "---\napiVersion: v1\nkind: Gizmo\nmetadata: {name: g}\n"
    line = _one_line_error(run(server, "apply", "-f", "-", stdin=doc))
    assert "unknown kind v1/Gizmo" in line
    assert "good" not in services(server)


def test_invalid_name_is_one_line_with_field_path(server: Path) -> None:
    doc = GOOD + "---\n" + GOOD.replace("name: good", "name: Bad_Name")
    line = _one_line_error(run(server, "apply", "-f", "-", stdin=doc))
    assert "metadata.name" in line and "Bad_Name" in line
    assert "good" not in services(server)


def test_server_side_rejection_stores_nothing(server: Path) -> None:
    # Valid locally, but the ClusterIP is taken by the kubernetes Service.
    doc = GOOD + "---\n" + GOOD.replace("name: good", "name: clash").replace(
        "spec:", "spec:\n  clusterIP: 10.96.0.1")
    line = _one_line_error(run(server, "apply", "-f", "-", stdin=doc))
    assert "spec.clusterIP" in line and "already allocated" in line
    assert "good" not in services(server) and "clash" not in services(server)


def test_apply_get_delete_round_trip(server: Path) -> None:
    out = run(server, "apply", "-f", "-", stdin=GOOD)
    assert out.stdout.strip() == "service/good created", out.stderr
    assert run(server, "apply", "-f", "-", stdin=GOOD).stdout.strip() == "service/good unchanged"
    changed = GOOD.replace("port: 80", "port: 8080")
    assert run(server, "apply", "-f", "-", stdin=changed).stdout.strip() == \
        "service/good configured"
    table = run(server, "get", "services", "good").stdout
    assert table.splitlines()[0].split()[:4] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    assert "8080/TCP" in table
    assert run(server, "get", "svc", "-A").stdout.splitlines()[0].startswith("NAMESPACE")
    assert run(server, "delete", "svc", "good").stdout.strip() == 'service "good" deleted'
    missing = run(server, "get", "svc", "good")
    assert missing.returncode == 1 and 'services "good" not found' in missing.stderr


def test_unknown_resource_type(server: Path) -> None:
    line = _one_line_error(run(server, "get", "gizmos"))
    assert 'unknown resource type "gizmos"' in line


def test_kubectl_spellings(server: Path) -> None:
    for spelling in ("po", "pod", "pods", "svc", "service", "no", "nodes", "deploy",
                     "deployments", "ep", "endpoints"):
        assert run(server, "get", spelling).returncode == 0, spelling
