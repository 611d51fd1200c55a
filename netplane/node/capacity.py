"""What the node offers pods, read from the machine as the kubelet reads
it: capacity is the CPU count, MemTotal of /proc/meminfo, the size of the
filesystem holding the agent's state (ephemeral storage) and 110 pods;
allocatable is capacity less the kubelet's default hard eviction
thresholds (memory.available<100Mi, nodefs.available<10%), no
reservations being configured. Lab nodes share one machine, so each
reports all of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from netplane.api.meta import Obj

MAX_PODS = 110
EVICTION_MEMORY = 100 * 2**20
EVICTION_NODEFS_FRACTION = 0.10
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory: int  # bytes
    ephemeral_storage: int  # bytes

    def capacity(self) -> Obj:
        return {"cpu": str(self.cpus), "memory": f"{self.memory // 1024}Ki",
                "ephemeral-storage": f"{self.ephemeral_storage // 1024}Ki",
                "pods": str(MAX_PODS)}

    def allocatable(self) -> Obj:
        memory = max(self.memory - EVICTION_MEMORY, 0)
        storage = int(self.ephemeral_storage * (1 - EVICTION_NODEFS_FRACTION))
        return {"cpu": str(self.cpus), "memory": f"{memory // 1024}Ki",
                "ephemeral-storage": f"{storage // 1024}Ki", "pods": str(MAX_PODS)}


def mem_total(meminfo: str) -> int:
    """MemTotal in bytes (the file says kB and means KiB)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def mem_available(meminfo: str) -> int:
    """MemAvailable in bytes: what the kernel could give without swapping."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemAvailable line in /proc/meminfo")


# The kubelet's conditions for its default hard eviction thresholds: the
# condition, then (reason, message) when false and when true.
PRESSURE_WORDS = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory",
                        "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
}
EVICTION_INODES_FRACTION = 0.05


@dataclass(frozen=True)
class Readings:
    """What the kubelet's eviction manager measures, from the machine now."""

    memory_available: int
    nodefs_available: int
    nodefs_total: int
    inodes_free: int
    inodes_total: int

    def pressure(self) -> dict[str, bool]:
        """kube's default hard thresholds (memory.available<100Mi,
        nodefs.available<10%, nodefs.inodesFree<5%); pid.available has none
        by default, so PIDPressure stays false, as on a default kubelet."""
        disk = self.nodefs_available < self.nodefs_total * EVICTION_NODEFS_FRACTION or \
            (self.inodes_total > 0 and
             self.inodes_free < self.inodes_total * EVICTION_INODES_FRACTION)
        return {"MemoryPressure": self.memory_available < EVICTION_MEMORY,
                "DiskPressure": disk, "PIDPressure": False}


def readings(state_dir: Path) -> Readings:
    fs = os.statvfs(state_dir)
    return Readings(mem_available(MEMINFO.read_text()), fs.f_bavail * fs.f_frsize,
                    fs.f_blocks * fs.f_frsize, fs.f_favail, fs.f_files)


def read(state_dir: Path) -> Machine:
    fs = os.statvfs(state_dir)
    return Machine(os.cpu_count() or 1, mem_total(MEMINFO.read_text()),
                   fs.f_blocks * fs.f_frsize)
