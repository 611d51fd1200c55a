"""Resource quantities as Kubernetes writes them (``500m``, ``64Mi``, ``1G``,
``499415881n`` as metrics-server reports CPU, ``1e3``)."""

from __future__ import annotations

import re

UNITS = {"": 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 10**3, "M": 10**6, "G": 10**9,
         "T": 10**12, "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
# kube's grammar: a signed decimal, then a binary or decimal SI suffix or a
# decimal exponent ("E" alone is exa; "E3" an exponent).
_FORM = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]?)$")


def quantity(text: str) -> float:
    """A resource quantity (``500m``, ``64Mi``, ``1.5``) as a number."""
    text = str(text).strip()
    m = _FORM.match(text)
    if m is None:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
    number, suffix = m.groups()
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return float(number + suffix)
    return float(number) * UNITS[suffix]
