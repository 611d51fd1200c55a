"""Resource quantities as Kubernetes writes them (``500m``, ``64Mi``, ``1G``)."""

from __future__ import annotations

UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(text: str) -> float:
    """A resource quantity (``500m``, ``64Mi``, ``1.5``) as a number."""
    text = str(text).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix in sorted(UNITS, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[:-len(suffix)]) * UNITS[suffix]
    return float(text)
