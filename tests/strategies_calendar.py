"""Hypothesis strategies for calendar tests: random configs, DST-heavy instants, deltas."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from calendar_oracle import EPOCH, MINUTE_US, Oracle, to_us

ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "America/Santiago",
    "Australia/Lord_Howe",
    "UTC",
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK = 7 * 1440
# Local minutes where the sampled zones change their clocks, over-sampled as boundaries.
DST_MINUTES = (0, 30, 60, 90, 105, 120, 135, 150, 180, 210, 1380, 1410)
HOLIDAYS = (
    "US",
    {"country": "US", "subdiv": "NY"},
    {"country": "GB"},
    {"country": "AU", "subdiv": "NSW"},
    {"country": "CL"},
)


@functools.cache
def transitions(zone: str, first_year: int = 2024, last_year: int = 2027) -> tuple[datetime, ...]:
    """UTC instants (exact to the second) where ``zone`` changes its offset."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(first_year, 1, 1, tzinfo=UTC)
    stop = datetime(last_year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(days=1)
    while t < stop:
        nxt = t + step
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        t = nxt
    return tuple(out)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def weekly_hours(draw: st.DrawFn) -> dict[str, list[str]]:
    """Non-overlapping weekly hours with breaks, touching intervals and overnight shifts."""
    minute_of_day = st.one_of(
        st.sampled_from(DST_MINUTES), st.integers(0, 287).map(lambda k: k * 5)
    )
    point = st.builds(lambda day, m: day * 1440 + m, st.integers(0, 6), minute_of_day)
    points = sorted(draw(st.lists(point, min_size=2, max_size=14)))
    if len(points) % 2:
        points.pop()
    pairs = list(zip(points[::2], points[1::2], strict=True))
    if draw(st.booleans()) and len(points) >= 4:
        # Pair the other way round so that the last interval wraps from Sunday to Monday.
        shifted = [*points[1:], points[0] + WEEK]
        pairs = list(zip(shifted[::2], shifted[1::2], strict=True))
    hours: dict[str, list[str]] = {}
    for a, b in pairs:
        length = b - a
        start = a % 1440
        if length <= 0 or length > 1440 or (length == 1440 and start != 0):
            continue
        end = start + length
        if end <= 1440:
            text = f"{_hhmm(start)}-{_hhmm(end)}"
        else:
            text = f"{_hhmm(start)}-{_hhmm(end - 1440)}"
        hours.setdefault(DAYS[(a // 1440) % 7], []).append(text)
    if not hours:
        hours["wed"] = ["09:00-17:00"]
    return hours


@st.composite
def calendar_configs(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """A random calendar config and a centre instant near which it is tested."""
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    near = transitions(zone)
    if near and draw(st.integers(0, 3)) > 0:
        centre = draw(st.sampled_from(near)) + timedelta(
            minutes=draw(st.integers(-36 * 60, 36 * 60))
        )
    else:
        centre = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
            minutes=draw(st.integers(0, 4 * 365 * 1440))
        )
    local_day = centre.astimezone(tz).date()
    config: dict[str, Any] = {"timezone": zone, "hours": draw(weekly_hours())}
    if draw(st.booleans()):
        config["holidays"] = draw(st.sampled_from(HOLIDAYS))
    closed = [
        (local_day + timedelta(days=k)).isoformat()
        for k in draw(st.lists(st.integers(-3, 3), max_size=2, unique=True))
    ]
    if len(config["hours"]) > 1 and draw(st.integers(0, 4)) == 0:
        # Only with hours on several weekdays, so that a weekly closure leaves some open.
        byday = draw(st.sampled_from(["MO", "WE", "SA"]))
        # A DTSTART near the window keeps dateutil from iterating from its 1970 anchor.
        closed.append(f"DTSTART:20230102\nRRULE:FREQ=WEEKLY;BYDAY={byday}")
    if closed:
        config["closed"] = closed
    periods = []
    for _ in range(draw(st.integers(0, 2))):
        base = datetime.combine(local_day, datetime.min.time())
        a = base + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
        b = a + timedelta(minutes=draw(st.integers(1, 30 * 60)))
        periods.append([a.isoformat(), b.isoformat()])
    if periods:
        config["closed_periods"] = periods
    if draw(st.integers(0, 3)) == 0:
        day = local_day + timedelta(days=draw(st.integers(-2, 2)))
        start = draw(st.sampled_from((*DST_MINUTES, 540, 600)))
        length = draw(st.integers(1, 16)) * 30
        end = start + length
        text = f"{_hhmm(start)}-{_hhmm(end if end <= 1440 else end - 1440)}"
        config["open"] = [{"date": day.isoformat(), "hours": [text]}]
    return config, centre


def instants(oracle: Oracle) -> st.SearchStrategy[int]:
    """Epoch microseconds in the oracle's valid range; boundaries and DST over-sampled."""
    lo, hi = oracle.valid_from, oracle.valid_until - 1
    specials = list(oracle.boundaries())
    zone_changes = [to_us(t) for t in transitions(oracle.tz.key) if lo <= to_us(t) <= hi]
    specials += zone_changes
    uniform = st.integers(lo, hi)
    if not specials:
        return uniform
    nudge = st.sampled_from([0, 0, 1, -1, MINUTE_US, -MINUTE_US, 30 * MINUTE_US])
    special = st.builds(lambda b, n: min(max(b + n, lo), hi), st.sampled_from(specials), nudge)
    return st.one_of(uniform, special)


def deltas(max_minutes: int = 48 * 60) -> st.SearchStrategy[int]:
    """Durations in microseconds, either whole minutes or arbitrary, of either sign."""
    whole = st.integers(-max_minutes, max_minutes).map(lambda m: m * MINUTE_US)
    exact = st.integers(-max_minutes * MINUTE_US, max_minutes * MINUTE_US)
    return st.one_of(whole, exact, st.just(0))


def as_datetime(us: int, zone: str = "UTC") -> datetime:
    """An aware datetime for epoch microseconds, expressed in ``zone``."""
    return (EPOCH + timedelta(microseconds=us)).astimezone(ZoneInfo(zone))
