"""The arithmetic and parsing of ``bench/workloads.py``: percentiles, what a
watch of pods showed, and the memory of a pod's processes read from a /proc
made in a temporary folder."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from bench.podmemory import alive, command_name, pod_memory, process_tree, smaps_rollup
from bench.podwatch import PodClock, api_startup_seconds, percentile, surge_and_unavailable
from netplane.api.meta import Obj
from netplane.node.runtime.process import PidRecord


@pytest.mark.parametrize(("values", "q", "expected"), [
    (list(range(1, 101)), 50, 50), (list(range(1, 101)), 99, 99),
    (list(range(100, 0, -1)), 99, 99), (list(range(1, 101)), 100, 100),
    ([3.0], 99, 3.0), ([2.0, 1.0], 50, 1.0), ([1.0, 2.0, 3.0], 99, 3.0),
])
def test_percentile_is_the_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    (30, 8, 7), (100, 25, 25), (4, 1, 1), (1, 1, 0), (3, 1, 0),
])
def test_surge_rounds_up_and_unavailable_down(replicas: int, surge: int,
                                              unavailable: int) -> None:
    assert surge_and_unavailable(replicas) == (surge, unavailable)


def pod(name: str, *, ready: bool = False, deleting: bool = False) -> Obj:
    obj: Obj = {"metadata": {"name": name, "creationTimestamp": "2025-01-01T00:00:00Z"},
                "status": {"phase": "Running" if ready else "Pending", "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False",
                     "lastTransitionTime": "2025-01-01T00:00:02Z"}]}}
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:05Z"
    return obj


def test_the_clock_keeps_the_first_ready_and_the_first_gone() -> None:
    clock = PodClock()
    clock.observe("ADDED", pod("a"), 1.0)
    clock.observe("MODIFIED", pod("a", ready=True), 2.0)
    clock.observe("MODIFIED", pod("a", ready=True), 3.0)
    clock.observe("ADDED", pod("b", ready=True), 4.0)
    assert clock.ready_at == {"a": 2.0, "b": 4.0}
    assert clock.available() == 2 and clock.available({"a"}) == 1
    clock.observe("MODIFIED", pod("b", ready=True, deleting=True), 5.0)
    assert clock.available() == 1 and clock.active({"a", "b"}) == 1
    clock.observe("DELETED", pod("b", ready=True, deleting=True), 6.0)
    clock.observe("DELETED", pod("b"), 7.0)
    assert clock.gone_at == {"b": 6.0} and set(clock.pods) == {"a"}


def test_the_clock_calls_back_after_every_event() -> None:
    seen: list[int] = []
    clock = PodClock(on_event=lambda c: seen.append(len(c.pods)))
    clock.observe("ADDED", pod("a"), 1.0)
    clock.observe("ADDED", pod("b"), 1.0)
    clock.observe("DELETED", pod("a"), 1.0)
    assert seen == [1, 2, 1]


async def test_until_returns_once_an_event_makes_it_true() -> None:
    clock = PodClock()

    async def later() -> None:
        clock.observe("ADDED", pod("a"), 1.0)
        await asyncio.sleep(0)
        clock.observe("MODIFIED", pod("a", ready=True), 2.0)

    task = asyncio.create_task(later())
    await clock.until("a Ready", lambda: "a" in clock.ready_at)
    await task
    with pytest.raises(TimeoutError, match="b Ready"):
        await clock.until("b Ready", lambda: "b" in clock.ready_at, timeout=0)


def test_startup_from_the_api_timestamps() -> None:
    assert api_startup_seconds(pod("a", ready=True)) == 2.0
    assert api_startup_seconds(pod("a")) is None
    assert api_startup_seconds({"metadata": {"name": "a"}}) is None


SMAPS = """55d0c0000000-7ffd0d5fe000 ---p 00000000 00:00 0                          [rollup]
Rss:                 852 kB
Pss:                 460 kB
Pss_Dirty:            72 kB
Shared_Clean:        780 kB
"""


def test_smaps_rollup_gives_rss_and_pss() -> None:
    assert smaps_rollup(SMAPS) == (852, 460)
    assert smaps_rollup("") == (0, 0)


def fake_process(proc: Path, pid: int, *, comm: str, rss: int, pss: int,
                 children: tuple[int, ...] = (), start: int = 100, state: str = "S") -> None:
    task = proc / str(pid) / "task" / str(pid)
    task.mkdir(parents=True)
    (task / "children").write_text("".join(f"{c} " for c in children))
    (proc / str(pid) / "comm").write_text(comm + "\n")
    (proc / str(pid) / "smaps_rollup").write_text(f"Rss: {rss} kB\nPss: {pss} kB\n")
    fields = [state] + ["0"] * 18 + [str(start)] + ["0"] * 20
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")


def test_a_pods_memory_is_every_process_of_its_containers(tmp_path: Path) -> None:
    proc, pod_dir = tmp_path / "proc", tmp_path / "pod"
    pod_dir.mkdir()
    fake_process(proc, 10, comm="unshare", rss=1400, pss=200, children=[11])
    fake_process(proc, 11, comm="netplane-echo", rss=850, pss=80)
    fake_process(proc, 20, comm="unshare", rss=1400, pss=200, children=[21])
    fake_process(proc, 21, comm="sh", rss=900, pss=90, children=[22])
    fake_process(proc, 22, comm="sleep", rss=600, pss=60)
    fake_process(proc, 30, comm="sleep", rss=999, pss=999)  # the PID holder: not a container
    (pod_dir / "echo.pid").write_text("10 100\n")
    (pod_dir / "sidecar.pid").write_text("20 100\n")
    (pod_dir / "gone.pid").write_text("40 100\n")
    (pod_dir / "pidns.holder").write_text("30 100\n")
    assert process_tree(20, proc) == [20, 21, 22]
    mem = pod_memory(pod_dir, proc)
    assert [p.pid for p in mem.processes] == [10, 11, 20, 21, 22]
    assert (mem.rss_kb, mem.pss_kb, mem.rss_of("unshare")) == (5150, 630, 2800)


def test_a_reused_pid_or_a_zombie_is_no_container(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    fake_process(proc, 10, comm="unshare", rss=1, pss=1, start=555)
    fake_process(proc, 11, comm="unshare", rss=1, pss=1, state="Z")
    assert alive(PidRecord(10, 555), proc)
    assert not alive(PidRecord(10, 100), proc)
    assert not alive(PidRecord(11, 100), proc)
    assert not alive(PidRecord(12, 100), proc)


def test_command_name_from_cmdline() -> None:
    assert command_name(b"/v/bin/python3\0-m\0netplane.node.runtime.echo\0") == \
        "python3 -m netplane.node.runtime.echo"
    assert command_name(b"/v/bin/netplane-echo\0") == "netplane-echo"
    assert command_name(b"") == "?"
