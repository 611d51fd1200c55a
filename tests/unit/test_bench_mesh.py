"""``bench/mesh.py``'s quickest run on loopback: a few hundred requests a
figure straight to an echo server and through the mesh proxy. Only the
tables' shape is checked; no figure is judged (the machine is shared)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def rows(table: str) -> list[str]:
    """The first cell of each row under the header line."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    return [line.split(" | ")[0].removeprefix("| ") for line in lines[1:]]


def test_a_quick_run_prints_each_table_with_a_row_per_target(c_echo: Path) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("no h2load (scripts/setup.sh installs nghttp2-client)")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "mesh.py"), "--requests", "200", "--runs", "1",
         "--targets", "direct,mesh", "--here", "--echo", str(c_echo)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    tables = [b.strip() for b in done.stdout.split("\n\n") if "| target |" in b]
    assert [t.splitlines()[0].split(" (")[0] for t in tables] == ["fixed offered rates",
                                                                   "most answers/s"]
    assert "1,000/s: achieved" in tables[0] and "5,000/s: achieved" in tables[0]
    assert "1 conn: req/s" in tables[1] and "16 conn: req/s" in tables[1]
    assert [rows(t) for t in tables] == [["direct", "mesh"], ["direct", "mesh"]]
