"""Where "now" comes from.

The engine never calls :func:`datetime.now` itself: it asks its clock, so a
simulation, a backfill or a test can drive time by hand.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from slakit._time import ensure_aware

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with a ``now()`` that returns an aware datetime."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; for tests, simulation and backfill.

    :param start: the initial instant (aware). Defaults to the system time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_aware("start", start) if start is not None else datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The instant this clock was last set to."""
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (may go backwards; a simulation may rewind).

        :raises NaiveDatetimeError: when ``when`` is naive.
        """
        ensure_aware("when", when)
        with self._lock:
            self._now = when

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move forward by ``delta`` and/or the keyword amounts; returns the new now."""
        step = (delta or timedelta()) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        with self._lock:
            self._now = self._now + step
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()!r})"
