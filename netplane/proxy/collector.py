"""The cyclic garbage collector, paused while a proxy renders in bulk.

A cold render (a start, a new node setting) makes a few long-lived objects
per service port, hundreds of thousands at 10,000 Services, and no
reference cycles. While they are made, the collector's allocation counts
keep triggering passes, including full ones over the whole heap, that free
nothing: about a third of such a render's time here. Reference counting
still frees whatever is dropped meanwhile; the collector runs again as
soon as the render is over.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (unless it was already off)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
