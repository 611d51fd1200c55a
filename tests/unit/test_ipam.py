"""Host-local IPAM: allocation, idempotence, release, recovery from disk,
exhaustion and round-robin reuse, on a throwaway state directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from netplane.net.ipam import HostLocalIPAM, IPAMError, PoolExhausted


def test_first_allocation_skips_network_and_gateway(tmp_path: Path) -> None:
    ipam = HostLocalIPAM("10.244.1.0/24", tmp_path)
    alloc = ipam.allocate("pod-a")
    assert (alloc.ip, alloc.prefixlen, alloc.gateway) == ("10.244.1.2", 24, "10.244.1.1")
    assert alloc.cidr == "10.244.1.2/24"


def test_allocate_is_idempotent_per_owner(tmp_path: Path) -> None:
    ipam = HostLocalIPAM("10.244.1.0/24", tmp_path)
    first = ipam.allocate("pod-a")
    assert ipam.allocate("pod-a") == first
    assert ipam.allocate("pod-b").ip == "10.244.1.3"
    assert ipam.allocations() == {"pod-a": "10.244.1.2", "pod-b": "10.244.1.3"}


def test_release_frees_the_address(tmp_path: Path) -> None:
    ipam = HostLocalIPAM("10.244.1.0/24", tmp_path)
    ipam.allocate("pod-a")
    assert ipam.release("pod-a") == ["10.244.1.2"]
    assert ipam.allocations() == {}
    assert ipam.release("pod-a") == []


def test_new_instance_recovers_allocations(tmp_path: Path) -> None:
    before = HostLocalIPAM("10.244.1.0/24", tmp_path)
    a = before.allocate("pod-a")
    before.allocate("pod-b")
    after = HostLocalIPAM("10.244.1.0/24", tmp_path)
    assert after.allocations() == before.allocations()
    assert after.allocate("pod-a") == a
    # Round robin continues after the last reserved address, across restarts.
    assert after.allocate("pod-c").ip == "10.244.1.4"


def test_state_is_one_file_per_address_holding_the_owner(tmp_path: Path) -> None:
    HostLocalIPAM("10.244.1.0/24", tmp_path).allocate("uid-123")
    assert (tmp_path / "10.244.1.2").read_text() == "uid-123"
    assert not list(tmp_path.glob(".tmp-*"))


def test_exhaustion_raises_a_clear_error(tmp_path: Path) -> None:
    # /29: .0 network, .1 gateway, .7 broadcast: five pod addresses.
    ipam = HostLocalIPAM("10.244.1.0/29", tmp_path)
    ips = [ipam.allocate(f"pod-{i}").ip for i in range(5)]
    assert ips == [f"10.244.1.{n}" for n in range(2, 7)]
    with pytest.raises(PoolExhausted, match=r"10\.244\.1\.0/29.*all 5"):
        ipam.allocate("pod-5")


def test_round_robin_reuses_freed_addresses_last(tmp_path: Path) -> None:
    ipam = HostLocalIPAM("10.244.1.0/29", tmp_path)
    for i in range(3):
        ipam.allocate(f"pod-{i}")  # .2 .3 .4
    ipam.release("pod-0")  # frees .2
    assert ipam.allocate("pod-3").ip == "10.244.1.5"
    assert ipam.allocate("pod-4").ip == "10.244.1.6"
    # Wraps around: .2 is the only free one left.
    assert ipam.allocate("pod-5").ip == "10.244.1.2"


def test_explicit_gateway_is_skipped(tmp_path: Path) -> None:
    ipam = HostLocalIPAM("10.244.1.0/29", tmp_path, gateway="10.244.1.6")
    ips = [ipam.allocate(f"pod-{i}").ip for i in range(5)]
    assert "10.244.1.6" not in ips
    assert ipam.allocate("pod-0").gateway == "10.244.1.6"


def test_files_outside_the_cidr_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "10.244.9.2").write_text("old-pod")
    ipam = HostLocalIPAM("10.244.1.0/24", tmp_path)
    assert ipam.allocations() == {}


@pytest.mark.parametrize("owner", ["", " pod", "a\nb"])
def test_bad_owner_is_rejected(tmp_path: Path, owner: str) -> None:
    with pytest.raises(IPAMError, match="owner"):
        HostLocalIPAM("10.244.1.0/24", tmp_path).allocate(owner)


def test_gateway_outside_cidr_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(IPAMError, match="outside"):
        HostLocalIPAM("10.244.1.0/24", tmp_path, gateway="10.0.0.1")
