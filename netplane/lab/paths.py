"""Names and places of one lab: its namespaces, state directory and socket.

The default lab uses the names of the design (``np-lab``, ``np-control``,
``np-node-1``); a named lab puts its name after ``np-`` so that labs can run
side by side."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path(os.environ.get("NETPLANE_RUN_DIR", "/run/netplane"))
DEFAULT = "default"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$")
UNDERLAY = "192.168.56"
CONTROL = "control"


@dataclass(frozen=True)
class LabPaths:
    name: str

    @property
    def prefix(self) -> str:
        return "np-" if self.name == DEFAULT else f"np-{self.name}-"

    @property
    def state_dir(self) -> Path:
        return RUN_DIR / "labs" / self.name

    @property
    def socket(self) -> Path:
        return RUN_DIR / "api.sock" if self.name == DEFAULT else self.state_dir / "api.sock"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "server"

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}lab"

    @property
    def pod_netns_prefix(self) -> str:
        return f"{self.prefix}pod-"

    def node_netns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    def node_dir(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    def cgroup_root(self, node: str) -> str:
        """The node agent's cgroups: one folder per lab, so that labs side
        by side, whose nodes share names, keep their pods apart."""
        return f"netplane/lab-{self.name}/{node}"

    @staticmethod
    def node_ip(node: str) -> str:
        if node == CONTROL:
            return f"{UNDERLAY}.10"
        return f"{UNDERLAY}.{10 + int(node.rsplit('-', 1)[1])}"


def check_name(name: str) -> str:
    # "pod" would make a lab whose namespaces look like the default lab's pods.
    if not NAME_RE.match(name) or name == "pod":
        raise ValueError(f"invalid lab name {name!r}: use 1-16 lower-case letters, digits or "
                         "'-', starting and ending with a letter or digit")
    return name


def lab_from_env(name: str | None = None) -> LabPaths:
    return LabPaths(check_name(name or os.environ.get("NETPLANE_LAB") or DEFAULT))
