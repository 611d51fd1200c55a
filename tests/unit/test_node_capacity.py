"""The node's capacity and allocatable, as the kubelet would report them,
and the scheduler's reading of them."""

from __future__ import annotations

from pathlib import Path

from netplane.cluster.scheduler.nodeinfo import NodeInfo, Resource
from netplane.node import capacity, registration

MEMINFO = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\n"


def test_capacity_and_allocatable_less_the_eviction_thresholds() -> None:
    machine = capacity.Machine(cpus=2, memory=capacity.mem_total(MEMINFO),
                               ephemeral_storage=100 * 2**30)
    status = registration.node_status("node-1", "192.168.56.11", machine=machine)["status"]
    assert status["capacity"] == {"cpu": "2", "memory": "8000000Ki",
                                  "ephemeral-storage": f"{100 * 2**20}Ki", "pods": "110"}
    assert status["allocatable"] == {"cpu": "2", "memory": f"{8000000 - 100 * 1024}Ki",
                                     "ephemeral-storage": f"{90 * 2**20}Ki", "pods": "110"}
    info = NodeInfo({"metadata": {"name": "node-1"}, "status": status})
    assert info.allocatable == Resource(2000, (8000000 - 100 * 1024) * 1024, 90 * 2**30)
    assert info.allowed_pods == 110


def test_the_machine_is_read(tmp_path: Path) -> None:
    m = capacity.read(tmp_path)
    assert m.cpus >= 1 and m.memory > 0 and m.ephemeral_storage > 0


def test_without_a_machine_only_pods_are_reported() -> None:
    status = registration.node_status("n", "192.168.56.11")["status"]
    assert status["allocatable"] == {"pods": "110"}


def test_pressure_follows_the_kubelets_default_thresholds() -> None:
    from netplane.node.capacity import Readings

    gib = 2**30
    calm = Readings(memory_available=4 * gib, nodefs_available=50 * gib, nodefs_total=100 * gib,
                    inodes_free=900, inodes_total=1000)
    assert calm.pressure() == {"MemoryPressure": False, "DiskPressure": False,
                               "PIDPressure": False}
    short = Readings(memory_available=99 * 2**20, nodefs_available=9 * gib,
                     nodefs_total=100 * gib, inodes_free=900, inodes_total=1000)
    assert short.pressure() == {"MemoryPressure": True, "DiskPressure": True,
                                "PIDPressure": False}
    no_inodes = Readings(4 * gib, 50 * gib, 100 * gib, inodes_free=40, inodes_total=1000)
    assert no_inodes.pressure()["DiskPressure"] is True


def test_the_status_carries_the_pressure_conditions_in_kubes_words() -> None:
    from netplane.api import meta
    from netplane.node.registration import node_status

    node = node_status("n", "10.0.0.1", pressure={"MemoryPressure": False,
                                                  "DiskPressure": True, "PIDPressure": False})
    mem, disk = meta.condition(node, "MemoryPressure"), meta.condition(node, "DiskPressure")
    assert mem is not None and (mem["status"], mem["reason"], mem["message"]) == (
        "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
    assert disk is not None and (disk["status"], disk["reason"]) == ("True",
                                                                     "KubeletHasDiskPressure")
    assert all(c.get("lastHeartbeatTime") for c in node["status"]["conditions"])


def test_a_condition_keeps_its_transition_time_until_it_changes() -> None:
    from netplane.api import meta
    from netplane.node.registration import node_status

    old = "2026-01-01T00:00:00Z"
    last = node_status("n", "10.0.0.1", pressure={"MemoryPressure": False,
                                                  "DiskPressure": False})
    for c in last["status"]["conditions"]:
        c["lastTransitionTime"] = c["lastHeartbeatTime"] = old
    now = node_status("n", "10.0.0.1", pressure={"MemoryPressure": False,
                                                 "DiskPressure": True}, previous=last)
    ready, mem, disk = (meta.condition(now, t) for t in ("Ready", "MemoryPressure",
                                                          "DiskPressure"))
    assert ready is not None and ready["lastTransitionTime"] == old
    assert mem is not None and mem["lastTransitionTime"] == old
    assert disk is not None and disk["status"] == "True" and disk["lastTransitionTime"] != old
    assert all(c["lastHeartbeatTime"] != old for c in now["status"]["conditions"])
    assert [c["type"] for c in now["status"]["conditions"]] == [
        "Ready", "MemoryPressure", "DiskPressure"]
