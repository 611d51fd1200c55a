"""``bench/mesh.py``'s quickest run on loopback: a few hundred requests a
figure straight to an echo server and through the mesh proxy. Only the
tables' shape is checked; no figure is judged (the machine is shared). And
the lab mode's report from figures made up: the issue's targets beside them."""

from __future__ import annotations

import importlib
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


def test_the_lab_report_sets_the_issues_targets_beside_the_figures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    mesh = importlib.import_module("bench.mesh")
    opts = mesh.Options(runs=1, targets=mesh.LAB_TARGETS)
    fixed = [mesh.Run(10, r, 3) for r in mesh.RATES]
    most = mesh.Run(16, None, 3)
    targets = [mesh.LabTarget(name, "http://x/", 1, list) for name in mesh.LAB_TARGETS]

    def load(rate: float, p90: float, cpu_us: float) -> object:
        return mesh.Load(rate, p90 / 2, p90, p90 * 2, 0, cpu_us)
    # The mesh adds 0.5 ms p90 at 1,000/s; 300 µs of CPU an answer (10 µs of
    # it the agents' background); most req/s 0.6x nginx's.
    got = {}
    for r in fixed:
        got[("direct", r)] = load(r.rate, 0.2, 10)
        got[("mesh", r)] = load(r.rate, 0.7, 300)
        got[("nginx", r)] = load(r.rate, 0.3, 50)
    got.update({("direct", most): load(40_000, 0.4, 1), ("mesh", most): load(12_000, 3, 300),
                ("nginx", most): load(20_000, 1, 40)})
    figures = mesh.LabFigures(got, {k: 150 * 1024 for k in got},
                              {"direct": 140 * 1024, "mesh": 140 * 1024, "nginx": 12 * 1024},
                              0.002, {"direct": 0, "mesh": 1000, "nginx": 0}, 1,
                              {r: 0.75 for r in [*fixed, most]})
    text = "\n".join(mesh.lab_report(figures, targets, fixed, most, opts))
    assert "| p90 added by the mesh at 1,000/s (mesh - direct) | +0.500 ms | <= 1 ms | met |" \
        in text
    assert ("| mesh CPU per 1,000 req/s at 1,000/s (both agents; less their CPU under direct) "
            "| 0.300 (0.290) vCPU | <= 0.35 | met (met) |") in text
    assert "| of it node-2's agent (client side) / node-1's (server side) | 0.225 / 0.075" in text
    assert "| most req/s, mesh / nginx (16 conn) | 0.60x | >= 0.5x | met |" in text
    assert "Istio's anchors" in text
    memory = text.split("memory (")[1].split("\n\n")[0]
    assert rows(memory) == ["mesh", "nginx"]  # direct has no proxy of its own
