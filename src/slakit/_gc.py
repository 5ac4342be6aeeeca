"""Pausing the cyclic garbage collector around bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused"]


@contextmanager
def paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block, then restore it.

    A claimed batch of steps, a bulk start or a big import creates many
    short-lived objects and no reference cycles, and the collector would walk
    the heap again and again for nothing (about 4% of a step's instructions).
    Reference counting still frees everything as usual, and a collector that
    was already off (the application's choice) stays off. Blocks stay short
    (one batch), so collection is only deferred, never skipped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
