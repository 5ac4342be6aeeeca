"""Compiled fast paths of :mod:`slakit.calendar` (optional; built when a C compiler is present)."""

from datetime import datetime, timedelta, tzinfo

def add_fast(
    start: object, delta: object, packed: bytes | None, tz: tzinfo, /
) -> datetime | None: ...
def elapsed_fast(start: object, end: object, packed: bytes | None, /) -> timedelta | None: ...
