"""Quantities in every form kube writes them, metrics-server's nanocores among them."""

from __future__ import annotations

import pytest

from netplane.api.quantity import quantity


@pytest.mark.parametrize(("text", "value"), [
    ("500m", 0.5), ("64Mi", 64 * 2**20), ("1.5", 1.5), ("499415881n", 0.499415881),
    ("250u", 0.00025), ("1e3", 1000.0), ("2E", 2e18), ("1Ki", 1024.0), (".5", 0.5),
    ("3k", 3000.0), ("-1", -1.0),
])
def test_forms(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1.5.5", "12x", "Mi", "1 Gi"])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        quantity(text)
