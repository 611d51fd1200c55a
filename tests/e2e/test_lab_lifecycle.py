"""``lab down`` removes every namespace, process and file its lab made."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from netplane.lab.paths import LabPaths
from tests.e2e.conftest import EXAMPLES, Lab, wait_for

pytestmark = pytest.mark.e2e


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_lab_down_removes_everything() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    lab = Lab(LabPaths(f"life{uuid.uuid4().hex[:8]}"))
    try:
        lab.netplane("lab", "up", "--nodes", "1", timeout=120)
        lab.netplane("apply", "-f", str(EXAMPLES / "web.yaml"))
        wait_for("pods in their namespaces", lambda: len(
            [n for n in _netns() if n.startswith(lab.paths.pod_netns_prefix)]) == 3)
        pids = [int(p.read_text().split()[0]) for p in lab.paths.state_dir.rglob("*.pid")]
        assert pids
    finally:
        out = lab.netplane("lab", "down", timeout=120).stdout
    assert "removed" in out
    assert not [n for n in _netns() if n.startswith(lab.paths.prefix)]
    assert not lab.paths.state_dir.exists()
    # The running pods' IPC namespace binds went with them.
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f" {lab.paths.state_dir}/" not in mounts
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text().lower()
