"""Run calendar tests against either implementation: the compiled fast path or pure Python.

``slakit.calendar`` calls ``slakit._ccal`` through two module globals
(``_add_fast``, ``_elapsed_fast``); setting them to ``None`` gives the pure-Python
code, exactly as ``SLAKIT_PURE=1`` does at import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

import slakit.calendar as calendar_module


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def accelerated_or_skip() -> None:
    """Skip when the compiled module is not in use; under CI (``CI`` set) fail instead."""
    if calendar_module.ACCELERATED:
        return
    if calendar_module._PURE_BY_ENV:
        reason = "slakit._ccal is turned off by SLAKIT_PURE"
    else:
        reason = "slakit._ccal is not built (no C compiler when slakit was installed)"
    if _flag("CI"):
        pytest.fail(f"{reason}; CI must test the compiled fast path", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def pure_python() -> Iterator[None]:
    """Within the block, BusinessCalendar runs its pure-Python code only."""
    saved = calendar_module._add_fast, calendar_module._elapsed_fast
    calendar_module._add_fast = calendar_module._elapsed_fast = None
    try:
        yield
    finally:
        calendar_module._add_fast, calendar_module._elapsed_fast = saved
