"""Memory of one pod's containers on a ``process``-runtime node, from /proc:
every process of every container (the runtime's ``<container>.pid`` files
name the first one, util-linux's ``unshare`` that stays above the
container's PID 1; its descendants are the container), summed. Used by
``bench/workloads.py`` (it runs as a script: this folder is on its path);
/proc is a parameter, so that tests give it a folder of their own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netplane.node.runtime.process import PidRecord

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    comm: str
    rss_kb: int
    pss_kb: int


@dataclass(frozen=True)
class PodMemory:
    processes: tuple[ProcessMemory, ...]

    @property
    def rss_kb(self) -> int:
        return sum(p.rss_kb for p in self.processes)

    @property
    def pss_kb(self) -> int:
        return sum(p.pss_kb for p in self.processes)

    def rss_of(self, comm: str) -> int:
        return sum(p.rss_kb for p in self.processes if p.comm == comm)


def smaps_rollup(text: str) -> tuple[int, int]:
    """(Rss, Pss) in kB from the text of /proc/PID/smaps_rollup."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss") and rest.split():
            found[key] = int(rest.split()[0])
    return found.get("Rss", 0), found.get("Pss", 0)


def children(pid: int, proc: Path = PROC) -> list[int]:
    """Direct children of every thread of ``pid``."""
    out: list[int] = []
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue += children(current, proc)
    return tree


def process_memory(pid: int, proc: Path = PROC) -> ProcessMemory | None:
    try:
        rss, pss = smaps_rollup((proc / str(pid) / "smaps_rollup").read_text())
        comm = (proc / str(pid) / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return ProcessMemory(pid, comm, rss, pss)


def alive(record: PidRecord, proc: Path = PROC) -> bool:
    """The process the record names, not another that took its PID."""
    try:
        text = (proc / str(record.pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = text[text.rindex(")") + 2:].split()  # after the command name
    return fields[0] not in ("Z", "X") and int(fields[19]) == record.start_time


def pod_memory(pod_dir: Path, proc: Path = PROC) -> PodMemory:
    """Every live process of the pod's containers (``*.pid`` in its runtime
    folder; the shared PID namespace's holder is the pod's, not a container's)."""
    found: list[ProcessMemory] = []
    for pid_file in sorted(pod_dir.glob("*.pid")):
        try:
            record = PidRecord.load(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if not alive(record, proc):
            continue
        for pid in process_tree(record.pid, proc):
            if (mem := process_memory(pid, proc)) is not None:
                found.append(mem)
    return PodMemory(tuple(found))


def command_name(cmdline: bytes) -> str:
    """``/a/b/python3 -m mod`` as ``python3 -m mod``, from /proc/PID/cmdline."""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    return " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "?"
