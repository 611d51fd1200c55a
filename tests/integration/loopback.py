"""A real ``netplane server`` on 127.0.0.1 (a free port, its own data
directory) and the real ``kubectl`` pointed at it through a kubeconfig with
the server's CA and admin token: what the kubectl integration tests share."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
HAVE_KUBECTL = os.access(KUBECTL, os.X_OK)


@dataclass
class Cluster:
    home: Path
    kubeconfig: Path
    data: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def kubectl(self, *args: str, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
               "KUBECONFIG": str(self.kubeconfig)}
        out = subprocess.run([KUBECTL, "--cache-dir", str(self.home / "cache"),
                              "--request-timeout=20s", *args],
                             capture_output=True, text=True, env=env, timeout=60, check=False,
                             input=stdin)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out

    @property
    def token(self) -> str:
        assert self.data is not None
        return (self.data / "pki" / "admin.token").read_text().strip()


def wait_listening(port_file: Path, proc: subprocess.Popen[bytes], log: Path) -> int:
    """The port the server chose (it was started with --port 0), once it answers."""
    deadline = time.monotonic() + 30
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


@contextlib.contextmanager
def api_server(base: Path, *flags: str) -> Iterator[Cluster]:
    """``netplane server`` in ``base`` with ``flags`` added, stopped (by its
    PID) afterwards."""
    data, log = base / "data", base / "server.log"
    cmd = [sys.executable, "-c", "import sys; from netplane.cli.main import main; "
           "sys.exit(main())", "server", "--data-dir", str(data),
           "--socket-path", str(base / "api.sock"), "--bind-address", "127.0.0.1",
           "--advertise-address", "127.0.0.1", "--port", "0", *flags]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = wait_listening(data / "apiserver.port", proc, log)
        home = base / "home"
        home.mkdir()
        kubeconfig = base / "kubeconfig"
        write_kubeconfig(kubeconfig, port=port, ca=data / "pki" / "ca.crt",
                         token=(data / "pki" / "admin.token").read_text().strip())
        yield Cluster(home, kubeconfig, data, port, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def scratch_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A namespace of a unique name, deleted (without waiting) afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """What ``check`` returns once it is true; the timeout guards against a
    hung test, it is no threshold."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
