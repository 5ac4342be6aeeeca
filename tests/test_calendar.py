"""Tests of slakit.calendar: conventions, DST, bad input, the lazy table, the batch API.

Every test here runs twice: with the compiled fast path (``slakit._ccal``) and
with pure Python; see the ``implementation`` fixture.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calendar_impl import accelerated_or_skip, pure_python
from calendar_oracle import Oracle, to_us
from slakit.calendar import BusinessCalendar, resolve_wall_time
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
from strategies_calendar import as_datetime, calendar_configs, deltas, instants

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
ROOT = Path(__file__).resolve().parent.parent

# Enough examples to find DST and boundary slips, few enough for CI (about 40 s in all).
ORACLE_SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module", params=["ccal", "pure"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run each test with the compiled fast path (skipped if not built, failed under CI)
    and with pure Python."""
    if request.param == "pure":
        with pure_python():
            yield "pure"
    else:
        accelerated_or_skip()
        yield "ccal"


def nine_to_five(**extra: Any) -> BusinessCalendar:
    """Mon-Fri 09:00-17:00 in New York, plus ``extra`` config keys."""
    return BusinessCalendar.from_config(
        {
            "timezone": "America/New_York",
            "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            **extra,
        }
    )


def build(config: dict[str, Any]) -> BusinessCalendar:
    """Build a random calendar, dropping an ``open`` override that overlaps its neighbours."""
    try:
        return BusinessCalendar.from_config(config)
    except OverlappingIntervalsError:
        config.pop("open")
        return BusinessCalendar.from_config(config)


def utc_us(t: datetime) -> int:
    return to_us(t)


class TestAgainstOracle:
    """The table-based calendar agrees with the minute-stepping oracle."""

    @ORACLE_SETTINGS
    @given(data=st.data())
    def test_queries_match_the_oracle(self, data: st.DataObject) -> None:
        """is_open, next_open, elapsed and add agree with the oracle on random calendars."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        oracle = Oracle(config, centre - timedelta(days=2), centre + timedelta(days=2))
        points = instants(oracle)
        zone = data.draw(st.sampled_from(["UTC", config["timezone"], "Asia/Kolkata"]))
        for _ in range(4):
            t = data.draw(points)
            dt = as_datetime(t, zone)
            assert cal.is_open(dt) == oracle.is_open(t)

            nxt = oracle.next_open(t)
            got = utc_us(cal.next_open(dt))
            if nxt is None:
                assert got >= oracle.valid_until
            else:
                assert got == nxt

            u = data.draw(points)
            assert utc_us_td(cal.elapsed(dt, as_datetime(u, zone))) == oracle.elapsed(t, u)

            d = data.draw(deltas())
            expected = oracle.add(t, d)
            got = utc_us(cal.add(dt, timedelta(microseconds=d)))
            if expected is None and d > 0:
                assert got > oracle.valid_until
            elif expected is None:
                assert got < oracle.valid_from
            else:
                assert got == expected


def utc_us_td(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


class TestProperties:
    """Algebraic properties of add and elapsed on random calendars."""

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def test_add_then_elapsed_round_trips(self, data: st.DataObject) -> None:
        """elapsed(s, add(s, d)) == d, and elapsed(add(s, -d), s) == d."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        s = centre + timedelta(microseconds=data.draw(st.integers(-(10**11), 10**11)))
        d = timedelta(microseconds=abs(data.draw(deltas(max_minutes=200 * 60))))
        assert cal.elapsed(s, cal.add(s, d)) == d
        assert cal.elapsed(cal.add(s, -d), s) == d

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def test_add_is_monotonic_in_start_and_delta(self, data: st.DataObject) -> None:
        """s1 <= s2 implies add(s1, d) <= add(s2, d); d1 <= d2 implies add(s, d1) <= add(s, d2)."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        offsets = sorted(
            data.draw(st.lists(st.integers(-(10**11), 10**11), min_size=2, max_size=2))
        )
        s1, s2 = (centre + timedelta(microseconds=o) for o in offsets)
        d = timedelta(microseconds=data.draw(deltas()))
        # Compared as UTC instants: Python compares two datetimes that share a tzinfo by
        # wall time, ignoring fold, which misorders the repeated hour.
        assert to_us(cal.add(s1, d)) <= to_us(cal.add(s2, d))
        d1, d2 = sorted(timedelta(microseconds=data.draw(deltas())) for _ in range(2))
        assert to_us(cal.add(s1, d1)) <= to_us(cal.add(s1, d2))

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def test_elapsed_is_additive_over_a_split_point(self, data: st.DataObject) -> None:
        """elapsed(a, c) == elapsed(a, b) + elapsed(b, c) for any a, b, c."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        a, b, c = (
            centre + timedelta(microseconds=data.draw(st.integers(-(10**12), 10**12)))
            for _ in range(3)
        )
        assert cal.elapsed(a, c) == cal.elapsed(a, b) + cal.elapsed(b, c)
        assert cal.elapsed(a, b) == -cal.elapsed(b, a)

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def test_next_open_is_open_and_nothing_open_before_it(self, data: st.DataObject) -> None:
        """next_open(t) is open and no open time lies in [t, next_open(t))."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        t = centre + timedelta(microseconds=data.draw(st.integers(-(10**11), 10**11)))
        n = cal.next_open(t)
        assert to_us(n) >= to_us(t)
        assert cal.is_open(n)
        assert cal.elapsed(t, n) == timedelta(0)


class TestConventions:
    """The conventions documented in docs/calendar.md."""

    def test_landing_on_closing_time_returns_closing_time(self) -> None:
        """Adding exactly the rest of the day lands on 17:00, not the next morning."""
        cal = nine_to_five()
        start = datetime(2026, 3, 2, 9, tzinfo=NY)
        assert cal.add(start, 8 * H) == datetime(2026, 3, 2, 17, tzinfo=NY)
        assert cal.add(start, 8 * H + timedelta(microseconds=1)) == datetime(
            2026, 3, 3, 9, 0, 0, 1, tzinfo=NY
        )

    def test_starting_outside_hours_starts_at_next_opening(self) -> None:
        """A start on Saturday evening counts from Monday 09:00."""
        cal = nine_to_five()
        start = datetime(2026, 3, 7, 20, tzinfo=NY)
        assert cal.add(start, 30 * MIN) == datetime(2026, 3, 9, 9, 30, tzinfo=NY)

    def test_adding_zero_returns_start_even_when_closed(self) -> None:
        """add(s, 0) is s itself, open or closed, in the calendar's zone."""
        cal = nine_to_five()
        for s in (
            datetime(2026, 3, 7, 20, tzinfo=NY),
            datetime(2026, 3, 2, 10, 0, 0, 17, tzinfo=UTC),
        ):
            got = cal.add(s, timedelta(0))
            assert got == s
            assert got.tzinfo is NY

    def test_intervals_are_half_open(self) -> None:
        """Open at the opening instant, closed at the closing instant."""
        cal = nine_to_five()
        assert cal.is_open(datetime(2026, 3, 2, 9, tzinfo=NY))
        assert not cal.is_open(datetime(2026, 3, 2, 17, tzinfo=NY))
        assert cal.is_open(datetime(2026, 3, 2, 16, 59, 59, 999999, tzinfo=NY))
        assert not cal.is_open(datetime(2026, 3, 2, 8, 59, 59, 999999, tzinfo=NY))

    def test_negative_delta_goes_backwards(self) -> None:
        """add(s, -d) is the latest instant x <= s with d of open time in [x, s)."""
        cal = nine_to_five()
        monday_10 = datetime(2026, 3, 9, 10, tzinfo=NY)
        assert cal.add(monday_10, -2 * H) == datetime(2026, 3, 6, 16, tzinfo=NY)
        # Landing exactly on an opening returns the opening, not the previous close.
        assert cal.add(monday_10, -H) == datetime(2026, 3, 9, 9, tzinfo=NY)

    def test_elapsed_is_negative_when_end_precedes_start(self) -> None:
        """elapsed(b, a) == -elapsed(a, b)."""
        cal = nine_to_five()
        a = datetime(2026, 3, 2, 8, tzinfo=NY)
        b = datetime(2026, 3, 3, 12, tzinfo=NY)
        assert cal.elapsed(a, b) == 11 * H
        assert cal.elapsed(b, a) == -11 * H

    def test_results_are_in_the_calendar_zone_whatever_the_input_zone(self) -> None:
        """Inputs may be in any zone; results come back in the calendar's zone."""
        cal = nine_to_five()
        start = datetime(2026, 3, 2, 14, tzinfo=UTC)  # 09:00 in New York
        got = cal.add(start, H)
        assert got.tzinfo is NY
        assert got == datetime(2026, 3, 2, 10, tzinfo=NY)

    def test_next_open_returns_t_when_open(self) -> None:
        """next_open(t) is t when open, otherwise the next opening."""
        cal = nine_to_five()
        t = datetime(2026, 3, 2, 15, 15, 1, 7, tzinfo=UTC)  # 10:15 in New York
        assert cal.next_open(t) == t
        assert cal.next_open(datetime(2026, 3, 2, 17, tzinfo=NY)) == datetime(
            2026, 3, 3, 9, tzinfo=NY
        )

    def test_open_intervals_are_clipped_and_merged(self) -> None:
        """open_intervals clips to the window and joins touching intervals."""
        cal = BusinessCalendar.from_config(
            {"timezone": "UTC", "hours": {"mon": ["09:00-12:00", "12:00-13:00", "14:00-18:00"]}}
        )
        got = cal.open_intervals(
            datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 2, 15, tzinfo=UTC)
        )
        assert got == [
            (datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 2, 13, tzinfo=UTC)),
            (datetime(2026, 3, 2, 14, tzinfo=UTC), datetime(2026, 3, 2, 15, tzinfo=UTC)),
        ]
        assert (
            cal.open_intervals(
                datetime(2026, 3, 2, 15, tzinfo=UTC), datetime(2026, 3, 2, 15, tzinfo=UTC)
            )
            == []
        )


class TestOvernight:
    """Overnight shifts end the next day and belong to the day they start on."""

    def test_overnight_shift_ends_next_day(self) -> None:
        """'22:00-06:00' on Monday is open until Tuesday 06:00."""
        cal = BusinessCalendar.from_config({"timezone": "UTC", "hours": {"mon": ["22:00-06:00"]}})
        assert cal.is_open(datetime(2026, 3, 3, 5, 59, tzinfo=UTC))
        assert not cal.is_open(datetime(2026, 3, 3, 6, tzinfo=UTC))
        assert cal.add(datetime(2026, 3, 2, 23, tzinfo=UTC), 7 * H) == datetime(
            2026, 3, 3, 6, tzinfo=UTC
        )

    def test_sunday_overnight_runs_into_monday(self) -> None:
        """Sunday's overnight shift wraps into Monday of the next week."""
        cal = BusinessCalendar.from_config({"timezone": "UTC", "hours": {"sun": ["20:00-02:00"]}})
        assert cal.is_open(datetime(2026, 3, 9, 1, tzinfo=UTC))  # a Monday

    def test_holiday_removes_the_overnight_shift_starting_on_it(self) -> None:
        """A holiday on Monday removes Monday's 22:00-06:00, but not Sunday's spill into it."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "UTC",
                "hours": {"sun": ["22:00-06:00"], "mon": ["22:00-06:00"]},
                "closed": ["2026-03-02"],
            }
        )
        assert cal.is_open(datetime(2026, 3, 2, 3, tzinfo=UTC))  # Sunday's shift
        assert not cal.is_open(datetime(2026, 3, 2, 23, tzinfo=UTC))
        assert not cal.is_open(datetime(2026, 3, 3, 3, tzinfo=UTC))

    def test_touching_overnight_and_morning_merge(self) -> None:
        """'18:00-00:00' then '00:00-06:00' the next day is one stretch of open time."""
        cal = BusinessCalendar.from_config(
            {"timezone": "UTC", "hours": {"mon": ["18:00-00:00"], "tue": ["00:00-06:00"]}}
        )
        got = cal.open_intervals(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
        assert got == [(datetime(2026, 3, 2, 18, tzinfo=UTC), datetime(2026, 3, 3, 6, tzinfo=UTC))]


class TestDST:
    """Boundaries follow the first wall-clock reading at or after them; time is real time."""

    def test_opening_inside_the_gap_opens_at_the_end_of_the_gap(self) -> None:
        """A 02:30 opening on the spring-forward night opens at 03:00."""
        cal = BusinessCalendar.from_config(
            {"timezone": "America/New_York", "hours": {"sun": ["02:30-05:00"]}}
        )
        got = cal.open_intervals(datetime(2026, 3, 8, tzinfo=NY), datetime(2026, 3, 9, tzinfo=NY))
        assert got == [(datetime(2026, 3, 8, 3, tzinfo=NY), datetime(2026, 3, 8, 5, tzinfo=NY))]
        assert (
            cal.elapsed(datetime(2026, 3, 8, tzinfo=NY), datetime(2026, 3, 9, tzinfo=NY)) == 2 * H
        )

    def test_interval_wholly_inside_the_gap_is_empty(self) -> None:
        """'02:10-02:50' on the spring-forward night has no open time."""
        cal = BusinessCalendar.from_config(
            {"timezone": "America/New_York", "hours": {"sun": ["02:10-02:50", "09:00-10:00"]}}
        )
        day = (datetime(2026, 3, 8, tzinfo=NY), datetime(2026, 3, 9, tzinfo=NY))
        assert cal.elapsed(*day) == H
        assert cal.elapsed(datetime(2026, 3, 1, tzinfo=NY), datetime(2026, 3, 2, tzinfo=NY)) == (
            H + 40 * MIN
        )

    def test_boundary_in_the_repeated_hour_is_its_first_occurrence(self) -> None:
        """A 01:30 opening on the fall-back night opens at 01:30 EDT (fold=0)."""
        cal = BusinessCalendar.from_config(
            {"timezone": "America/New_York", "hours": {"sun": ["01:30-03:00"]}}
        )
        ((start, end),) = cal.open_intervals(
            datetime(2026, 11, 1, tzinfo=NY), datetime(2026, 11, 2, tzinfo=NY)
        )
        assert start.utcoffset() == timedelta(hours=-4)
        # PEP 495: a time in the repeated hour never equals one in another zone; compare in UTC.
        assert start.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
        assert end.astimezone(UTC) == datetime(2026, 11, 1, 8, tzinfo=UTC)
        assert end.astimezone(UTC) - start.astimezone(UTC) == 2 * H + 30 * MIN

    def test_results_in_the_repeated_hour_carry_the_right_fold(self) -> None:
        """add lands in the second 01:30 with fold=1."""
        cal = BusinessCalendar.always_open("America/New_York")
        got = cal.add(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), H)  # 01:30 EDT + 1 h
        assert (got.hour, got.minute, got.fold) == (1, 30, 1)
        assert got.utcoffset() == timedelta(hours=-5)

    @pytest.mark.parametrize(
        ("zone", "day", "length"),
        [
            ("America/New_York", date(2026, 3, 8), 23 * H),
            ("America/New_York", date(2026, 11, 1), 25 * H),
            ("Europe/London", date(2026, 3, 29), 23 * H),
            ("Australia/Sydney", date(2026, 4, 5), 25 * H),
            ("Australia/Sydney", date(2026, 10, 4), 23 * H),
            ("Australia/Lord_Howe", date(2026, 10, 4), 23 * H + 30 * MIN),
            ("Australia/Lord_Howe", date(2026, 4, 5), 24 * H + 30 * MIN),
        ],
    )
    def test_a_whole_day_lasts_as_long_as_the_day(
        self, zone: str, day: date, length: timedelta
    ) -> None:
        """'00:00-24:00' is 23 h, 25 h (or 23.5 h / 24.5 h at Lord Howe) on transition days."""
        tz = ZoneInfo(zone)
        cal = BusinessCalendar.always_open(zone)
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        nxt = day + timedelta(days=1)
        assert cal.elapsed(start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)) == length

    def test_nine_to_five_is_eight_real_hours_on_transition_days(self) -> None:
        """A 09:00-17:00 day is 8 h on a DST day, and an overnight shift over the change is not."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "America/New_York",
                "hours": {"sun": ["09:00-17:00"], "sat": ["22:00-06:00"]},
            }
        )
        sunday = (datetime(2026, 3, 8, 7, tzinfo=NY), datetime(2026, 3, 8, 18, tzinfo=NY))
        assert cal.elapsed(*sunday) == 8 * H
        saturday_night = (datetime(2026, 3, 7, 12, tzinfo=NY), datetime(2026, 3, 8, 7, tzinfo=NY))
        assert cal.elapsed(*saturday_night) == 7 * H

    def test_santiago_midnight_gap(self) -> None:
        """Where midnight does not exist (Santiago), a 00:00 opening is at 01:00."""
        tz = ZoneInfo("America/Santiago")
        cal = BusinessCalendar.from_config(
            {"timezone": "America/Santiago", "hours": {"sun": ["00:00-02:00"]}}
        )
        ((start, end),) = cal.open_intervals(
            datetime(2026, 9, 5, 12, tzinfo=tz), datetime(2026, 9, 7, tzinfo=tz)
        )
        assert (start.hour, start.minute) == (1, 0)
        assert end - start == H

    def test_resolve_wall_time_follows_the_boundary_rule(self) -> None:
        """resolve_wall_time maps gap times to the gap's end and repeats to the first pass."""
        gap = resolve_wall_time(datetime(2026, 3, 8, 2, 30), NY)
        assert gap == datetime(2026, 3, 8, 3, tzinfo=NY)
        first = resolve_wall_time(datetime(2026, 11, 1, 1, 30), NY)
        assert (first.fold, first.utcoffset()) == (0, timedelta(hours=-4))
        lord_howe = resolve_wall_time(datetime(2026, 10, 4, 2, 15), LORD_HOWE)
        assert lord_howe == datetime(2026, 10, 4, 2, 30, tzinfo=LORD_HOWE)
        with pytest.raises(ValueError, match="naive"):
            resolve_wall_time(datetime(2026, 1, 1, tzinfo=UTC), NY)


class TestClosures:
    """Holidays, closed dates and RRULEs remove whole local days; closed_periods remove spans."""

    def test_holiday_is_the_whole_local_day_whatever_its_length(self) -> None:
        """A holiday on a 25-hour day removes all 25 hours of a 24/7 calendar."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "America/New_York",
                "hours": {d: ["00:00-24:00"] for d in ("sat", "sun", "mon")},
                "closed": ["2026-11-01"],
            }
        )
        assert (
            cal.elapsed(datetime(2026, 10, 31, tzinfo=NY), datetime(2026, 11, 3, tzinfo=NY))
            == 48 * H
        )

    def test_python_holidays_country(self) -> None:
        """US holidays close New Year's Day and Independence Day (observed)."""
        cal = nine_to_five(holidays={"country": "US"})
        assert not cal.is_open(datetime(2026, 1, 1, 10, tzinfo=NY))
        assert not cal.is_open(datetime(2026, 7, 3, 10, tzinfo=NY))  # 4 July is a Saturday
        assert cal.is_open(datetime(2026, 1, 2, 10, tzinfo=NY))

    def test_holidays_accept_lists_codes_subdivisions_and_far_years(self) -> None:
        """A list of country codes and tables works, in any year, past or future."""
        cal = nine_to_five(holidays=["GB", {"country": "US", "subdiv": "NY"}])
        assert not cal.is_open(datetime(2026, 12, 28, 10, tzinfo=NY))  # GB Boxing Day observed
        assert not cal.is_open(datetime(2026, 2, 12, 10, tzinfo=NY))  # Lincoln's Birthday (NY)
        assert not cal.is_open(datetime(2095, 12, 26, 10, tzinfo=NY))
        assert not cal.is_open(datetime(1995, 12, 25, 10, tzinfo=NY))

    def test_rrule_closes_every_occurrence(self) -> None:
        """RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31 closes every 31 December."""
        cal = nine_to_five(closed=["RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31", "2026-12-24"])
        for year in (2025, 2026, 2031):
            assert not cal.is_open(datetime(year, 12, 31, 10, tzinfo=NY))
        assert not cal.is_open(datetime(2026, 12, 24, 10, tzinfo=NY))
        assert cal.is_open(datetime(2026, 12, 23, 10, tzinfo=NY))

    def test_closed_periods_remove_part_of_a_day(self) -> None:
        """closed_periods in local time close 12:00-17:00 of one afternoon."""
        cal = nine_to_five(closed_periods=[["2026-07-02T12:00", "2026-07-02T17:00"]])
        assert (
            cal.elapsed(datetime(2026, 7, 2, tzinfo=NY), datetime(2026, 7, 3, tzinfo=NY)) == 3 * H
        )
        assert cal.add(datetime(2026, 7, 2, 11, tzinfo=NY), 2 * H) == datetime(
            2026, 7, 3, 10, tzinfo=NY
        )

    def test_closed_period_with_offset_is_absolute(self) -> None:
        """A closed period with a UTC offset is taken as absolute instants."""
        cal = nine_to_five(closed_periods=[["2026-07-02T16:00+00:00", "2026-07-02T18:00Z"]])
        assert not cal.is_open(datetime(2026, 7, 2, 12, 30, tzinfo=NY))
        assert cal.is_open(datetime(2026, 7, 2, 14, 0, tzinfo=NY))

    def test_open_day_overrides_weekly_hours_and_holidays(self) -> None:
        """An 'open' entry sets that date's hours, even on a Saturday or a holiday."""
        cal = nine_to_five(
            holidays="US",
            open=[
                {"date": "2026-12-05", "hours": ["10:00-14:00"]},
                {"date": date(2026, 12, 25), "hours": ["09:00-12:00"]},
                {"date": "2026-12-07", "hours": []},
            ],
        )
        day = timedelta(days=1)
        sat = datetime(2026, 12, 5, tzinfo=NY)
        assert cal.elapsed(sat, sat + day) == 4 * H
        xmas = datetime(2026, 12, 25, tzinfo=NY)
        assert cal.elapsed(xmas, xmas + day) == 3 * H
        monday = datetime(2026, 12, 7, tzinfo=NY)
        assert cal.elapsed(monday, monday + day) == timedelta(0)

    def test_toml_dates_are_accepted(self) -> None:
        """TOML parses bare dates and datetimes; the config accepts them as such."""
        import tomllib

        doc = tomllib.loads(
            """
            timezone = "America/New_York"
            hours = { mon = ["09:00-17:00"] }
            closed = [2026-03-02]
            closed_periods = [[2026-03-09T09:00:00, 2026-03-09T10:00:00]]
            open = [{ date = 2026-03-14, hours = ["09:00-10:00"] }]
            """
        )
        cal = BusinessCalendar.from_config(doc)
        assert not cal.is_open(datetime(2026, 3, 2, 10, tzinfo=NY))
        assert not cal.is_open(datetime(2026, 3, 9, 9, 30, tzinfo=NY))
        assert cal.is_open(datetime(2026, 3, 14, 9, 30, tzinfo=NY))


class TestConstruction:
    """from_config, presets, to_config, name and timezone."""

    def test_design_example_builds(self) -> None:
        """The example from the design document is a valid config."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "America/New_York",
                "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-17:00"]},
                "holidays": {"country": "US", "subdiv": "NY"},
                "closed": ["2026-12-24", "RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=31"],
                "closed_periods": [["2026-07-03T12:00", "2026-07-03T17:00"]],
            },
            name="sales-east",
        )
        assert cal.name == "sales-east"
        assert cal.timezone == NY
        assert cal.horizon_years == 10
        assert "sales-east" in repr(cal)

    def test_to_config_returns_the_mapping(self) -> None:
        """to_config returns a copy of the input, and rebuilding gives the same answers."""
        config = {
            "timezone": "Europe/London",
            "hours": {"mon": ["09:00-17:00"]},
            "horizon_years": 3,
        }
        cal = BusinessCalendar.from_config(config)
        out = cal.to_config()
        assert out == config
        out["hours"]["mon"].append("18:00-19:00")
        assert cal.to_config() == config
        again = BusinessCalendar.from_config(cal.to_config())
        t = datetime(2026, 3, 2, 8, tzinfo=LONDON)
        assert again.add(t, 3 * H) == cal.add(t, 3 * H)

    def test_always_open_preset(self) -> None:
        """always_open adds plain time; '24/7' is the same preset in UTC."""
        for cal in (BusinessCalendar.always_open(), BusinessCalendar.from_config("24/7")):
            t = datetime(2026, 3, 29, 0, 30, tzinfo=LONDON)
            # Real time: Python's `t + 5 * H` on a zoned datetime would add wall-clock time.
            assert cal.add(t, 5 * H) == t.astimezone(UTC) + 5 * H
            assert cal.timezone == ZoneInfo("UTC")
            assert cal.to_config()["timezone"] == "UTC"

    def test_weekdays_preset(self) -> None:
        """weekdays(tz, hours) is Mon-Fri with the given hours."""
        cal = BusinessCalendar.weekdays("Europe/London", ["09:00-12:00", "13:00-17:30"], name="uk")
        assert cal.name == "uk"
        monday = datetime(2026, 3, 2, tzinfo=LONDON)
        assert cal.elapsed(monday, monday + timedelta(days=7)) == 5 * (7 * H + 30 * MIN)
        assert BusinessCalendar.weekdays(ZoneInfo("UTC")).timezone == ZoneInfo("UTC")

    def test_unknown_key_names_the_key(self) -> None:
        """An unknown key raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="'hour'") as info:
            BusinessCalendar.from_config({"timezone": "UTC", "hour": {}})
        assert info.value.field == "hour"

    @pytest.mark.parametrize(
        ("config", "needle"),
        [
            ({"hours": {}}, "timezone"),
            ({"timezone": "UTC", "hours": {"monday": ["09:00-17:00"]}}, "'monday'"),
            ({"timezone": "UTC", "hours": ["09:00-17:00"]}, "hours"),
            ({"timezone": "UTC", "horizon_years": 0}, "horizon_years"),
            ({"timezone": "UTC", "horizon_years": 3000}, "from 1 to 100, got 3000"),
            ({"timezone": "UTC", "holidays": {"country": "US", "categories": 5}}, "categories"),
            ({"timezone": "UTC", "holidays": {"country": "US", "categories": [5]}}, "categories"),
            ({"timezone": "UTC", "closed": "2026-01-01"}, "closed"),
            ({"timezone": "UTC", "closed_periods": [["2026-01-02", "2026-01-01"]]}, "ends before"),
            ({"timezone": "UTC", "closed_periods": [["tomorrow", "2026-01-01"]]}, "'tomorrow'"),
            ({"timezone": "UTC", "open": ["2026-12-05"]}, "'2026-12-05'"),
            ({"timezone": "UTC", "open": [{"date": "2026-12-05"}]}, "hours"),
            ({"timezone": "UTC", "open": [{"date": "5 Dec", "hours": []}]}, "'5 Dec'"),
            ({"timezone": "UTC", "holidays": {"country": "US", "region": "NY"}}, "'region'"),
            ({"timezone": "UTC", "holidays": {"subdiv": "NY"}}, "country"),
            ({"timezone": "UTC", "holidays": {"country": "US", "categories": ["nope"]}}, "nope"),
        ],
    )
    def test_malformed_config_raises_config_error(
        self, config: dict[str, Any], needle: str
    ) -> None:
        """Malformed values raise ConfigError naming the offending key or value."""
        with pytest.raises(ConfigError, match=re.escape(needle)):
            BusinessCalendar.from_config(config)

    def test_unknown_preset(self) -> None:
        """An unknown preset string raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="'8/5'"):
            BusinessCalendar.from_config("8/5")


class TestBadInput:
    """Each kind of bad input raises its own error naming the offending value."""

    def test_naive_datetime(self) -> None:
        """Naive datetimes raise NaiveDatetimeError naming the argument."""
        cal = nine_to_five()
        naive = datetime(2026, 3, 2, 10)
        aware = datetime(2026, 3, 2, 10, tzinfo=NY)
        with pytest.raises(NaiveDatetimeError, match="start") as info:
            cal.add(naive, H)
        assert info.value.field == "start"
        assert info.value.value == naive
        with pytest.raises(NaiveDatetimeError, match="end"):
            cal.elapsed(aware, naive)
        with pytest.raises(NaiveDatetimeError, match="t must"):
            cal.is_open(naive)
        with pytest.raises(NaiveDatetimeError):
            cal.next_open(naive)
        with pytest.raises(NaiveDatetimeError):
            cal.open_intervals(naive, aware)

    def test_non_datetime_arguments_raise_type_error(self) -> None:
        """A date or a number where a datetime or timedelta belongs is a TypeError."""
        cal = nine_to_five()
        with pytest.raises(TypeError, match="start"):
            cal.add(date(2026, 3, 2), H)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="delta"):
            cal.add(datetime(2026, 3, 2, tzinfo=NY), 60)  # type: ignore[arg-type]

    def test_unknown_timezone(self) -> None:
        """An unknown zone raises UnknownTimezoneError naming it."""
        with pytest.raises(UnknownTimezoneError, match="'Mars/Olympus'"):
            BusinessCalendar.from_config({"timezone": "Mars/Olympus"})
        with pytest.raises(UnknownTimezoneError, match="42"):
            BusinessCalendar.from_config({"timezone": 42})

    @pytest.mark.parametrize(
        "text",
        ["9-17", "09:00", "09:00-17:60", "25:00-26:00", "09:00-24:30", "24:00-06:00", "9am-5pm"],
    )
    def test_malformed_range(self, text: str) -> None:
        """A malformed 'HH:MM-HH:MM' range raises InvalidHoursError naming it."""
        with pytest.raises(InvalidHoursError, match=re.escape(repr(text))) as info:
            BusinessCalendar.from_config({"timezone": "UTC", "hours": {"tue": [text]}})
        assert info.value.field == "hours.tue"

    def test_empty_range(self) -> None:
        """'09:00-09:00' is empty, not a 24-hour shift."""
        with pytest.raises(InvalidHoursError, match="'09:00-09:00' is empty"):
            BusinessCalendar.from_config({"timezone": "UTC", "hours": {"mon": ["09:00-09:00"]}})

    def test_non_string_range(self) -> None:
        """A number where a range belongs raises InvalidHoursError."""
        with pytest.raises(InvalidHoursError, match="900"):
            BusinessCalendar.from_config({"timezone": "UTC", "hours": {"mon": [900]}})

    @pytest.mark.parametrize(
        ("hours", "first", "second"),
        [
            ({"mon": ["09:00-12:00", "11:00-13:00"]}, "mon 09:00-12:00", "mon 11:00-13:00"),
            (
                {"mon": ["22:00-06:00"], "tue": ["05:00-09:00"]},
                "mon 22:00-06:00",
                "tue 05:00-09:00",
            ),
            (
                {"sun": ["20:00-02:00"], "mon": ["01:00-09:00"]},
                "sun 20:00-02:00",
                "mon 01:00-09:00",
            ),
            ({"mon": ["00:00-24:00", "12:00-13:00"]}, "mon 00:00-24:00", "mon 12:00-13:00"),
        ],
    )
    def test_overlapping_intervals_name_both(
        self, hours: dict[str, list[str]], first: str, second: str
    ) -> None:
        """Overlaps, including an overnight spill into the next day, name both intervals."""
        with pytest.raises(OverlappingIntervalsError) as info:
            BusinessCalendar.from_config({"timezone": "UTC", "hours": hours})
        assert first in str(info.value)
        assert second in str(info.value)

    def test_overnight_shift_overlapping_an_open_day(self) -> None:
        """An 'open' day whose hours collide with the previous night's shift is rejected."""
        with pytest.raises(OverlappingIntervalsError, match="2026-12-08 05:00-09:00"):
            BusinessCalendar.from_config(
                {
                    "timezone": "UTC",
                    "hours": {"mon": ["22:00-06:00"]},
                    "open": [{"date": "2026-12-08", "hours": ["05:00-09:00"]}],
                }
            )

    @pytest.mark.parametrize(
        ("spec", "needle"),
        [
            ({"country": "XX"}, "'XX'"),
            ("Narnia", "'Narnia'"),
            ({"country": "US", "subdiv": "ZZ"}, "'ZZ'"),
        ],
    )
    def test_unknown_holiday_country(self, spec: Any, needle: str) -> None:
        """An unknown country or subdivision raises UnknownHolidayCountryError naming it."""
        with pytest.raises(UnknownHolidayCountryError, match=needle):
            BusinessCalendar.from_config({"timezone": "UTC", "holidays": spec})

    @pytest.mark.parametrize(
        "entry",
        [
            "RRULE:FREQ=SOMETIMES",
            "RRULE:BYMONTH=12",
            "RRULE:FREQ=YEARLY;FOO=1",
            "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY",
            "Christmas",
            "2026-13-01",
        ],
    )
    def test_malformed_closed_entry(self, entry: str) -> None:
        """A closed entry that is neither a date nor a valid RRULE raises InvalidRRuleError."""
        with pytest.raises(InvalidRRuleError, match=re.escape(repr(entry))):
            BusinessCalendar.from_config({"timezone": "UTC", "closed": [entry]})

    def test_dtstart_anchors_an_rrule(self) -> None:
        """A DTSTART line sets the anchor of an every-other-week rule."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "UTC",
                "hours": {"fri": ["09:00-17:00"]},
                "closed": ["DTSTART:20260102\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=FR"],
            }
        )
        assert not cal.is_open(datetime(2026, 1, 2, 10, tzinfo=UTC))
        assert cal.is_open(datetime(2026, 1, 9, 10, tzinfo=UTC))
        assert not cal.is_open(datetime(2026, 1, 16, 10, tzinfo=UTC))


class TestHorizon:
    """A calendar without open time raises instead of looping."""

    def test_no_hours_at_all(self) -> None:
        """With no hours, add and next_open raise CalendarClosedError; elapsed is zero."""
        cal = BusinessCalendar.from_config({"timezone": "UTC"}, name="never")
        t = datetime(2026, 3, 2, tzinfo=UTC)
        with pytest.raises(CalendarClosedError, match="'never'"):
            cal.add(t, H)
        with pytest.raises(CalendarClosedError):
            cal.add(t, -H)
        with pytest.raises(CalendarClosedError):
            cal.next_open(t)
        assert cal.elapsed(t, t + timedelta(days=3000)) == timedelta(0)
        assert not cal.is_open(t)

    def test_everything_closed_by_rule(self) -> None:
        """Weekdays closed by a rule on every weekday is closed for good."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "UTC",
                "hours": {"mon": ["09:00-17:00"]},
                "closed": ["RRULE:FREQ=WEEKLY;BYDAY=MO"],
                "horizon_years": 2,
            }
        )
        with pytest.raises(CalendarClosedError, match="2 years"):
            cal.add(datetime(2026, 3, 2, tzinfo=UTC), H)

    def test_open_days_only_calendar_runs_out(self) -> None:
        """A calendar open on one listed day serves that day, then raises after it."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "UTC",
                "open": [{"date": "2026-06-01", "hours": ["09:00-10:00"]}],
                "horizon_years": 3,
            }
        )
        before = datetime(2026, 1, 1, tzinfo=UTC)
        assert cal.add(before, 30 * MIN) == datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
        assert cal.add(datetime(2027, 1, 1, tzinfo=UTC), -MIN) == datetime(
            2026, 6, 1, 9, 59, tzinfo=UTC
        )
        with pytest.raises(CalendarClosedError):
            cal.add(before, 2 * H)

    def test_long_adds_cross_many_years(self) -> None:
        """A delta worth 20 years of open time extends the table as far as needed."""
        cal = BusinessCalendar.always_open("UTC")
        t = datetime(2026, 1, 1, tzinfo=UTC)
        assert cal.add(t, timedelta(days=20 * 365)) == t + timedelta(days=20 * 365)
        assert cal.add(t, -timedelta(days=20 * 365)) == t - timedelta(days=20 * 365)


class TestLazyTable:
    """The table grows in both directions on demand and stays consistent across threads."""

    def test_far_past_and_future(self) -> None:
        """Queries in 1901 and 2399 work without a fixed year range."""
        cal = nine_to_five()
        assert cal.is_open(datetime(2399, 3, 2, 10, tzinfo=NY)) == (date(2399, 3, 2).weekday() < 5)
        monday = datetime(1901, 3, 4, 10, tzinfo=NY)
        assert cal.add(monday, 8 * H) == datetime(1901, 3, 5, 10, tzinfo=NY)

    def test_microseconds_are_exact_before_1970_and_after_2106(self) -> None:
        """Results keep every microsecond outside the float-safe range too."""
        cal = BusinessCalendar.always_open("Europe/London")
        late = datetime(2200, 10, 26, 0, 59, 59, 999999, tzinfo=UTC)
        assert cal.add(late, timedelta(hours=2, microseconds=3)) == datetime(
            2200, 10, 26, 3, 0, 0, 2, tzinfo=UTC
        )
        early = datetime(1950, 6, 1, 0, 0, 0, 1, tzinfo=UTC)
        assert cal.add(early, timedelta(days=1, microseconds=5)) == datetime(
            1950, 6, 2, 0, 0, 0, 6, tzinfo=UTC
        )

    def test_a_skipped_day_resolves_to_the_next(self) -> None:
        """Samoa skipped 30 December 2011; any wall time that day resolves to 31 December 00:00."""
        apia = ZoneInfo("Pacific/Apia")
        got = resolve_wall_time(datetime(2011, 12, 30, 10), apia)
        assert got == datetime(2011, 12, 31, tzinfo=apia)

    def test_elapsed_across_years(self) -> None:
        """Ten years of 24/7 is ten years of real time."""
        cal = BusinessCalendar.always_open("Australia/Lord_Howe")
        a = datetime(2020, 1, 1, tzinfo=UTC)
        b = datetime(2030, 1, 1, tzinfo=UTC)
        assert cal.elapsed(a, b) == b - a

    def test_concurrent_extension_is_consistent(self) -> None:
        """Threads extending the table in both directions get the single-threaded answers."""
        config = {
            "timezone": "Europe/London",
            "hours": {"mon": ["09:00-17:00"], "wed": ["22:00-06:00"], "fri": ["08:00-12:00"]},
            "holidays": "GB",
        }
        starts = [datetime(1990 + 3 * k, 3, 1 + k % 27, 11, tzinfo=UTC) for k in range(30)]
        expected = {}
        for s in starts:
            ref = BusinessCalendar.from_config(config)
            expected[s] = (ref.add(s, 100 * H), ref.elapsed(s, s + timedelta(days=90)))
        shared = BusinessCalendar.from_config(config)
        errors: list[BaseException] = []

        def work(chunk: list[datetime]) -> None:
            try:
                for s in chunk:
                    assert (shared.add(s, 100 * H), shared.elapsed(s, s + timedelta(days=90))) == (
                        expected[s]
                    )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        chunks = [starts[k::6] for k in range(6)] + [starts[::-1][k::6] for k in range(6)]
        threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []

    def test_importing_the_module_does_not_import_numpy_or_pandas(self) -> None:
        """import slakit.calendar pulls in neither numpy nor pandas."""
        code = (
            "import sys, slakit.calendar; "
            "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(ROOT / "src")},
        )
        assert out.stdout.strip() == "[]"


class TestBatch:
    """add_many and elapsed_many agree with add and elapsed."""

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_batch_matches_scalar(self, data: st.DataObject) -> None:
        """Each lane of add_many/elapsed_many equals the scalar call."""
        np = pytest.importorskip("numpy")
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        base = to_us(centre)
        offs = st.integers(-(10**11), 10**11)
        starts = [base + data.draw(offs) for _ in range(20)]
        ends = [base + data.draw(offs) for _ in range(20)]
        ds = [data.draw(deltas()) for _ in range(20)]
        got = cal.add_many(np.array(starts, dtype=np.int64), np.array(ds, dtype=np.int64))
        for s, d, g in zip(starts, ds, got.tolist(), strict=True):
            assert g == to_us(cal.add(as_datetime(s), timedelta(microseconds=d)))
        el = cal.elapsed_many(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))
        for s, e, g in zip(starts, ends, el.tolist(), strict=True):
            assert g == utc_us_td(cal.elapsed(as_datetime(s), as_datetime(e)))

    @settings(max_examples=200, deadline=None)
    @given(
        arr=st.lists(st.integers(-(10**6), 10**6), max_size=40),
        keys=st.lists(st.integers(-(2 * 10**6), 2 * 10**6), min_size=1, max_size=40),
        side=st.sampled_from(["left", "right"]),
    )
    def test_bucketed_search_equals_searchsorted(
        self, arr: list[int], keys: list[int], side: str
    ) -> None:
        """The bucketed search used by the batch API gives np.searchsorted's answers."""
        np = pytest.importorskip("numpy")
        from slakit.calendar import _Searcher

        a = np.array(sorted(arr), dtype=np.int64)
        k = np.array(keys, dtype=np.int64)
        got = _Searcher(np, a, side)(k)
        assert got.tolist() == np.searchsorted(a, k, side=side).tolist()

    def test_bucketed_search_on_a_real_table(self) -> None:
        """On a real calendar table the buckets are used, and agree with np.searchsorted."""
        np = pytest.importorskip("numpy")
        from slakit.calendar import _Searcher

        cal = nine_to_five(holidays="US")
        cal.is_open(datetime(2026, 6, 1, tzinfo=UTC))
        table = cal._table
        assert table is not None
        rng = np.random.default_rng(7)
        for values, side in ((table.starts, "right"), (table.cum1, "left")):
            a = np.array(values, dtype=np.int64)
            keys = rng.integers(int(a[0]) - 10**9, int(a[-1]) + 10**9, 10_000)
            keys[:200] = a[:200]  # exact hits
            searcher = _Searcher(np, a, side)
            assert searcher._first is not None
            assert searcher(keys).tolist() == np.searchsorted(a, keys, side=side).tolist()

    def test_datetime64_and_timedelta64_inputs(self) -> None:
        """datetime64/timedelta64 arrays are read as UTC microseconds; scalars broadcast."""
        np = pytest.importorskip("numpy")
        cal = nine_to_five()
        starts = np.array(["2026-03-02T13:00", "2026-03-06T21:00"], dtype="datetime64[s]")
        got = cal.add_many(starts, np.timedelta64(90, "m"))
        assert got.dtype == np.int64
        assert got.tolist() == [
            to_us(datetime(2026, 3, 2, 10, 30, tzinfo=NY)),
            to_us(datetime(2026, 3, 9, 9, 30, tzinfo=NY)),  # 1 h on Friday, 30 min on Monday
        ]
        week = cal.elapsed_many(starts[0], starts[0] + np.timedelta64(7, "D"))
        assert week.shape == ()
        assert int(week) == utc_us_td(40 * H)

    def test_batch_grows_the_table_and_handles_empty_input(self) -> None:
        """Far targets extend the table; empty arrays give empty arrays; floats are refused."""
        np = pytest.importorskip("numpy")
        cal = nine_to_five()
        t0 = to_us(datetime(2026, 3, 2, 9, tzinfo=NY))
        hour = 3_600_000_000
        got = cal.add_many(np.array([t0, t0]), np.array([8 * hour * 260 * 5, -8 * hour * 260 * 5]))
        assert got.tolist() == [
            to_us(cal.add(as_datetime(t0), timedelta(hours=8 * 260 * 5))),
            to_us(cal.add(as_datetime(t0), -timedelta(hours=8 * 260 * 5))),
        ]
        assert cal.add_many(np.array([], dtype=np.int64), 0).shape == (0,)
        assert cal.elapsed_many(np.array([], dtype=np.int64), 0).shape == (0,)
        with pytest.raises(TypeError, match="float64"):
            cal.add_many(np.array([1.5]), 0)

    def test_batch_raises_when_closed(self) -> None:
        """add_many raises CalendarClosedError on a calendar without open time."""
        np = pytest.importorskip("numpy")
        cal = BusinessCalendar.from_config({"timezone": "UTC", "horizon_years": 1})
        with pytest.raises(CalendarClosedError):
            cal.add_many(np.array([0]), np.array([1]))


class TestPeers:
    """The peer behaviours that docs/calendar.md contrasts slakit with."""

    def test_pandas_rolls_a_closing_deadline_to_the_next_morning(self) -> None:
        """pandas CBH turns 09:00 + 8 h into the next day's 09:00; slakit gives 17:00."""
        pd = pytest.importorskip("pandas")
        cbh = pd.offsets.CustomBusinessHour(start="09:00", end="17:00")
        got = pd.Timestamp("2026-03-02 09:00", tz="America/New_York") + cbh * 8
        assert got == pd.Timestamp("2026-03-03 09:00", tz="America/New_York")
        assert nine_to_five().add(datetime(2026, 3, 2, 9, tzinfo=NY), 8 * H) == datetime(
            2026, 3, 2, 17, tzinfo=NY
        )

    def test_pandas_applies_hours_in_the_timestamps_zone(self) -> None:
        """The same instant gives different pandas deadlines in UTC and in New York."""
        pd = pytest.importorskip("pandas")
        cbh = pd.offsets.CustomBusinessHour(start="09:00", end="17:00")
        local = pd.Timestamp("2026-03-02 08:00", tz="America/New_York")
        utc = local.tz_convert("UTC")  # 13:00 UTC: inside 09-17 "UTC hours"
        assert (utc + cbh).tz_convert("America/New_York") != local + cbh
        assert (utc + cbh) == pd.Timestamp("2026-03-02 14:00", tz="UTC")
        cal = nine_to_five()
        assert cal.add(local.to_pydatetime(), H) == cal.add(utc.to_pydatetime(), H)

    def test_businesstimedelta_crashes_past_its_holiday_list(self) -> None:
        """businesstimedelta raises TypeError more than five years past its last holiday."""
        btd = pytest.importorskip("businesstimedelta")
        pytz = pytest.importorskip("pytz")
        tz = pytz.timezone("America/New_York")
        workday = btd.WorkDayRule(
            start_time=datetime.min.time().replace(hour=9),
            end_time=datetime.min.time().replace(hour=17),
            working_days=[0, 1, 2, 3, 4],
            tz=tz,
        )
        rules = btd.Rules([workday, btd.HolidayRule([date(2020, 12, 25)], tz=tz)])
        start = tz.localize(datetime(2026, 3, 2, 9))
        with pytest.raises(TypeError):
            start + btd.BusinessTimeDelta(rules, hours=1)
        cal = nine_to_five(closed=["2020-12-25"])
        assert cal.add(datetime(2026, 3, 2, 9, tzinfo=NY), H) == datetime(2026, 3, 2, 10, tzinfo=NY)

    def test_businesstimedelta_treats_naive_times_as_utc(self) -> None:
        """businesstimedelta reads a naive 09:00 as 09:00 UTC; slakit refuses naive input."""
        btd = pytest.importorskip("businesstimedelta")
        pytz = pytest.importorskip("pytz")
        tz = pytz.timezone("America/New_York")
        workday = btd.WorkDayRule(
            start_time=datetime.min.time().replace(hour=9),
            end_time=datetime.min.time().replace(hour=17),
            working_days=[0, 1, 2, 3, 4],
            tz=tz,
        )
        got = datetime(2026, 3, 2, 9) + btd.BusinessTimeDelta(workday, hours=1)
        # 09:00 UTC is 04:00 in New York, so the clock starts at 09:00 local = 14:00 UTC.
        assert got == datetime(2026, 3, 2, 15, tzinfo=UTC)
        with pytest.raises(NaiveDatetimeError):
            nine_to_five().add(datetime(2026, 3, 2, 9), H)


class TestDocs:
    """docs/calendar.md's examples run and hold."""

    def test_python_blocks_run(self) -> None:
        """Every ```python block of docs/calendar.md runs, in order, in one namespace."""
        text = (ROOT / "docs" / "calendar.md").read_text(encoding="utf-8")
        blocks = list(re.finditer(r"```python\n(.*?)```", text, flags=re.S))
        assert len(blocks) >= 10
        namespace: dict[str, Any] = {}
        for block in blocks:
            # Pad with blank lines so that a failure points at the right line of the page.
            line = text.count("\n", 0, block.start(1))
            code = "\n" * line + block.group(1)
            exec(compile(code, "docs/calendar.md", "exec"), namespace)
