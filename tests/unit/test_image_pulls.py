"""The pod manager's image step, as the kubelet takes it, over the docker
runtime and a fake engine: imagePullPolicy (Never, IfNotPresent, Always),
the events of a pull (Pulling, Pulled, Failed with the engine's words), the
waiting reasons (ErrImagePull, then ImagePullBackOff while the back-off
runs, ErrImageNeverPull) and the back-off: 10 s, doubling to 5 min, reset
by a pull that succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from netplane.api.meta import Obj
from netplane.node.containers import ContainerRecord
from netplane.node.pods import PRESENT, PULLED, PodManager, PodRecord
from netplane.node.runtime import dockerruntime
from netplane.node.runtime.dockerruntime import DockerRuntime
from tests.unit.dockerfake import FakeEngine, fake_api

UID = "uid-1"
POD: Obj = {"metadata": {"name": "web", "namespace": "shop", "uid": UID},
            "spec": {"containers": []}}


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def normal(self, obj: Obj, reason: str, message: str, *, field_path: str = "") -> None:
        self.seen.append(("Normal", str(reason), message))

    def warning(self, obj: Obj, reason: str, message: str, *, field_path: str = "") -> None:
        self.seen.append(("Warning", str(reason), message))


class Step:
    """PodManager's image step alone: its runtime, events and pod record."""

    def __init__(self, engine: FakeEngine, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(dockerruntime.DockerRuntime, "_attach",
                            staticmethod(lambda netns, pid: None))
        self.events = Events()
        self.record = PodRecord(next_due=float("inf"))
        self.manager = SimpleNamespace(runtime=DockerRuntime(state_dir=state,
                                                             api=fake_api(engine)),
                                       events=self.events, records={UID: self.record})

    def __call__(self, crec: ContainerRecord, c: Obj) -> str:
        self.events.seen.clear()
        return asyncio.run(PodManager._image_ready(cast(Any, self.manager), POD, crec, c))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def step(engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Step:
    return Step(engine, tmp_path, monkeypatch)


def test_a_failed_pull_is_err_image_pull_then_back_off(step: Step, engine: FakeEngine) -> None:
    crec, c = ContainerRecord(), {"name": "web", "image": "nginx:1.27"}
    assert step(crec, c) == ""
    assert crec.waiting[0] == "ErrImagePull" and "pull access denied" in crec.waiting[1]
    assert [(t, r) for t, r, _ in step.events.seen] == [
        ("Normal", "Pulling"), ("Warning", "Failed"), ("Warning", "Failed")]
    assert step.events.seen[0][2] == 'Pulling image "nginx:1.27"'
    assert step.events.seen[1][2].startswith('Failed to pull image "nginx:1.27": pull access')
    assert step.events.seen[2][2] == "Error: ErrImagePull"
    assert crec.pull_backoff.current == 10.0
    assert step.record.next_due == crec.pull_backoff.not_before
    # Within the back-off: no pull, ImagePullBackOff (its event once).
    said = []
    for _ in range(2):
        assert step(crec, c) == ""
        assert crec.waiting == ("ImagePullBackOff", 'Back-off pulling image "nginx:1.27"')
        said += step.events.seen
    assert said == [("Normal", "BackOff", 'Back-off pulling image "nginx:1.27"'),
                    ("Warning", "Failed", "Error: ImagePullBackOff")]
    assert engine.pulled == ["nginx:1.27"]
    # Each failed try doubles the wait, up to 5 min.
    waits = []
    for _ in range(7):
        crec.pull_backoff.not_before = 0.0
        step(crec, c)
        waits.append(crec.pull_backoff.current)
    assert waits == [20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    # A pull that works starts the container and the back-off afresh.
    engine.pulls["nginx:1.27"] = None
    crec.pull_backoff.not_before = 0.0
    assert step(crec, c) == PULLED
    assert step.events.seen[-1][1] == "Pulled"
    assert step.events.seen[-1][2].startswith('Successfully pulled image "nginx:1.27" in ')
    assert crec.pull_backoff.delay == 10.0 and crec.pull_backoff.ready(0.0)


def test_never_wants_the_image_there(step: Step, engine: FakeEngine) -> None:
    crec = ContainerRecord()
    assert step(crec, {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "Never"}) == ""
    message = 'Container image "nginx:1.27" is not present with pull policy of Never'
    assert crec.waiting == ("ErrImageNeverPull", message)
    assert step.events.seen == [("Warning", "ErrImageNeverPull", message)]
    assert step(crec, {"name": "web", "image": "busybox", "imagePullPolicy": "Never"}) == PRESENT
    assert engine.pulled == []


def test_if_not_present_pulls_only_a_missing_image_and_always_every_time(
        step: Step, engine: FakeEngine) -> None:
    assert step(ContainerRecord(), {"name": "web", "image": "busybox"}) == PRESENT
    assert step.events.seen == [] and engine.pulled == []
    engine.pulls["busybox:latest"] = None
    assert step(ContainerRecord(), {"name": "web", "image": "busybox",
                                    "imagePullPolicy": "Always"}) == PULLED
    assert [r for _, r, _ in step.events.seen] == ["Pulling", "Pulled"]
    assert len(engine.pulled) == 1
