"""Business-hours calendars: weekly hours in an IANA zone, holidays and closures.

A :class:`BusinessCalendar` answers "when has this much open time elapsed?"
(:meth:`~BusinessCalendar.add`) and "how much open time lies between these
instants?" (:meth:`~BusinessCalendar.elapsed`). Conventions are documented in
``docs/calendar.md``; the ones that must not drift:

* a boundary ``T`` on local date ``d`` is the first instant at which the wall
  clock on ``d`` reads ``T`` or later (end of a spring-forward gap, first pass
  through a fall-back repeat);
* an interval belongs to the date it starts on, so a holiday removes every
  interval that starts on it, including an overnight shift;
* open time is real elapsed time, intervals are half-open ``[open, close)``.

Internally the calendar keeps one table of open intervals as UTC epoch
microseconds with cumulative open time, built lazily a year at a time in either
direction, so a query is two bisections plus one conversion of the result.

When the optional compiled module ``slakit._ccal`` is present, the common case
of :meth:`~BusinessCalendar.add` and :meth:`~BusinessCalendar.elapsed` runs in
C on a packed copy of that table; everything else (and everything when
``SLAKIT_PURE=1`` is set at import) runs the pure-Python code below, which
gives the same results. :data:`ACCELERATED` tells which one is in use.
"""

from __future__ import annotations

import copy
import re
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slakit._compiled import PURE_BY_ENV
from slakit.errors import (
    CalendarClosedError,
    ConfigError,
    InvalidHoursError,
    InvalidRRuleError,
    NaiveDatetimeError,
    OverlappingIntervalsError,
    UnknownHolidayCountryError,
    UnknownTimezoneError,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    _I64Array = npt.NDArray[np.int64]

__all__ = ["ACCELERATED", "BusinessCalendar", "resolve_wall_time"]

# The compiled fast paths, when built and not turned off; None means pure Python.
_add_fast: Callable[[object, object, bytes | None, ZoneInfo], datetime | None] | None = None
_elapsed_fast: Callable[[object, object, bytes | None], timedelta | None] | None = None
# SLAKIT_PURE set to anything but empty or 0 turns the compiled paths off.
_PURE_BY_ENV: Final[bool] = PURE_BY_ENV
if not _PURE_BY_ENV:
    try:
        from slakit._ccal import add_fast as _add_fast
        from slakit._ccal import elapsed_fast as _elapsed_fast
    except ImportError:  # not built (no compiler at install time): pure Python
        _add_fast = _elapsed_fast = None

ACCELERATED: Final[bool] = _add_fast is not None
"""Whether the compiled fast path of ``add``/``elapsed`` is in use (read once at import)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_FLOAT_EXACT_US: Final = 2**32 * 1_000_000
_US: Final = timedelta(microseconds=1)
_ONE_DAY: Final = timedelta(days=1)
_DAY_US: Final = 86_400_000_000
_MINUTES_PER_DAY: Final = 1440
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_KEYS: Final = frozenset(
    {"timezone", "hours", "holidays", "closed", "closed_periods", "open", "horizon_years"}
)
_HOLIDAY_KEYS: Final = frozenset({"country", "subdiv", "categories", "observed"})
_OPEN_KEYS: Final = frozenset({"date", "hours"})
# Years at datetime's limits are left out so that spills and offsets stay representable.
_MIN_YEAR: Final = 2
_MAX_YEAR: Final = 9997
# Rules without a DTSTART are anchored here, so FREQ=WEEKLY;INTERVAL=2 is stable.
_RRULE_ANCHOR: Final = datetime(1970, 1, 1)
_RANGE_RE: Final = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_PRESETS: Final = ("24/7",)

# One interval of a day: minutes after local midnight; end may exceed 1440 (overnight).
_DaySpec = tuple[tuple[int, int, str], ...]


def resolve_wall_time(naive: datetime, tz: ZoneInfo) -> datetime:
    """Return the first instant at which the wall clock in ``tz`` reads ``naive`` or later.

    Inside a spring-forward gap that is the end of the gap; in a fall-back
    repeat it is the first occurrence. This is the rule every calendar boundary
    follows.

    :param naive: a wall-clock time without ``tzinfo``.
    :param tz: the zone whose wall clock is meant.
    :returns: an aware datetime in ``tz`` with the correct ``fold``.
    :raises ValueError: if ``naive`` carries a ``tzinfo``.
    """
    if naive.tzinfo is not None:
        raise ValueError(f"resolve_wall_time expects a naive datetime, got {naive!r}")
    return _from_us(_wall_us(naive, tz), tz)


def _wall_us(naive: datetime, tz: ZoneInfo) -> int:
    """Epoch microseconds of the first instant whose wall clock reads ``naive`` or later."""
    offset = tz.utcoffset(naive)
    if offset == tz.utcoffset(naive.replace(fold=1)):
        # Neither in a gap nor in a repeat: the one reading of this wall time.
        return (naive - _NAIVE_EPOCH - offset) // _US  # type: ignore[operator]
    us = (naive.replace(tzinfo=tz) - _EPOCH) // _US
    if _wall(us, tz) == naive:
        # fold=0 is the first occurrence of a repeated time, which is what we want.
        return us
    # A gap: fold=0 and fold=1 bracket the transition; the wall clock jumps once
    # between them, so bisection finds the first instant at or past ``naive``.
    other = (naive.replace(tzinfo=tz, fold=1) - _EPOCH) // _US
    lo, hi = min(us, other), max(us, other)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def _wall(us: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(0, 0, us)).astimezone(tz).replace(tzinfo=None)


def _from_us(us: int, tz: ZoneInfo) -> datetime:
    if 0 <= us < _FLOAT_EXACT_US:
        # Fast and still exact: below 2**32 s the float's error stays under half a
        # microsecond, and fromtimestamp rounds to the nearest one (and sets fold).
        return datetime.fromtimestamp(us / 1e6, tz)
    return (_EPOCH + timedelta(0, 0, us)).astimezone(tz)


def _utc_year_us(year: int) -> int:
    return (datetime(year, 1, 1, tzinfo=UTC) - _EPOCH) // _US


def _to_us(value: object, field: str) -> int:
    try:
        return int((value - _EPOCH) // _US)  # type: ignore[operator]
    except TypeError:
        if isinstance(value, datetime):
            raise NaiveDatetimeError(field, value) from None
        raise TypeError(f"{field} must be a datetime, got {value!r}") from None


def _delta_us(delta: object) -> int:
    if not isinstance(delta, timedelta):
        raise TypeError(f"delta must be a timedelta, got {delta!r}")
    return delta // _US


class _Table:
    """An immutable snapshot of open intervals for local years ``lo_year..hi_year``.

    It holds every interval that starts on a date in those years, which is a
    contiguous run of the calendar's intervals; every interval meeting
    ``[lo_us, hi_us)`` is in it. ``cum0[i]``/``cum1[i]`` are the open time before
    the start/end of interval ``i``, counted from the table's first interval.
    """

    __slots__ = (
        "_arrays",
        "cum0",
        "cum1",
        "ends",
        "hi_us",
        "hi_year",
        "lo_us",
        "lo_year",
        "starts",
    )

    def __init__(self, lo_year: int, hi_year: int, intervals: Sequence[tuple[int, int]]) -> None:
        self.lo_year = lo_year
        self.hi_year = hi_year
        # Margins of three days cover any UTC offset plus an overnight spill.
        self.lo_us = _utc_year_us(lo_year) + 3 * _DAY_US
        self.hi_us = _utc_year_us(hi_year + 1) - 3 * _DAY_US
        self.starts = [a for a, _ in intervals]
        self.ends = [b for _, b in intervals]
        cum0: list[int] = []
        cum1: list[int] = []
        total = 0
        for a, b in intervals:
            cum0.append(total)
            total += b - a
            cum1.append(total)
        self.cum0 = cum0
        self.cum1 = cum1
        self._arrays: tuple[Any, ...] | None = None

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def cum_at(self, t: int) -> int:
        i = bisect_right(self.starts, t) - 1
        if i < 0:
            return 0
        return self.cum0[i] + min(t, self.ends[i]) - self.starts[i]

    def arrays(self) -> tuple[Any, ...]:
        """numpy views and searchers of the table, built once per snapshot.

        A race between two threads only builds them twice; both results are equal.
        """
        if self._arrays is None:
            import numpy as np

            starts = np.asarray(self.starts, dtype=np.int64)
            ends = np.asarray(self.ends, dtype=np.int64)
            cum0 = np.asarray(self.cum0, dtype=np.int64)
            cum1 = np.asarray(self.cum1, dtype=np.int64)
            # Boundaries interleaved (start, end, start, ...) behind a sentinel just
            # below the covered range, so one search gives the open time before any
            # covered instant: cum + slope * (t - boundary).
            bounds = np.empty(2 * len(starts) + 1, dtype=np.int64)
            bounds[0] = self.lo_us - 1
            bounds[1::2] = starts
            bounds[2::2] = ends
            bcum = np.zeros_like(bounds)
            bcum[1::2] = cum0
            bcum[2::2] = cum1
            slope = np.zeros_like(bounds)
            slope[1::2] = 1
            self._arrays = (
                starts,
                ends,
                cum0,
                cum1,
                bounds,
                bcum,
                slope,
                _Searcher(np, bounds, "right"),
                _Searcher(np, cum0, "right"),
                _Searcher(np, cum1, "left"),
            )
        return self._arrays


class _Searcher:
    """``np.searchsorted(arr, keys, side)`` in constant time per key.

    Keys are bucketed by value into buckets about one array gap wide; each
    bucket knows the answer at its left edge, and a few vectorised steps finish
    the count. Random keys defeat a binary search's caches, this does not. When
    some bucket holds too many elements it falls back to ``np.searchsorted``.
    """

    _MAX_STEPS = 6

    def __init__(self, np: Any, arr: Any, side: str) -> None:
        self._np = np
        self._arr = arr
        self._side = side
        self._first: Any = None
        if len(arr) < 2:
            return
        self._base = int(arr[0]) - 1  # below every element, so bucket 0 starts empty
        span = int(arr[-1]) - self._base
        self._width = max(1, span // len(arr))
        nbuckets = span // self._width + 2
        edges = self._base + np.arange(nbuckets, dtype=np.int64) * self._width
        first = np.searchsorted(arr, edges, side=side)
        steps = int(np.diff(first).max())
        if steps > self._MAX_STEPS:
            return
        self._steps = steps
        self._first = first
        self._last_bucket = nbuckets - 1
        self._padded = np.append(arr, np.iinfo(np.int64).max)

    def __call__(self, keys: Any) -> Any:
        np = self._np
        if self._first is None:
            return np.searchsorted(self._arr, keys, side=self._side)
        bucket = np.clip((keys - self._base) // self._width, 0, self._last_bucket)
        k = self._first[bucket]
        padded = self._padded
        if self._side == "right":
            for _ in range(self._steps):
                k += padded[k] <= keys
        else:
            for _ in range(self._steps):
                k += padded[k] < keys
        return k


class _Spec:
    """The parsed, validated configuration of a calendar."""

    __slots__ = (
        "closed_dates",
        "closed_periods",
        "holidays",
        "horizon_years",
        "open_days",
        "rrules",
        "tz",
        "weekly",
    )

    def __init__(
        self,
        tz: ZoneInfo,
        weekly: tuple[_DaySpec, ...],
        holidays: tuple[dict[str, Any], ...],
        closed_dates: frozenset[date],
        rrules: tuple[Any, ...],
        closed_periods: tuple[tuple[int, int], ...],
        open_days: dict[date, _DaySpec],
        horizon_years: int,
    ) -> None:
        self.tz = tz
        self.weekly = weekly
        self.holidays = holidays
        self.closed_dates = closed_dates
        self.rrules = rrules
        self.closed_periods = closed_periods
        self.open_days = open_days
        self.horizon_years = horizon_years


class BusinessCalendar:
    """Weekly opening hours in one IANA zone, minus holidays and closures.

    Build one with :meth:`from_config`, :meth:`always_open` or :meth:`weekdays`.
    Every method takes aware datetimes in any zone and returns aware datetimes
    in the calendar's zone. Instances are safe to share between threads.
    """

    def __init__(self, spec: _Spec, config: Mapping[str, Any], *, name: str | None = None) -> None:
        self.name = name
        self._spec = spec
        self._tz = spec.tz
        self._config = copy.deepcopy(dict(config))
        self._lock = threading.Lock()
        self._table: _Table | None = None
        # The current table's lists in one tuple, for the inlined fast paths.
        self._fast: tuple[int, int, list[int], list[int], list[int], list[int]] | None = None
        # The same table packed as int64s for the compiled fast path (see _pack).
        self._packed: bytes | None = None
        # python-holidays tables, filled year by year; touched only under the lock.
        self._holiday_tables: list[Any] | None = None

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | str, *, name: str | None = None
    ) -> BusinessCalendar:
        """Build a calendar from a mapping shaped like a ``[calendars.NAME]`` table.

        Keys: ``timezone`` (required), ``hours``, ``holidays``, ``closed``,
        ``closed_periods``, ``open``, ``horizon_years``; see ``docs/calendar.md``.
        The string ``"24/7"`` is the always-open UTC calendar.

        :param config: the mapping, or a preset name.
        :param name: the calendar's name, kept as :attr:`name`.
        :returns: the calendar.
        :raises ConfigError: for an unknown key or a value of the wrong shape.
        :raises UnknownTimezoneError: if ``timezone`` is not an IANA zone.
        :raises InvalidHoursError: for a malformed or empty ``hours`` entry.
        :raises OverlappingIntervalsError: if two opening intervals overlap.
        :raises UnknownHolidayCountryError: for an unknown holiday country or subdivision.
        :raises InvalidRRuleError: for a ``closed`` entry that is neither a date nor an RRULE.
        """
        if isinstance(config, str):
            if config.strip().lower() == "24/7":
                return cls.always_open("UTC", name=name)
            raise ConfigError(
                f"unknown calendar preset {config!r}; known presets: {', '.join(_PRESETS)}",
                field="calendar",
                value=config,
            )
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"calendar config must be a mapping, got {config!r}", field="calendar", value=config
            )
        return cls(_parse(config), config, name=name)

    @classmethod
    def always_open(
        cls, tz: str | ZoneInfo = "UTC", *, name: str | None = None
    ) -> BusinessCalendar:
        """Return a calendar that is open all the time ("24/7"); ``add`` is plain addition.

        :param tz: the zone results are expressed in.
        :param name: the calendar's name.
        :returns: the calendar.
        :raises UnknownTimezoneError: if ``tz`` is not an IANA zone.
        """
        key = tz.key if isinstance(tz, ZoneInfo) else tz
        hours = {day: ["00:00-24:00"] for day in _DAYS}
        return cls.from_config({"timezone": key, "hours": hours}, name=name)

    @classmethod
    def weekdays(
        cls,
        tz: str | ZoneInfo,
        hours: str | Sequence[str] = "09:00-17:00",
        *,
        name: str | None = None,
    ) -> BusinessCalendar:
        """Return a Monday-to-Friday calendar with the same hours each day.

        :param tz: the calendar's IANA zone.
        :param hours: one ``"HH:MM-HH:MM"`` range or a list of them.
        :param name: the calendar's name.
        :returns: the calendar.
        :raises UnknownTimezoneError: if ``tz`` is not an IANA zone.
        :raises InvalidHoursError: if a range is malformed.
        """
        key = tz.key if isinstance(tz, ZoneInfo) else tz
        ranges = [hours] if isinstance(hours, str) else list(hours)
        return cls.from_config(
            {"timezone": key, "hours": {day: list(ranges) for day in _DAYS[:5]}}, name=name
        )

    def to_config(self) -> dict[str, Any]:
        """Return (a copy of) the mapping this calendar was built from.

        :returns: a mapping that :meth:`from_config` turns into an equal calendar.
        """
        return copy.deepcopy(self._config)

    @property
    def timezone(self) -> ZoneInfo:
        """The calendar's zone; results are expressed in it."""
        return self._tz

    @property
    def horizon_years(self) -> int:
        """Years of closed time a search crosses before raising :class:`CalendarClosedError`."""
        return self._spec.horizon_years

    def __repr__(self) -> str:
        return f"BusinessCalendar(name={self.name!r}, timezone={self._tz.key!r})"

    # -- queries ------------------------------------------------------------------

    def add(self, start: datetime, delta: timedelta) -> datetime:
        """Return the earliest instant at which ``delta`` of open time has elapsed since ``start``.

        Outside hours the clock starts at the next opening; landing exactly on a
        closing time returns that closing time. ``add(s, timedelta(0))`` is ``s``.
        A negative ``delta`` goes backwards: the latest instant ``x <= start``
        with ``elapsed(x, start) == -delta`` (landing on an opening returns it).

        :param start: an aware datetime.
        :param delta: open time to add; may be negative.
        :returns: an aware datetime in the calendar's zone.
        :raises NaiveDatetimeError: if ``start`` is naive.
        :raises CalendarClosedError: if no open time is found within the horizon.
        """
        if _add_fast is not None:
            # The compiled fast path answers the common case; None sends the rest below.
            result = _add_fast(start, delta, self._packed, self._tz)
            if result is not None:
                return result
        try:
            t = (start - _EPOCH) // _US
            d = delta // _US
        except TypeError:
            t = _to_us(start, "start")
            d = _delta_us(delta)
        fast = self._fast
        if fast is not None and d > 0:
            # The common case, inlined: one snapshot, two bisections, no table growth.
            lo, hi, starts, ends, cum0, cum1 = fast
            if lo <= t < hi:
                i = bisect_right(starts, t) - 1
                if i >= 0:
                    end = ends[i]
                    target = cum0[i] + (t if t < end else end) - starts[i] + d
                else:
                    target = d
                if target <= cum1[-1]:
                    j = bisect_left(cum1, target)
                    us = ends[j] - cum1[j] + target
                    if 0 <= us < _FLOAT_EXACT_US:  # see _from_us
                        return datetime.fromtimestamp(us / 1e6, self._tz)
                    return _from_us(us, self._tz)
        tab = self._table
        if d == 0:
            return start.astimezone(self._tz)
        if tab is None or not tab.lo_us <= t < tab.hi_us:
            tab = self._cover(t, t)
        while True:
            target = tab.cum_at(t) + d
            if d > 0:
                cum1 = tab.cum1
                if cum1 and target <= cum1[-1]:
                    j = bisect_left(cum1, target)
                    return _from_us(tab.ends[j] - (cum1[j] - target), self._tz)
            else:
                cum0 = tab.cum0
                if cum0 and target >= 0:
                    j = bisect_right(cum0, target) - 1
                    return _from_us(tab.starts[j] + (target - cum0[j]), self._tz)
            tab = self._grow(tab, forward=d > 0, t=t)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Return the open time in ``[start, end)``; negative when ``end < start``.

        :param start: an aware datetime.
        :param end: an aware datetime.
        :returns: the open time, exact to the microsecond.
        :raises NaiveDatetimeError: if either argument is naive.
        """
        if _elapsed_fast is not None:
            result = _elapsed_fast(start, end, self._packed)
            if result is not None:
                return result
        try:
            s = (start - _EPOCH) // _US
            e = (end - _EPOCH) // _US
        except TypeError:
            s = _to_us(start, "start")
            e = _to_us(end, "end")
        lo, hi = (s, e) if s <= e else (e, s)
        fast = self._fast
        if fast is not None and fast[0] <= lo and hi < fast[1]:
            starts, ends, cum0 = fast[2], fast[3], fast[4]
        else:
            tab = self._cover(lo, hi)
            starts, ends, cum0 = tab.starts, tab.ends, tab.cum0
        # Open time before each instant (cum_at, inlined for speed).
        i = bisect_right(starts, s) - 1
        cs = cum0[i] + (s if s < ends[i] else ends[i]) - starts[i] if i >= 0 else 0
        i = bisect_right(starts, e) - 1
        ce = cum0[i] + (e if e < ends[i] else ends[i]) - starts[i] if i >= 0 else 0
        return _US * (ce - cs)

    def is_open(self, t: datetime) -> bool:
        """Return whether the calendar is open at ``t`` (intervals are ``[open, close)``).

        :param t: an aware datetime.
        :returns: ``True`` inside an opening interval.
        :raises NaiveDatetimeError: if ``t`` is naive.
        """
        us = _to_us(t, "t")
        tab = self._table
        if tab is None or not tab.lo_us <= us < tab.hi_us:
            tab = self._cover(us, us)
        i = bisect_right(tab.starts, us) - 1
        return i >= 0 and us < tab.ends[i]

    def next_open(self, t: datetime) -> datetime:
        """Return ``t`` if the calendar is open then, else the next opening.

        :param t: an aware datetime.
        :returns: an aware datetime in the calendar's zone.
        :raises NaiveDatetimeError: if ``t`` is naive.
        :raises CalendarClosedError: if no opening is found within the horizon.
        """
        us = _to_us(t, "t")
        tab = self._table
        if tab is None or not tab.lo_us <= us < tab.hi_us:
            tab = self._cover(us, us)
        while True:
            i = bisect_right(tab.ends, us)
            if i < len(tab.ends):
                return _from_us(max(us, tab.starts[i]), self._tz)
            tab = self._grow(tab, forward=True, t=us)

    def open_intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Return the opening intervals meeting ``[start, end)``, clipped to it, in order.

        Touching intervals (``"09:00-12:00"`` and ``"12:00-17:00"``, or an
        overnight shift meeting the next day's) come back as one.

        :param start: an aware datetime.
        :param end: an aware datetime; nothing is returned when ``end <= start``.
        :returns: ``(open, close)`` pairs of aware datetimes in the calendar's zone.
        :raises NaiveDatetimeError: if either argument is naive.
        """
        s = _to_us(start, "start")
        e = _to_us(end, "end")
        if e <= s:
            return []
        tab = self._cover(s, e)
        i = bisect_right(tab.ends, s)
        out: list[tuple[int, int]] = []
        while i < len(tab.starts) and tab.starts[i] < e:
            a, b = max(tab.starts[i], s), min(tab.ends[i], e)
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
            i += 1
        return [(_from_us(a, self._tz), _from_us(b, self._tz)) for a, b in out]

    # -- batch API ----------------------------------------------------------------

    def add_many(self, starts: Any, deltas: Any) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`add` over arrays of instants.

        ``starts`` is an int64 array of UTC epoch **microseconds** or a
        ``datetime64`` array (read as UTC); ``deltas`` is an int64 array of
        microseconds or a ``timedelta64`` array. Scalars broadcast. Requires numpy.

        :param starts: start instants.
        :param deltas: open time to add to each; may be negative.
        :returns: int64 array of UTC epoch microseconds.
        :raises ImportError: if numpy is not installed.
        :raises CalendarClosedError: if no open time is found within the horizon.
        """
        np = _numpy()
        t, d = np.broadcast_arrays(_us_array(starts, "starts"), _us_array(deltas, "deltas"))
        if t.size == 0:
            return cast("_I64Array", np.empty(t.shape, dtype=np.int64))
        t_lo, t_hi = int(t.min()), int(t.max())
        tab = self._cover(t_lo, t_hi)
        fwd = d > 0
        back = d < 0
        any_fwd = bool(fwd.any())
        any_back = bool(back.any())
        while True:
            arrays = tab.arrays()
            cum0, cum1 = arrays[2], arrays[3]
            target = _np_cum_at(t, arrays) + d
            if any_fwd and (len(cum1) == 0 or int(target[fwd].max()) > int(cum1[-1])):
                tab = self._grow(tab, forward=True, t=t_hi)
                continue
            if any_back and (len(cum0) == 0 or int(target[back].min()) < 0):
                tab = self._grow(tab, forward=False, t=t_lo)
                continue
            break
        starts_arr, ends_arr = arrays[0], arrays[1]
        out = t
        if any_fwd:
            # Lanes that do not go forward may point one past the end: clamp them.
            j = np.minimum(arrays[9](target), len(cum1) - 1)
            res = ends_arr[j] - (cum1[j] - target)
            out = res if bool(fwd.all()) else np.where(fwd, res, out)
        if any_back:
            j = np.maximum(arrays[8](target) - 1, 0)
            out = np.where(back, starts_arr[j] + (target - cum0[j]), out)
        if out is t:
            out = t.copy()
        return cast("_I64Array", np.asarray(out, dtype=np.int64))

    def elapsed_many(self, starts: Any, ends: Any) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`elapsed`: open time in ``[start, end)`` per pair, in microseconds.

        Inputs are int64 UTC epoch microseconds or ``datetime64`` arrays; scalars
        broadcast. Requires numpy.

        :param starts: start instants.
        :param ends: end instants.
        :returns: int64 array of microseconds (negative where ``end < start``).
        :raises ImportError: if numpy is not installed.
        """
        np = _numpy()
        s, e = np.broadcast_arrays(_us_array(starts, "starts"), _us_array(ends, "ends"))
        if s.size == 0:
            return cast("_I64Array", np.empty(s.shape, dtype=np.int64))
        lo = min(int(s.min()), int(e.min()))
        hi = max(int(s.max()), int(e.max()))
        arrays = self._cover(lo, hi).arrays()
        diff = _np_cum_at(e, arrays) - _np_cum_at(s, arrays)
        return cast("_I64Array", np.asarray(diff, dtype=np.int64))

    # -- the lazy table -------------------------------------------------------------

    def _cover(self, lo_us: int, hi_us: int) -> _Table:
        """Return a snapshot whose complete range holds both instants, extending it if needed."""
        tab = self._table
        if tab is not None and tab.lo_us <= lo_us and hi_us < tab.hi_us:
            return tab
        # Years within four days of the instants: the table's margins are three days.
        lo_year = _utc_year(lo_us - 4 * _DAY_US)
        hi_year = _utc_year(hi_us + 4 * _DAY_US)
        if lo_year < _MIN_YEAR or hi_year > _MAX_YEAR:
            raise CalendarClosedError(
                f"calendar {self._label()} covers years {_MIN_YEAR + 1}..{_MAX_YEAR - 1} only",
                field="calendar",
                value=self.name,
            )
        with self._lock:
            return self._extend_locked(lo_year, hi_year)

    def _grow(self, tab: _Table, *, forward: bool, t: int) -> _Table:
        """Extend the table by a year in one direction; raise if the horizon is all closed."""
        horizon = self._spec.horizon_years
        t_year = _utc_year(t)
        with self._lock:
            cur = self._table
            assert cur is not None
            if forward:
                if cur.hi_year > tab.hi_year:
                    return cur
                # Closed for the last `horizon` built years, all of them after t: give up.
                cutoff = _utc_year_us(cur.hi_year - horizon + 1) - _DAY_US
                empty = not cur.ends or cur.ends[-1] <= cutoff
                if (empty and cur.hi_year - horizon >= t_year) or cur.hi_year >= _MAX_YEAR:
                    raise self._closed_error(t, forward=True)
                return self._extend_locked(cur.lo_year, cur.hi_year + 1)
            if cur.lo_year < tab.lo_year:
                return cur
            cutoff = _utc_year_us(cur.lo_year + horizon) + _DAY_US
            empty = not cur.starts or cur.starts[0] >= cutoff
            if (empty and cur.lo_year + horizon <= t_year) or cur.lo_year <= _MIN_YEAR:
                raise self._closed_error(t, forward=False)
            return self._extend_locked(cur.lo_year - 1, cur.hi_year)

    def _closed_error(self, t: int, *, forward: bool) -> CalendarClosedError:
        direction = "after" if forward else "before"
        at = _from_us(t, self._tz).isoformat()
        return CalendarClosedError(
            f"calendar {self._label()} has no open time within {self._spec.horizon_years} "
            f"years {direction} {at}",
            field="calendar",
            value=self.name,
        )

    def _label(self) -> str:
        return repr(self.name) if self.name is not None else f"in {self._tz.key}"

    def _extend_locked(self, lo_year: int, hi_year: int) -> _Table:
        cur = self._table
        if cur is None:
            tab = _Table(lo_year, hi_year, self._build(lo_year, hi_year))
        else:
            if cur.lo_year <= lo_year and hi_year <= cur.hi_year:
                return cur
            lo_year, hi_year = min(lo_year, cur.lo_year), max(hi_year, cur.hi_year)
            before = self._build(lo_year, cur.lo_year - 1) if lo_year < cur.lo_year else []
            after = self._build(cur.hi_year + 1, hi_year) if hi_year > cur.hi_year else []
            tab = _Table(lo_year, hi_year, _merge_touching(before + cur.intervals() + after))
        # Reference assignments: readers see the old or the new snapshot, never a mix.
        self._table = tab
        self._fast = (
            (tab.lo_us, tab.hi_us, tab.starts, tab.ends, tab.cum0, tab.cum1) if tab.starts else None
        )
        self._packed = _pack(tab) if ACCELERATED and tab.starts else None
        return tab

    def _build(self, y0: int, y1: int) -> list[tuple[int, int]]:
        """Intervals that start on local dates in years ``y0..y1``, closures removed."""
        spec = self._spec
        tz = spec.tz
        closed = self._closed_days(y0, y1)
        out: list[tuple[int, int]] = []
        d = date(y0, 1, 1)
        stop = date(y1 + 1, 1, 1)
        while d < stop:
            day = spec.open_days.get(d)
            if day is None:
                day = () if d in closed else spec.weekly[d.weekday()]
            if day:
                midnight = datetime(d.year, d.month, d.day)
                for s, e, _ in day:
                    a = _wall_us(midnight + timedelta(minutes=s), tz)
                    b = _wall_us(midnight + timedelta(minutes=e), tz)
                    if b > a:  # both ends inside one gap: nothing is open
                        out.append((a, b))
            d += _ONE_DAY
        if spec.closed_periods:
            out = _subtract(out, spec.closed_periods)
        return _merge_touching(out)

    def _closed_days(self, y0: int, y1: int) -> set[date]:
        spec = self._spec
        days = {d for d in spec.closed_dates if y0 <= d.year <= y1}
        if spec.holidays and self._holiday_tables is None:
            self._holiday_tables = [_holiday_table(h) for h in spec.holidays]
        for table in self._holiday_tables or ():
            # Asking for a date fills in its whole year; observed days can spill over
            # from a neighbouring year, so fill one extra year each side.
            for year in range(max(y0 - 1, 1), min(y1 + 1, _MAX_YEAR + 1) + 1):
                _ = date(year, 1, 1) in table
            days.update(d for d in table if y0 <= d.year <= y1)
        for rule in spec.rrules:
            for occ in rule.between(datetime(y0, 1, 1), datetime(y1 + 1, 1, 1), inc=True):
                if y0 <= occ.year <= y1:
                    days.add(occ.date())
        return days


def _holiday_table(spec: Mapping[str, Any]) -> Any:
    import holidays as pyholidays

    return pyholidays.country_holidays(
        spec["country"],
        subdiv=spec.get("subdiv"),
        observed=spec.get("observed", True),
        categories=spec.get("categories"),
    )


# -- helpers ---------------------------------------------------------------------------


def _utc_year(us: int) -> int:
    try:
        return (_EPOCH + timedelta(0, 0, us)).year
    except OverflowError:
        return _MIN_YEAR - 1 if us < 0 else _MAX_YEAR + 1


def _pack(tab: _Table) -> bytes:
    """The table as native int64s for ``slakit._ccal``: lo, hi, n, starts, ends, cum0, cum1."""
    packed = array("q", (tab.lo_us, tab.hi_us, len(tab.starts)))
    for column in (tab.starts, tab.ends, tab.cum0, tab.cum1):
        packed.extend(column)
    return packed.tobytes()


def _merge_touching(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in intervals:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _subtract(
    intervals: list[tuple[int, int]], closures: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Remove sorted, disjoint ``closures`` from sorted ``intervals``."""
    out: list[tuple[int, int]] = []
    starts = [c[0] for c in closures]
    for a, b in intervals:
        k = max(bisect_right(starts, a) - 1, 0)
        cur = a
        while k < len(closures) and closures[k][0] < b:
            ca, cb = closures[k]
            if cb > cur:
                if ca > cur:
                    out.append((cur, ca))
                cur = max(cur, cb)
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is present in the dev env
        raise ImportError(
            "the batch API (add_many, elapsed_many) needs numpy: pip install numpy"
        ) from exc
    return numpy


def _us_array(values: Any, field: str) -> Any:
    np = _numpy()
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind == "M":
        return arr.astype("datetime64[us]").view(np.int64)
    if kind == "m":
        return arr.astype("timedelta64[us]").view(np.int64)
    if kind in "iu":
        return arr.astype(np.int64, copy=False)
    raise TypeError(
        f"{field} must be int64 epoch microseconds or datetime64/timedelta64, got {arr.dtype}"
    )


def _np_cum_at(t: Any, arrays: tuple[Any, ...]) -> Any:
    """Open time before each covered instant, counted from the table's first interval."""
    bounds, bcum, slope, search = arrays[4:8]
    k = search(t) - 1
    return bcum[k] + slope[k] * (t - bounds[k])


# -- parsing -----------------------------------------------------------------------------


def _parse(config: Mapping[str, Any]) -> _Spec:
    for key in config:
        if key not in _KEYS:
            raise ConfigError(
                f"unknown calendar key {key!r}; expected one of {', '.join(sorted(_KEYS))}",
                field=str(key),
                value=config[key],
            )
    if "timezone" not in config:
        raise ConfigError(
            "calendar config needs a 'timezone' (an IANA zone name)", field="timezone"
        )
    tz = _parse_tz(config["timezone"])
    weekly = _parse_weekly(config.get("hours", {}))
    holidays = _parse_holidays(config.get("holidays", []))
    closed_dates, rrules = _parse_closed(config.get("closed", []))
    closed_periods = _parse_closed_periods(config.get("closed_periods", []), tz)
    open_days = _parse_open(config.get("open", []))
    horizon = config.get("horizon_years", 10)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 100:
        raise ConfigError(
            f"horizon_years must be a whole number from 1 to 100, got {horizon!r}",
            field="horizon_years",
            value=horizon,
        )
    _check_overlaps(weekly, open_days)
    return _Spec(tz, weekly, holidays, closed_dates, rrules, closed_periods, open_days, horizon)


def _parse_tz(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str) or not value:
        raise UnknownTimezoneError(
            f"timezone must be an IANA zone name, got {value!r}", field="timezone", value=value
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimezoneError(
            f"unknown timezone {value!r} (expected an IANA name such as 'America/New_York')",
            field="timezone",
            value=value,
        ) from None


def _parse_range(text: object, field: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes after midnight; the end exceeds 1440 for an overnight shift."""
    if not isinstance(text, str):
        raise InvalidHoursError(
            f"{field}: expected 'HH:MM-HH:MM', got {text!r}", field=field, value=text
        )
    m = _RANGE_RE.fullmatch(text.strip())
    if m is None:
        raise InvalidHoursError(
            f"{field}: {text!r} is not 'HH:MM-HH:MM' (e.g. '09:00-17:00')", field=field, value=text
        )
    sh, sm, eh, em = (int(g) for g in m.groups())
    if sh > 23 or sm > 59:
        raise InvalidHoursError(
            f"{field}: start of {text!r} must be 00:00..23:59", field=field, value=text
        )
    if em > 59 or eh > 24 or (eh == 24 and em != 0):
        raise InvalidHoursError(
            f"{field}: end of {text!r} must be 00:00..24:00", field=field, value=text
        )
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise InvalidHoursError(
            f"{field}: {text!r} is empty (start equals end)", field=field, value=text
        )
    if end < start:
        end += _MINUTES_PER_DAY  # an overnight shift that ends the next day
    return start, end


def _parse_day(values: object, field: str) -> _DaySpec:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise InvalidHoursError(
            f"{field} must be a list of 'HH:MM-HH:MM' strings, got {values!r}",
            field=field,
            value=values,
        )
    out = []
    for text in values:
        s, e = _parse_range(text, field)
        out.append((s, e, str(text).strip()))
    return tuple(sorted(out))


def _parse_weekly(hours: object) -> tuple[_DaySpec, ...]:
    if not isinstance(hours, Mapping):
        raise ConfigError(
            f"hours must be a table of weekday -> ranges, got {hours!r}", field="hours", value=hours
        )
    for key in hours:
        if key not in _DAYS:
            raise ConfigError(
                f"unknown weekday {key!r} in hours; expected one of {', '.join(_DAYS)}",
                field=f"hours.{key}",
                value=key,
            )
    return tuple(_parse_day(hours.get(day, []), f"hours.{day}") for day in _DAYS)


def _parse_holidays(value: object) -> tuple[dict[str, Any], ...]:
    import holidays as pyholidays

    items: list[object]
    if isinstance(value, (str, Mapping)):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(
            f"holidays must be a country code, a table or a list of them, got {value!r}",
            field="holidays",
            value=value,
        )
    out: list[dict[str, Any]] = []
    for item in items:
        spec: dict[str, Any]
        if isinstance(item, str):
            spec = {"country": item}
        elif isinstance(item, Mapping):
            spec = dict(item)
        else:
            raise ConfigError(
                f"holidays entry must be a country code or a table, got {item!r}",
                field="holidays",
                value=item,
            )
        for key in spec:
            if key not in _HOLIDAY_KEYS:
                raise ConfigError(
                    f"unknown holidays key {key!r}; expected one of "
                    f"{', '.join(sorted(_HOLIDAY_KEYS))}",
                    field=f"holidays.{key}",
                    value=spec[key],
                )
        country = spec.get("country")
        if not isinstance(country, str):
            raise ConfigError(
                f"holidays entry needs a 'country' code, got {item!r}",
                field="holidays.country",
                value=country,
            )
        categories = spec.get("categories")
        if isinstance(categories, str):
            categories = (categories,)
        if categories is not None:
            if not isinstance(categories, list | tuple) or not all(
                isinstance(c, str) for c in categories
            ):
                raise ConfigError(
                    f"holidays for {country!r}: categories must be a name or a list of "
                    f"names, got {categories!r}",
                    field="holidays.categories",
                    value=categories,
                )
            categories = tuple(categories)
            spec["categories"] = categories
        observed = spec.get("observed", True)
        if not isinstance(observed, bool):
            raise ConfigError(
                f"holidays.observed must be true or false, got {observed!r}",
                field="holidays.observed",
                value=observed,
            )
        subdiv = spec.get("subdiv")
        try:
            pyholidays.country_holidays(
                country, subdiv=subdiv, categories=categories, observed=observed
            )
        except NotImplementedError:
            what = f"{country!r} with subdivision {subdiv!r}" if subdiv else repr(country)
            raise UnknownHolidayCountryError(
                f"python-holidays does not know the country {what}",
                field="holidays.subdiv" if subdiv else "holidays.country",
                value=subdiv if subdiv else country,
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"holidays for {country!r}: unsupported categories {categories!r} ({exc})",
                field="holidays.categories",
                value=categories,
            ) from None
        out.append(spec)
    return tuple(out)


def _as_list(value: object, field: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{field} must be a list, got {value!r}", field=field, value=value)


def _parse_closed(value: object) -> tuple[frozenset[date], tuple[Any, ...]]:
    from dateutil.rrule import rrulestr

    dates: set[date] = set()
    rules: list[Any] = []
    for item in _as_list(value, "closed"):
        if isinstance(item, datetime):
            dates.add(item.date())
            continue
        if isinstance(item, date):
            dates.add(item)
            continue
        if not isinstance(item, str):
            raise InvalidRRuleError(
                f"closed entry {item!r} is neither an ISO date nor an RRULE",
                field="closed",
                value=item,
            )
        text = item.strip()
        if text.upper().startswith(("RRULE:", "DTSTART")):
            try:
                rule = rrulestr(text, dtstart=_RRULE_ANCHOR, cache=True)
                # Probe once: a DTSTART with a zone makes the rule aware, which
                # the naive date arithmetic here cannot use.
                rule.after(datetime(1, 1, 1), inc=True)
            except (ValueError, TypeError, AttributeError) as exc:
                raise InvalidRRuleError(
                    f"closed entry {item!r} is not a valid RFC 5545 RRULE ({exc})",
                    field="closed",
                    value=item,
                ) from None
            rules.append(rule)
            continue
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            raise InvalidRRuleError(
                f"closed entry {item!r} is neither an ISO date (YYYY-MM-DD) nor an RRULE "
                "('RRULE:FREQ=...')",
                field="closed",
                value=item,
            ) from None
    return frozenset(dates), tuple(rules)


def _parse_instant(value: object, tz: ZoneInfo, field: str) -> tuple[datetime, int]:
    """The datetime as given (naive means local wall time) and its epoch microseconds."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{field}: {value!r} is not an ISO date-time", field=field, value=value
            ) from None
    else:
        raise ConfigError(
            f"{field}: expected an ISO date-time, got {value!r}", field=field, value=value
        )
    if dt.tzinfo is None:
        return dt, _wall_us(dt, tz)
    return dt, (dt - _EPOCH) // _US


def _parse_closed_periods(value: object, tz: ZoneInfo) -> tuple[tuple[int, int], ...]:
    periods: list[tuple[int, int]] = []
    for item in _as_list(value, "closed_periods"):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(
                f"closed_periods entry must be [start, end], got {item!r}",
                field="closed_periods",
                value=item,
            )
        start, a = _parse_instant(item[0], tz, "closed_periods")
        end, b = _parse_instant(item[1], tz, "closed_periods")
        naive = start.tzinfo is None and end.tzinfo is None
        if (end <= start) if naive else (b <= a):
            raise ConfigError(
                f"closed_periods entry {item!r} ends before it starts",
                field="closed_periods",
                value=item,
            )
        if b > a:  # a period inside one spring-forward gap closes nothing
            periods.append((a, b))
    periods.sort()
    merged: list[tuple[int, int]] = []
    for a, b in periods:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def _parse_open(value: object) -> dict[date, _DaySpec]:
    out: dict[date, _DaySpec] = {}
    for item in _as_list(value, "open"):
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"open entry must be a table {{date = 'YYYY-MM-DD', hours = ['HH:MM-HH:MM']}}, "
                f"got {item!r}",
                field="open",
                value=item,
            )
        for key in item:
            if key not in _OPEN_KEYS:
                raise ConfigError(
                    f"unknown open key {key!r}; expected date and hours",
                    field=f"open.{key}",
                    value=item[key],
                )
        if "date" not in item or "hours" not in item:
            raise ConfigError(
                f"open entry {item!r} needs both 'date' and 'hours'", field="open", value=item
            )
        raw = item["date"]
        day: date
        if isinstance(raw, datetime):
            day = raw.date()
        elif isinstance(raw, date):
            day = raw
        else:
            try:
                day = date.fromisoformat(str(raw).strip())
            except ValueError:
                raise ConfigError(
                    f"open.date {raw!r} is not an ISO date", field="open.date", value=raw
                ) from None
        if day in out:
            raise ConfigError(
                f"open lists {day.isoformat()} twice", field="open.date", value=day.isoformat()
            )
        out[day] = _parse_day(item["hours"], f"open[{day.isoformat()}].hours")
    return out


def _check_overlaps(weekly: tuple[_DaySpec, ...], open_days: Mapping[date, _DaySpec]) -> None:
    """Reject overlapping intervals, including an overnight spill into the next day."""
    items: list[tuple[int, int, str]] = []
    week = 7 * _MINUTES_PER_DAY
    for k, day in enumerate(weekly):
        for s, e, text in day:
            base = k * _MINUTES_PER_DAY
            items.append((base + s, base + e, f"{_DAYS[k]} {text}"))
    # A second copy one week later catches Sunday's overnight shift running into Monday.
    _first_overlap(items + [(a + week, b + week, label) for a, b, label in items])
    for d in open_days:
        near: list[tuple[int, int, str]] = []
        for offset in (-1, 0, 1):
            other = d + timedelta(days=offset)
            spec = open_days.get(other)
            labels = other.isoformat() if spec is not None else _DAYS[other.weekday()]
            if spec is None:
                spec = weekly[other.weekday()]
            base = (offset + 1) * _MINUTES_PER_DAY
            near.extend((base + s, base + e, f"{labels} {text}") for s, e, text in spec)
        _first_overlap(near)


def _first_overlap(items: Iterable[tuple[int, int, str]]) -> None:
    ordered = sorted(items)
    for (_, b1, l1), (a2, _, l2) in pairwise(ordered):
        if a2 < b1:
            raise OverlappingIntervalsError(
                f"opening interval {l1!r} overlaps {l2!r}", field="hours", value=(l1, l2)
            )
