"""Restart decisions and the crash-loop back-off, as the kubelet makes them."""

from __future__ import annotations

import time

import pytest

from netplane.node.containers import (
    BACKOFF_MAX,
    BACKOFF_RESET,
    Backoff,
    ContainerRecord,
    should_restart,
)
from netplane.node.runtime.process import ContainerState, ContainerStatus


@pytest.mark.parametrize(("policy", "code", "restart"), [
    ("Always", 0, True), ("Always", 1, True),
    ("OnFailure", 0, False), ("OnFailure", 2, True), ("OnFailure", None, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_restart_policy(policy: str, code: int | None, restart: bool) -> None:
    assert should_restart(policy, code) is restart


def test_back_off_is_immediate_then_10s_doubling_to_5_minutes() -> None:
    b = Backoff()
    waits = []
    for _ in range(9):
        b.after_exit(1000.0, ran_for=1.0)
        waits.append(b.not_before - 1000.0)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    assert b.current == BACKOFF_MAX
    assert not b.ready(1000.0) and b.ready(1300.0)


def test_back_off_is_forgotten_after_ten_minutes_of_running() -> None:
    b = Backoff()
    for _ in range(4):
        b.after_exit(0.0, ran_for=5.0)
    assert b.current == 40
    b.after_exit(0.0, ran_for=BACKOFF_RESET)
    assert b.current == 0 and b.not_before == 0.0


def test_each_exit_is_booked_once() -> None:
    rec = ContainerRecord()
    now = time.time()
    first = ContainerState(ContainerStatus.EXITED, pid=10, exit_code=1, started_at=now)
    assert rec.exited(first)
    assert not rec.exited(first)  # seen again on the next sync: not a new crash
    assert rec.backoff.current == 0
    second = ContainerState(ContainerStatus.EXITED, pid=11, exit_code=1, started_at=now)
    assert rec.exited(second) and rec.backoff.current == 10
    assert not rec.exited(ContainerState(ContainerStatus.RUNNING, pid=12))
