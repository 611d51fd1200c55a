"""A node cgroup root of its own for a test (``netplane-test/<id>`` under
the test's cgroup), removed afterwards: what the cgroup tests share."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from netplane.node.cgroups import Hierarchy
from netplane.node.runtime.dockerd import remove_cgroups


@contextlib.contextmanager
def scratch_cgroups(*, absolute: bool = False) -> Iterator[Hierarchy]:
    found = Hierarchy.detect(f"netplane-test/{uuid.uuid4().hex[:8]}", absolute=absolute)
    if found is None:
        pytest.skip("no usable cgroup hierarchy")
    try:
        yield found
    finally:
        assert found.remove("")
        if absolute:  # an engine's containers wrote in its other hierarchies too
            remove_cgroups("/" + found.name)
        for root in found.roots.values():
            with contextlib.suppress(OSError):
                root.parent.rmdir()  # unless another run's node is still there
