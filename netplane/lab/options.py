"""A lab's options, kept in its state directory so that a later ``lab up``,
``lab start`` or repair runs the daemons as the first ``lab up`` did."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from netplane.lab.paths import LabPaths

FILE = "options.json"


@dataclass(frozen=True)
class LabOptions:
    proxy_mode: str = "iptables"
    # The agents' container runtime: process or docker.
    runtime: str = "process"
    # The server's node monitor grace period and default toleration seconds;
    # None: kube's defaults (40 s, 300 s).
    node_grace: float | None = None
    toleration_seconds: int | None = None
    # The lab's copy of a KubeSchedulerConfiguration; None: the default profile.
    scheduler_config: str | None = None

    def server_flags(self) -> list[str]:
        out: list[str] = []
        if self.scheduler_config is not None:
            out += ["--scheduler-config", self.scheduler_config]
        if self.node_grace is not None:
            # The monitor looks a few times per grace period, as kube's 5 s in 40 s.
            out += ["--node-monitor-grace-period", str(self.node_grace),
                    "--node-monitor-period", str(min(5.0, self.node_grace / 4))]
        if self.toleration_seconds is not None:
            out += ["--default-not-ready-toleration-seconds", str(self.toleration_seconds),
                    "--default-unreachable-toleration-seconds", str(self.toleration_seconds)]
        return out


def load(lab: LabPaths) -> LabOptions:
    try:
        saved = json.loads((lab.state_dir / FILE).read_text())
    except (OSError, ValueError):
        return LabOptions()
    known = {f.name for f in dataclasses.fields(LabOptions)}
    return LabOptions(**{k: v for k, v in saved.items() if k in known})


def save(lab: LabPaths, options: LabOptions) -> None:
    (lab.state_dir / FILE).write_text(json.dumps(dataclasses.asdict(options)) + "\n")


def merged(saved: LabOptions, *, proxy_mode: str | None = None, node_grace: float | None = None,
           toleration_seconds: int | None = None,
           scheduler_config: str | None = None, runtime: str | None = None) -> LabOptions:
    """What was saved, with what the user gave now in its place."""
    return LabOptions(
        proxy_mode=proxy_mode if proxy_mode is not None else saved.proxy_mode,
        runtime=runtime if runtime is not None else saved.runtime,
        node_grace=node_grace if node_grace is not None else saved.node_grace,
        toleration_seconds=(toleration_seconds if toleration_seconds is not None
                            else saved.toleration_seconds),
        scheduler_config=(scheduler_config if scheduler_config is not None
                          else saved.scheduler_config))
