"""Pod CIDRs are handed out in order, skipping the cluster CIDR's first
subnet, and a released one is the next handed out."""

from __future__ import annotations

import pytest

from netplane.cluster.apiserver.allocators import AllocationError, PodCIDRAllocator


def test_in_order_after_the_first_and_released_ones_come_back() -> None:
    pods = PodCIDRAllocator("10.244.0.0/16")
    assert [pods.allocate() for _ in range(3)] == ["10.244.1.0/24", "10.244.2.0/24",
                                                   "10.244.3.0/24"]
    pods.release("10.244.2.0/24")
    assert pods.allocate() == "10.244.2.0/24"
    assert pods.allocate() == "10.244.4.0/24"


def test_ones_taken_by_name_are_skipped_and_the_range_ends() -> None:
    pods = PodCIDRAllocator("10.244.0.0/22")
    pods.allocate_specific("10.244.1.0/24")
    with pytest.raises(AllocationError, match="already allocated"):
        pods.allocate_specific("10.244.1.0/24")
    assert [pods.allocate(), pods.allocate()] == ["10.244.2.0/24", "10.244.3.0/24"]
    with pytest.raises(AllocationError, match="no pod CIDR left"):
        pods.allocate()
    pods.release("10.244.0.0/24")  # the skipped first one never comes into use
    with pytest.raises(AllocationError):
        pods.allocate()
