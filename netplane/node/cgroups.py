"""A node's cgroups, with the cgroupfs driver as the kubelet has it: a
folder per pod and per container under the node's root, ``kubepods/<qos>/
pod<uid>/<container>``, limits written from :mod:`netplane.node.cgrouplimits`
and usage read back for the resource metrics.

Either cgroup version: v1 (a hierarchy per controller, ``cpu``,
``cpuacct``, ``memory``, ``pids``; hybrid hosts mount a v2 hierarchy
beside them with no controllers, which changes nothing here) or v2 (one
hierarchy, controllers enabled level by level). Which one is read from
/proc/self/mountinfo: v1 when it mounts the cpu and memory controllers,
else v2 when its hierarchy offers them.

The node's root sits under the agent's own cgroup (its parent's limits
hold the pods too), or at the top of a v2 hierarchy whose agent's cgroup
cannot hand controllers down (it holds processes, and v2 forbids that).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from netplane.node.cgrouplimits import Limits, QOSClass

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")
REMOVE_WAIT = 2.0  # a killed process leaves its cgroup once its parent reaps it
RECORD_FILE = "cgroups"  # in the agent's state dir: where its node's cgroups are


class Version(enum.Enum):
    V1 = "v1"
    V2 = "v2"


@dataclass(frozen=True)
class Usage:
    """What a cgroup has used: CPU seconds since it was made, memory now."""

    cpu_seconds: float
    memory_usage: int
    # What cadvisor calls the working set: usage less the inactive page
    # cache, which the kernel takes back first.
    memory_working_set: int


@dataclass(frozen=True)
class Mount:
    point: Path
    root: str  # the folder of the hierarchy mounted there
    fstype: str
    options: frozenset[str]


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4].encode().decode("unicode_escape")
        mounts.append(Mount(Path(point), fields[3], tail[0], frozenset(tail[2].split(","))))
    return mounts


def parse_self_cgroup(text: str) -> dict[str, str]:
    """Controller (``""`` for v2) -> the process's cgroup in its hierarchy."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _inside(mount: Mount, path: str) -> Path:
    """The folder of cgroup ``path`` under the mount of its hierarchy."""
    rel = path[len(mount.root):] if path.startswith(mount.root) and mount.root != "/" else path
    return mount.point / rel.lstrip("/")


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


def _fields(path: Path) -> dict[str, int]:
    """A flat keyed file (memory.stat, cpu.stat, memory.events) as numbers."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


class Hierarchy:
    """One node's cgroups: ``roots`` maps each controller to the node's
    folder in that controller's hierarchy (all the same folder in v2)."""

    def __init__(self, version: Version, roots: dict[str, Path],
                 parent: Path | None = None, name: str = "") -> None:
        """``parent``: in v2, the folder the node's root goes under;
        ``name``: the node's root relative to the agent's cgroup."""
        self.version = version
        self.roots = roots
        self.parent = parent
        self.name = name

    @classmethod
    def detect(cls, name: str, *, mountinfo: str | None = None,
               self_cgroup: str | None = None, absolute: bool = False) -> Hierarchy | None:
        """The host's cgroups with the node's root at ``name`` (a relative
        folder, ``netplane/node-1``) under the agent's own cgroup, or with
        ``absolute`` under each hierarchy's root: one path in every
        controller, as a container engine's single cgroup parent needs
        (the agent's own cgroups may differ by controller); None when
        neither version is usable."""
        mounts = parse_mountinfo(MOUNTINFO.read_text() if mountinfo is None else mountinfo)
        own = {} if absolute else parse_self_cgroup(
            SELF_CGROUP.read_text() if self_cgroup is None else self_cgroup)
        v1 = {c: m for m in mounts if m.fstype == "cgroup" for c in V1_CONTROLLERS
              if c in m.options}
        if {"cpu", "memory"} <= set(v1):
            return cls(Version.V1, {c: _inside(m, own.get(c, "/")) / name for c, m in v1.items()},
                       name=name)
        for m in mounts:
            if m.fstype == "cgroup2" and {"cpu", "memory"} <= _offered(m.point):
                parent = _inside(m, own.get("", "/"))
                if not {"cpu", "memory"} <= _enabled(parent):
                    parent = m.point
                return cls(Version.V2, {c: parent / name for c in V2_CONTROLLERS}, parent,
                           name=name)
        return None

    def folders(self, rel: str) -> list[Path]:
        """The cgroup ``rel`` in each hierarchy, once each."""
        return list(dict.fromkeys(root / rel for root in self.roots.values()))

    def procs_files(self, rel: str) -> list[Path]:
        """What a process writes itself into to join the cgroup."""
        return [folder / "cgroup.procs" for folder in self.folders(rel)]

    def create(self, rel: str, limits: Limits | None = None) -> None:
        """Makes the cgroup (and its parents) and writes its limits."""
        for folder in self.folders(rel):
            if self.version is Version.V2:
                self._make_v2(folder)
            else:
                folder.mkdir(parents=True, exist_ok=True)
        if limits is not None:
            self.set_limits(rel, limits)

    def _make_v2(self, folder: Path) -> None:
        """v2 hands a controller down only where each parent enables it."""
        assert self.parent is not None
        _enable(self.parent, V2_CONTROLLERS)
        chain = [folder, *folder.parents]
        for level in reversed(chain[:chain.index(self.parent)]):
            level.mkdir(exist_ok=True)
            if level != folder:
                _enable(level, V2_CONTROLLERS)

    def set_limits(self, rel: str, limits: Limits) -> None:
        if self.version is Version.V2:
            folder = self.roots["cpu"] / rel
            _write(folder / "cpu.weight", limits.weight)
            _write(folder / "cpu.max", f"{limits.quota_us or 'max'} {limits.period_us}")
            _write(folder / "memory.max", limits.memory if limits.memory is not None else "max")
            if (folder / "pids.max").exists():
                _write(folder / "pids.max", limits.pids if limits.pids is not None else "max")
            return
        cpu = self.roots["cpu"] / rel
        _write(cpu / "cpu.shares", limits.shares)
        _write(cpu / "cpu.cfs_period_us", limits.period_us)
        _write(cpu / "cpu.cfs_quota_us", limits.quota_us or -1)
        _write(self.roots["memory"] / rel / "memory.limit_in_bytes",
               limits.memory if limits.memory is not None else -1)
        if "pids" in self.roots:
            _write(self.roots["pids"] / rel / "pids.max",
                   limits.pids if limits.pids is not None else "max")

    def kill_together_on_oom(self, rel: str) -> None:
        """v2: the OOM killer takes every process of the cgroup at once, as
        the kubelet asks of a container's (memory.oom.group); v1 has no such
        switch."""
        oom_group = self.roots["memory"] / rel / "memory.oom.group"
        if self.version is Version.V2 and oom_group.exists():
            _write(oom_group, 1)

    def create_qos(self) -> None:
        """kubepods and its QoS folders; BestEffort pods get the least CPU
        weight there is, as the kubelet gives them."""
        self.create("kubepods")
        self.create(f"kubepods/{QOSClass.BURSTABLE.folder}")
        self.create(f"kubepods/{QOSClass.BEST_EFFORT.folder}", Limits())

    def usage(self, rel: str = "") -> Usage | None:
        """The cgroup's usage, None when it is not there."""
        try:
            if self.version is Version.V2:
                folder = self.roots["cpu"] / rel
                cpu = _fields(folder / "cpu.stat")["usage_usec"] / 1e6
                memory = int((folder / "memory.current").read_text())
                inactive = _fields(folder / "memory.stat").get("inactive_file", 0)
            else:
                acct = self.roots.get("cpuacct", self.roots["cpu"]) / rel
                cpu = int((acct / "cpuacct.usage").read_text()) / 1e9
                mem = self.roots["memory"] / rel
                memory = int((mem / "memory.usage_in_bytes").read_text())
                inactive = _fields(mem / "memory.stat").get("total_inactive_file", 0)
        except (FileNotFoundError, KeyError, ValueError):
            return None
        return Usage(cpu_seconds=cpu, memory_usage=memory,
                     memory_working_set=max(memory - inactive, 0))

    def oom_kills(self, rel: str) -> int:
        """How many of the cgroup's processes the OOM killer has killed."""
        name = "memory.events" if self.version is Version.V2 else "memory.oom_control"
        try:
            return _fields(self.roots["memory"] / rel / name).get("oom_kill", 0)
        except FileNotFoundError:
            return 0

    def remove(self, rel: str, *, wait: float = REMOVE_WAIT) -> bool:
        """Removes the cgroup and those under it, the deepest first, waiting
        up to ``wait`` seconds for exiting processes to leave; True when
        all are gone."""
        deadline = time.monotonic() + wait
        left = [f for f in self.folders(rel) if f.is_dir()]
        while left:
            left = [f for f in left if not _rmtree(f)]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return not left


def procs_files_of(pid: int, *, mountinfo: str | None = None,
                   own: str | None = None, theirs: str | None = None) -> list[Path]:
    """The cgroup.procs files of the cgroups process ``pid`` is in, where
    they are not this process's own: what an exec into its container joins,
    as runc's exec does."""
    mounts = parse_mountinfo(MOUNTINFO.read_text() if mountinfo is None else mountinfo)
    mine = parse_self_cgroup(SELF_CGROUP.read_text() if own is None else own)
    try:
        target = parse_self_cgroup(Path(f"/proc/{pid}/cgroup").read_text()
                                   if theirs is None else theirs)
    except FileNotFoundError:
        return []
    out: list[Path] = []
    for m in mounts:
        if m.fstype == "cgroup2":
            controller = ""
        elif m.fstype == "cgroup":
            controller = next((c for c in V1_CONTROLLERS if c in m.options), "-")
        else:
            continue
        path = target.get(controller)
        if path is not None and path != mine.get(controller):
            out.append(_inside(m, path) / "cgroup.procs")
    return list(dict.fromkeys(out))


def record(cgroups: Hierarchy, file: Path) -> None:
    """Writes where the node's cgroups are, for :func:`recorded` and
    :func:`remove_recorded`: the agent's own cgroup, under which they were
    made, need not be that of a later agent or command."""
    file.write_text(json.dumps({
        "name": cgroups.name, "version": cgroups.version.value,
        "roots": {c: str(p) for c, p in cgroups.roots.items()},
        "parent": str(cgroups.parent) if cgroups.parent else None}) + "\n")


def recorded(file: Path) -> Hierarchy | None:
    """The cgroups :func:`record` wrote down, when they are still there: a
    restarted agent keeps its pods' cgroups wherever it runs now."""
    try:
        data = json.loads(file.read_text())
        found = Hierarchy(Version(data["version"]),
                          {c: Path(p) for c, p in data["roots"].items()},
                          Path(data["parent"]) if data.get("parent") else None,
                          name=str(data["name"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return found if all(r.is_dir() for r in found.roots.values()) else None


def remove_recorded(file: Path, *, wait: float = REMOVE_WAIT) -> bool:
    """Removes the node's cgroups that :func:`record` wrote down, and the
    folders of its name above them when they are left empty (``lab down``,
    once the pods are killed). True when all are gone."""
    try:
        data = json.loads(file.read_text())
        name, roots = str(data["name"]), [Path(p) for p in data["roots"].values()]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return True
    roots = list(dict.fromkeys(roots))
    deadline = time.monotonic() + wait
    while (left := [r for r in roots if r.exists() and not _rmtree(r)]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    for root in roots:
        for parent in list(root.parents)[:len(Path(name).parts) - 1]:
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty: other nodes may still be there
    return not left


def _rmtree(folder: Path) -> bool:
    """rmdir of every folder under ``folder`` (cgroup files go with them)."""
    subfolders = sorted((Path(d) for d, _, _ in os.walk(folder)),
                        key=lambda p: len(p.parts), reverse=True)
    for sub in subfolders:
        with contextlib.suppress(FileNotFoundError, OSError):
            sub.rmdir()
    return not folder.exists()


def _offered(folder: Path) -> set[str]:
    try:
        return set((folder / "cgroup.controllers").read_text().split())
    except FileNotFoundError:
        return set()


def _enabled(folder: Path) -> set[str]:
    try:
        return set((folder / "cgroup.subtree_control").read_text().split())
    except FileNotFoundError:
        return set()


def _enable(folder: Path, controllers: Iterable[str]) -> None:
    missing = [c for c in controllers if c in _offered(folder) and c not in _enabled(folder)]
    if missing:
        _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
