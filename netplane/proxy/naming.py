"""Stable names derived from service ports, shared by every mode.

kube-proxy's ``portProtoHash``: sha256 of a service port's identity, its
first 80 bits in base32, 16 characters. A cold full sync at 10,000 service
ports computes some 30,000 of them, so the spelling is done with a table
(``base64.b32encode`` is pure Python here and costs as much as the digest).
"""

from __future__ import annotations

import hashlib

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Every pair of base32 digits, indexed by 10 bits: 80 bits are 8 lookups.
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)


def hash16(text: str) -> str:
    """``base64.b32encode(sha256(text)[:10])``: 16 characters, 80 bits."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _PAIRS
    return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])
