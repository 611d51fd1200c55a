"""Container state read back from disk, as a restarted agent sees it: live
processes are adopted, reused PIDs are not, exit codes are kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netplane.node.runtime.process import (
    ContainerState,
    ContainerStatus,
    ImageNotRunnable,
    PidRecord,
    ProcessRuntime,
    exit_code,
    proc_stat,
)


def _pod_dir(tmp_path: Path, uid: str) -> Path:
    d = tmp_path / "pods" / uid
    d.mkdir(parents=True)
    return d


def test_live_process_from_a_previous_instance_is_running(tmp_path: Path) -> None:
    stat = proc_stat(os.getpid())
    assert stat is not None
    (_pod_dir(tmp_path, "u1") / "web.pid").write_text(PidRecord(os.getpid(), stat[1]).dump())
    rt = ProcessRuntime(state_dir=tmp_path)
    assert rt.container_state("u1", "web") == ContainerState(
        ContainerStatus.RUNNING, pid=os.getpid())
    assert rt.running_pods() == {"u1"}


def test_reused_pid_is_not_mistaken_for_the_container(tmp_path: Path) -> None:
    stat = proc_stat(os.getpid())
    assert stat is not None
    (_pod_dir(tmp_path, "u1") / "web.pid").write_text(
        PidRecord(os.getpid(), stat[1] + 1).dump())
    rt = ProcessRuntime(state_dir=tmp_path)
    assert rt.container_state("u1", "web").status is ContainerStatus.EXITED
    assert rt.running_pods() == set()
    assert rt.known_pods() == {"u1"}


def test_recorded_exit_code_is_reported(tmp_path: Path) -> None:
    d = _pod_dir(tmp_path, "u1")
    (d / "job.pid").write_text("999999999 1\n")
    (d / "job.exit").write_text("3\n")
    rt = ProcessRuntime(state_dir=tmp_path)
    # The pid stays in the state: it tells one instance's exit from the next.
    assert rt.container_state("u1", "job") == ContainerState(ContainerStatus.EXITED,
                                                             pid=999999999, exit_code=3)


def test_unknown_container(tmp_path: Path) -> None:
    assert ProcessRuntime(state_dir=tmp_path).container_state("u1", "web").status is (
        ContainerStatus.UNKNOWN)


def test_signal_deaths_read_as_128_plus_signal() -> None:
    assert (exit_code(-9), exit_code(-15), exit_code(0), exit_code(2)) == (137, 143, 0, 2)


def test_not_runnable_image_starts_nothing(tmp_path: Path) -> None:
    rt = ProcessRuntime(state_dir=tmp_path)
    with pytest.raises(ImageNotRunnable):
        rt.start_container(pod_uid="u1", pod_name="p", namespace="default",
                           container={"name": "c", "image": "nginx"}, netns="none",
                           hostname="p", resolv_conf=tmp_path / "r", hosts=tmp_path / "h",
                           env={})
    assert rt.containers("u1") == []


@pytest.mark.parametrize("bad", ["../x", "a/b", ""])
def test_path_like_names_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        ProcessRuntime(state_dir=tmp_path).pod_dir(bad)
