"""A slow, obviously correct model of a business calendar, for comparison in tests.

It shares no code with :mod:`slakit.calendar`. It walks a window minute by
minute in UTC, reads the local wall clock of each minute with :mod:`zoneinfo`,
and keeps the highest wall-clock reading seen so far. A boundary ``T`` has been
reached once that reading is ``>= T``, which is the definition of "the first
instant at which the wall clock reads ``T`` or later". So a minute is open
exactly when the highest reading so far lies inside an opening interval
(written in wall time) and outside every closed period.

Every boundary and every transition of the zones used here falls on a whole
minute, so the open/closed state is constant within each minute and the model
is exact to the microsecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays as pyholidays
from dateutil.rrule import rrulestr

MINUTE_US = 60_000_000
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(t: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return (t - EPOCH) // timedelta(microseconds=1)


def wall_minutes(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` as minutes after midnight; an end before the start is the next day."""
    start_txt, end_txt = text.split("-")
    sh, sm = (int(x) for x in start_txt.split(":"))
    eh, em = (int(x) for x in end_txt.split(":"))
    start, end = sh * 60 + sm, eh * 60 + em
    if end < start:
        end += 24 * 60
    return start, end


class Oracle:
    """Open/closed state of a calendar config for every UTC minute of a window.

    Answers are trusted only in ``[valid_from, valid_until)``: before that the
    running maximum of the wall clock has not yet caught up with history.

    :param config: a calendar config mapping (naive ``closed_periods`` only).
    :param start: first instant of the window (aware).
    :param end: end of the window (aware).
    """

    def __init__(self, config: Mapping[str, Any], start: datetime, end: datetime) -> None:
        self.tz = ZoneInfo(config["timezone"])
        first = to_us(start) // MINUTE_US
        last = to_us(end) // MINUTE_US
        self.first_minute = first
        self.valid_from = (first + 24 * 60) * MINUTE_US
        self.valid_until = last * MINUTE_US
        day_lo = (start - timedelta(days=3)).date()
        day_hi = (end + timedelta(days=3)).date()
        closed_days = self._closed_days(config, day_lo, day_hi)
        open_days = {
            date.fromisoformat(str(o["date"])): list(o["hours"]) for o in config.get("open", [])
        }
        hours = config.get("hours", {})
        # Opening intervals as (wall start, wall end) naive datetimes.
        self.wall_intervals: list[tuple[datetime, datetime]] = []
        d = day_lo
        while d <= day_hi:
            if d in open_days:
                texts = open_days[d]
            elif d in closed_days:
                texts = []
            else:
                texts = list(hours.get(DAYS[d.weekday()], []))
            midnight = datetime(d.year, d.month, d.day)
            for text in texts:
                s, e = wall_minutes(text)
                self.wall_intervals.append(
                    (midnight + timedelta(minutes=s), midnight + timedelta(minutes=e))
                )
            d += timedelta(days=1)
        self.wall_closures = [
            (datetime.fromisoformat(a), datetime.fromisoformat(b))
            for a, b in config.get("closed_periods", [])
        ]
        self.open: list[bool] = []
        highest = datetime.min
        for minute in range(first, last):
            wall = datetime.fromtimestamp(minute * 60, self.tz).replace(tzinfo=None)
            highest = max(highest, wall)
            inside = any(a <= highest < b for a, b in self.wall_intervals)
            closed = any(a <= highest < b for a, b in self.wall_closures)
            self.open.append(inside and not closed)

    @staticmethod
    def _closed_days(config: Mapping[str, Any], lo: date, hi: date) -> set[date]:
        days: set[date] = set()
        spec = config.get("holidays", [])
        specs = [spec] if isinstance(spec, (str, Mapping)) else list(spec)
        for h in specs:
            h = {"country": h} if isinstance(h, str) else dict(h)
            table = pyholidays.country_holidays(
                h["country"],
                subdiv=h.get("subdiv"),
                years=range(lo.year, hi.year + 1),
                observed=h.get("observed", True),
                categories=h.get("categories"),
            )
            days.update(table)
        for item in config.get("closed", []):
            if str(item).startswith(("RRULE:", "DTSTART")):
                rule = rrulestr(item, dtstart=datetime(1970, 1, 1))
                for occ in rule.between(
                    datetime.combine(lo, datetime.min.time()),
                    datetime.combine(hi, datetime.min.time()),
                    inc=True,
                ):
                    days.add(occ.date())
            else:
                days.add(date.fromisoformat(str(item)))
        return days

    # -- stepping -----------------------------------------------------------------

    def _open_at_minute(self, minute: int) -> bool:
        return self.open[minute - self.first_minute]

    def is_open(self, t_us: int) -> bool:
        """Whether the minute holding ``t_us`` is open."""
        assert self.valid_from <= t_us < self.valid_until
        return self._open_at_minute(t_us // MINUTE_US)

    def elapsed(self, s_us: int, e_us: int) -> int:
        """Open microseconds in ``[s, e)``, minute by minute; negative when ``e < s``."""
        if e_us < s_us:
            return -self.elapsed(e_us, s_us)
        assert self.valid_from <= s_us
        assert e_us <= self.valid_until
        total = 0
        pos = s_us
        while pos < e_us:
            minute = pos // MINUTE_US
            stop = min((minute + 1) * MINUTE_US, e_us)
            if self._open_at_minute(minute):
                total += stop - pos
            pos = stop
        return total

    def add(self, s_us: int, d_us: int) -> int | None:
        """Step minute by minute spending ``d``; ``None`` when the window runs out first."""
        if d_us == 0:
            return s_us
        remaining = abs(d_us)
        pos = s_us
        if d_us > 0:
            while pos < self.valid_until:
                minute = pos // MINUTE_US
                minute_end = (minute + 1) * MINUTE_US
                if self._open_at_minute(minute):
                    if minute_end - pos >= remaining:
                        return pos + remaining
                    remaining -= minute_end - pos
                pos = minute_end
            return None
        while pos > self.valid_from:
            minute = (pos - 1) // MINUTE_US
            minute_start = minute * MINUTE_US
            if self._open_at_minute(minute):
                if pos - minute_start >= remaining:
                    return pos - remaining
                remaining -= pos - minute_start
            pos = minute_start
        return None

    def next_open(self, t_us: int) -> int | None:
        """``t`` if open, else the start of the next open minute; ``None`` past the window."""
        pos = t_us
        while pos < self.valid_until:
            minute = pos // MINUTE_US
            if self._open_at_minute(minute):
                return pos
            pos = (minute + 1) * MINUTE_US
        return None

    def boundaries(self) -> list[int]:
        """Instants in the valid range where the state changes (openings and closings)."""
        out = []
        for i in range(1, len(self.open)):
            us = (self.first_minute + i) * MINUTE_US
            if self.open[i] != self.open[i - 1] and self.valid_from <= us < self.valid_until:
                out.append(us)
        return out
