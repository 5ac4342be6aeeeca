"""The compiled fast path (slakit._ccal) gives exactly the pure-Python answers.

"Exactly" means the same instant, the same wall-clock fields, the same
``fold``, the same ``utcoffset()`` and the very same ``tzinfo`` object, or the
same exception. Inputs the fast path does not take must come back as ``None``
so that Python answers them. Tests that need the module skip when it is not
built, and fail under CI.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slakit.calendar as calendar_module
from calendar_impl import accelerated_or_skip, pure_python
from calendar_oracle import EPOCH, MINUTE_US, to_us
from slakit.calendar import BusinessCalendar, _pack, _Table
from slakit.errors import NaiveDatetimeError, OverlappingIntervalsError
from strategies_calendar import ZONES, as_datetime, calendar_configs, deltas, transitions

ROOT = Path(__file__).resolve().parent.parent
NY = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
H = timedelta(hours=1)
US = timedelta(microseconds=1)
DIFF_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Input zones: the calendar's own, UTC as datetime.UTC and as a ZoneInfo, one with
# a half-hour offset, and fixed offsets with seconds and microseconds.
ODD_OFFSET = timezone(timedelta(hours=-3, minutes=-25, seconds=-7, microseconds=-250))
INPUT_ZONES: tuple[tzinfo | None, ...] = (
    None,  # the calendar's zone
    UTC,
    ZoneInfo("UTC"),
    ZoneInfo("Asia/Kolkata"),
    ODD_OFFSET,
    timezone(timedelta(hours=13, seconds=59)),
)
# A table with one open interval over nearly all of datetime's range.
WHOLE_RANGE = _Table(
    2, 9997, [(to_us(datetime(2, 1, 1, tzinfo=UTC)), to_us(datetime(9997, 12, 31, tzinfo=UTC)))]
)


@pytest.fixture(autouse=True)
def _needs_ccal() -> None:
    accelerated_or_skip()


def ccal() -> Any:
    from slakit import _ccal

    return _ccal


def fields(dt: datetime) -> tuple[Any, ...]:
    return (
        type(dt),
        id(dt.tzinfo),
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.microsecond,
        dt.fold,
        dt.utcoffset(),
        to_us(dt),
    )


def assert_same(got: datetime, expected: datetime) -> None:
    """Equal in every respect, not just ==, which ignores fold between same-zone datetimes."""
    assert got == expected
    assert fields(got) == fields(expected)


def build(config: dict[str, Any]) -> BusinessCalendar:
    try:
        return BusinessCalendar.from_config(config)
    except OverlappingIntervalsError:
        config.pop("open")
        return BusinessCalendar.from_config(config)


def pure_add(cal: BusinessCalendar, start: Any, delta: Any) -> Any:
    with pure_python():
        try:
            return cal.add(start, delta)
        except Exception as exc:
            return exc


def pure_elapsed(cal: BusinessCalendar, start: Any, end: Any) -> Any:
    with pure_python():
        try:
            return cal.elapsed(start, end)
        except Exception as exc:
            return exc


def check_add(cal: BusinessCalendar, start: Any, delta: Any) -> bool:
    """cal.add and the bare fast path agree with pure Python; True when C answered."""
    expected = pure_add(cal, start, delta)
    direct = ccal().add_fast(start, delta, cal._packed, cal.timezone)
    if isinstance(expected, Exception):
        assert direct is None
        with pytest.raises(type(expected)) as info:
            cal.add(start, delta)
        assert str(info.value) == str(expected)
        return False
    assert_same(cal.add(start, delta), expected)
    if direct is None:
        return False
    assert_same(direct, expected)
    return True


def check_elapsed(cal: BusinessCalendar, start: Any, end: Any) -> bool:
    expected = pure_elapsed(cal, start, end)
    direct = ccal().elapsed_fast(start, end, cal._packed)
    if isinstance(expected, Exception):
        assert direct is None
        with pytest.raises(type(expected)) as info:
            cal.elapsed(start, end)
        assert str(info.value) == str(expected)
        return False
    got = cal.elapsed(start, end)
    assert type(got) is timedelta
    assert got == expected
    if direct is None:
        return False
    assert type(direct) is timedelta
    assert direct == expected
    return True


def in_zone(us: int, zone: tzinfo | None, cal: BusinessCalendar) -> datetime:
    t = EPOCH + timedelta(microseconds=us)
    return t.astimezone(zone if zone is not None else cal.timezone)


class TestAgainstPurePython:
    """Random calendars, instants near openings, closings and DST changes, both paths."""

    @DIFF_SETTINGS
    @given(data=st.data())
    def test_add_and_elapsed_are_identical(self, data: st.DataObject) -> None:
        """add/elapsed give the pure-Python answer on random calendars, zones and deltas."""
        config, centre = data.draw(calendar_configs())
        cal = build(config)
        base = to_us(centre)
        window = 4 * 24 * 60 * MINUTE_US
        # Over-sample the calendar's own boundaries and the zone's transitions.
        specials = [
            to_us(b)
            for pair in cal.open_intervals(centre - timedelta(days=4), centre + timedelta(days=4))
            for b in pair
        ]
        specials += [to_us(t) for t in transitions(config["timezone"])]
        nudge = st.sampled_from([0, 0, 1, -1, MINUTE_US, -MINUTE_US, 30 * MINUTE_US])
        uniform = st.integers(base - window, base + window)
        points = (
            st.one_of(uniform, st.builds(int.__add__, st.sampled_from(specials), nudge))
            if specials
            else uniform
        )
        zones = st.sampled_from(INPUT_ZONES)
        for _ in range(6):
            start = in_zone(data.draw(points), data.draw(zones), cal)
            if data.draw(st.booleans()):
                start = start.replace(fold=1)  # another instant inside a repeated hour
            d = timedelta(microseconds=data.draw(deltas(max_minutes=120 * 60)))
            check_add(cal, start, d)
            end = in_zone(data.draw(points), data.draw(zones), cal)
            check_elapsed(cal, start, end)
            # Landing on the result (a boundary more often than not) from another zone.
            result = pure_add(cal, start, d)
            if isinstance(result, datetime):
                check_add(cal, result.astimezone(data.draw(zones) or UTC), d)
                check_elapsed(cal, result, start)

    @pytest.mark.parametrize("zone", ZONES)
    def test_every_minute_around_each_transition(self, zone: str) -> None:
        """Every third minute across each DST change of 2026, on a calendar open all day."""
        tz = ZoneInfo(zone)
        cal = BusinessCalendar.from_config(
            {"timezone": zone, "hours": {d: ["00:00-24:00"] for d in ("mon", "wed", "sat")}}
        )
        answered = 0
        for change in transitions(zone, 2026, 2026):
            for minute in range(-150, 151, 3):
                t = (change + timedelta(minutes=minute, microseconds=minute)).astimezone(tz)
                for d in (US, 30 * timedelta(minutes=1), 2 * H, 26 * H):
                    answered += check_add(cal, t, d)
                answered += check_elapsed(cal, t, change.astimezone(tz))
        assert answered > 0 or zone == "UTC"

    def test_the_bench_workload_runs_in_c(self) -> None:
        """On the bench's calendar every add and elapsed of the workload is answered in C."""
        cal = BusinessCalendar.from_config(
            {
                "timezone": "America/New_York",
                "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                "holidays": {"country": "US"},
            }
        )
        rng = random.Random(3)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        cal.add(t0, H)
        for _ in range(2000):
            start = (
                t0
                + timedelta(
                    seconds=rng.randrange(3 * 365 * 86400), microseconds=rng.randrange(10**6)
                )
            ).astimezone(NY)
            assert check_add(cal, start, timedelta(hours=rng.randint(1, 40)))
            assert check_elapsed(cal, start, start + timedelta(seconds=rng.randrange(30 * 86400)))


class TestRange:
    """Exact microseconds before 1970, after 2106 (past float-exact timestamps), at any date."""

    @pytest.mark.parametrize(
        "start",
        [
            datetime(1901, 3, 4, 10, tzinfo=NY),
            datetime(1950, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2106, 2, 7, 6, 28, 15, 999999, tzinfo=UTC),  # 2**32 s is 06:28:16
            datetime(2200, 10, 26, 0, 59, 59, 999999, tzinfo=UTC),
            datetime(2399, 3, 2, 10, tzinfo=NY),
            datetime(9000, 11, 5, 5, 59, 59, 999999, tzinfo=UTC),
        ],
    )
    @pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "Australia/Lord_Howe"])
    def test_far_dates(self, start: datetime, zone: str) -> None:
        """Far past and future instants on 24/7 and 9-to-5 calendars."""
        always = BusinessCalendar.always_open(zone)
        weekdays = BusinessCalendar.weekdays(zone)
        for cal in (always, weekdays):
            pure_add(cal, start, H)  # build the table
            for d in (US, timedelta(hours=2, microseconds=3), timedelta(days=1, microseconds=5)):
                assert check_add(cal, start, d) or cal is weekdays
            check_elapsed(cal, start, start + timedelta(days=3, microseconds=7))

    def test_civil_dates_over_the_whole_range(self) -> None:
        """One open interval over years 2-9997: add(t, d) is t + d, at every date of a
        400-year Gregorian cycle and at dates spread over the whole range."""
        add_fast = ccal().add_fast
        packed = _pack(WHOLE_RANGE)
        utc = ZoneInfo("UTC")
        day = timedelta(days=1)

        def check(t: datetime, d: timedelta) -> None:
            got = add_fast(t, d, packed, utc)
            assert got is not None, t
            expected = (t + d).astimezone(utc)
            assert got.tzinfo is utc
            assert got == expected, (t, d)

        t = datetime(1800, 2, 27, 23, 59, 59, 999999, tzinfo=UTC)
        for _ in range(146_097 + 3):
            check(t, US)
            t += day
        t = datetime(2, 1, 10, 12, 34, 56, 789012, tzinfo=UTC)
        while t.year < 9997:
            check(t, 29 * day - US)
            t += 97 * day + timedelta(seconds=4321)
        for year in (4, 100, 400, 1600, 1700, 1900, 2000, 2100, 2400, 9992):
            for month, dd in ((2, 27), (2, 28), (3, 1), (12, 31)):
                t = datetime(year, month, dd, 23, 59, 59, 999999, tzinfo=UTC)
                for d in (US, day, 2 * day + US, 366 * day):
                    check(t, d)

    @settings(max_examples=300, deadline=None)
    @given(
        us=st.integers(
            to_us(datetime(2, 1, 10, tzinfo=UTC)), to_us(datetime(9997, 12, 20, tzinfo=UTC))
        ),
        d=st.integers(1, 10**12),
        zone=st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
    )
    def test_random_instants_over_the_whole_range(self, us: int, d: int, zone: str) -> None:
        """Random microseconds anywhere in datetime's range convert both ways exactly."""
        tz = ZoneInfo(zone)
        start = as_datetime(us, zone)
        got = ccal().add_fast(start, timedelta(microseconds=d), _pack(WHOLE_RANGE), tz)
        if us + d > WHOLE_RANGE.ends[0]:
            assert got is None
        else:
            assert got is not None
            assert_same(got, (EPOCH + timedelta(microseconds=us + d)).astimezone(tz))


class _Offset(tzinfo):
    """A tzinfo whose utcoffset is whatever the test says (or raises it)."""

    def __init__(self, offset: Any) -> None:
        self.offset = offset

    def utcoffset(self, dt: datetime | None) -> Any:
        if isinstance(self.offset, BaseException):
            raise self.offset
        return self.offset

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


class _SubDelta(timedelta):
    pass


class _SubDatetime(datetime):
    pass


class TestFallback:
    """Inputs outside the fast path come back None, and Python answers them as before."""

    @pytest.fixture
    def cal(self) -> BusinessCalendar:
        cal = BusinessCalendar.weekdays("America/New_York")
        cal.add(datetime(2026, 3, 2, 9, tzinfo=NY), H)
        return cal

    def test_the_fast_path_answers_the_common_case(self, cal: BusinessCalendar) -> None:
        """A plain aware datetime plus a positive timedelta inside the table is answered in C."""
        assert check_add(cal, datetime(2026, 3, 2, 9, tzinfo=NY), 8 * H)
        assert check_elapsed(
            cal, datetime(2026, 3, 2, 9, tzinfo=NY), datetime(2026, 3, 9, tzinfo=UTC)
        )

    @pytest.mark.parametrize(
        "delta", [timedelta(0), -H, -US, timedelta(days=-1, seconds=1), _SubDelta(hours=1)]
    )
    def test_deltas_it_leaves_to_python(self, cal: BusinessCalendar, delta: timedelta) -> None:
        """Zero, negative and timedelta subclasses go to Python, with the same results."""
        start = datetime(2026, 3, 4, 11, tzinfo=NY)
        assert not check_add(cal, start, delta)

    def test_huge_deltas_go_to_python(self, cal: BusinessCalendar) -> None:
        """Deltas past the table, or past int64 microseconds, go to Python."""
        start = datetime(2026, 3, 4, 11, tzinfo=NY)
        assert ccal().add_fast(start, timedelta(days=999_999_999), cal._packed, NY) is None
        assert ccal().add_fast(start, timedelta(days=4_000_001), cal._packed, NY) is None
        assert ccal().add_fast(start, timedelta(days=3000), cal._packed, NY) is None
        check_add(cal, start, timedelta(days=3000))

    @pytest.mark.parametrize(
        "start",
        [
            datetime(2026, 3, 4, 11),
            _SubDatetime(2026, 3, 4, 11, tzinfo=NY),
            datetime(2026, 3, 4, 11, tzinfo=_Offset(None)),
            "2026-03-04T11:00-05:00",
            None,
            1_772_640_000,
        ],
    )
    def test_starts_it_leaves_to_python(self, cal: BusinessCalendar, start: Any) -> None:
        """Naive, subclassed and non-datetime starts give Python's answer or Python's error."""
        assert not check_add(cal, start, H)
        assert not check_elapsed(cal, start, datetime(2026, 3, 9, tzinfo=UTC))
        assert not check_elapsed(cal, datetime(2026, 3, 9, tzinfo=UTC), start)

    def test_naive_start_still_names_the_field(self, cal: BusinessCalendar) -> None:
        """The error for a naive start is the pure-Python one."""
        with pytest.raises(NaiveDatetimeError) as info:
            cal.add(datetime(2026, 3, 4, 11), H)
        assert info.value.field == "start"
        with pytest.raises(NaiveDatetimeError) as info:
            cal.elapsed(datetime(2026, 3, 4, 11, tzinfo=NY), datetime(2026, 3, 4, 12))
        assert info.value.field == "end"

    @pytest.mark.parametrize(
        "offset",
        [
            ValueError("no offset today"),
            timedelta(days=1),  # out of range: datetime refuses it
            -timedelta(days=1),
            "five hours",
        ],
    )
    def test_a_failing_tzinfo_fails_as_in_python(self, cal: BusinessCalendar, offset: Any) -> None:
        """A tzinfo that raises or returns nonsense gives the pure-Python exception."""
        start = datetime(2026, 3, 4, 11, tzinfo=_Offset(offset))
        assert not check_add(cal, start, H)
        assert not check_elapsed(cal, start, datetime(2026, 3, 9, tzinfo=UTC))

    def test_a_keyboard_interrupt_is_not_swallowed(self, cal: BusinessCalendar) -> None:
        """Only ordinary exceptions make the fast path step aside."""
        start = datetime(2026, 3, 4, 11, tzinfo=_Offset(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            ccal().add_fast(start, H, cal._packed, NY)

    def test_custom_offsets_with_seconds_and_microseconds(self, cal: BusinessCalendar) -> None:
        """Any tzinfo's offset is honoured to the microsecond, timedelta subclasses too."""
        for offset in (
            ODD_OFFSET.utcoffset(None),
            _SubDelta(hours=5, microseconds=3),
            timedelta(days=1) - US,  # the largest offsets datetime accepts
            US - timedelta(days=1),
        ):
            start = datetime(2026, 3, 4, 11, 0, 0, 5, tzinfo=_Offset(offset))
            assert check_add(cal, start, H + 3 * US)
            assert check_elapsed(cal, start, datetime(2026, 3, 9, tzinfo=UTC))

    def test_outside_the_table_goes_to_python(self, cal: BusinessCalendar) -> None:
        """Starts or targets outside the current table are Python's (which grows it)."""
        packed = cal._packed
        far = datetime(2080, 3, 4, 11, tzinfo=NY)
        assert ccal().add_fast(far, H, packed, NY) is None
        assert ccal().elapsed_fast(datetime(2026, 3, 4, tzinfo=NY), far, packed) is None
        check_add(cal, far, H)  # Python extends the table...
        assert cal._packed is not packed
        assert check_add(cal, far, H)  # ...and the next call is answered in C

    @pytest.mark.parametrize(
        "packed",
        [None, b"", b"\0" * 24, bytearray(_pack(_Table(2026, 2026, [(0, 1)]))), "not bytes"],
    )
    def test_a_missing_or_malformed_table_is_refused(self, packed: Any) -> None:
        """No table (a calendar without open time) or a malformed one: None."""
        start = datetime(2026, 3, 4, 11, tzinfo=NY)
        assert ccal().add_fast(start, H, packed, NY) is None
        assert ccal().elapsed_fast(start, start + H, packed) is None

    def test_wrong_argument_counts_raise(self) -> None:
        """The functions check their arity."""
        with pytest.raises(TypeError, match="4 arguments"):
            ccal().add_fast(1, 2, 3)
        with pytest.raises(TypeError, match="3 arguments"):
            ccal().elapsed_fast(1, 2)


class TestSwitch:
    """SLAKIT_PURE turns the compiled module off; ACCELERATED tells which path runs."""

    def run(self, code: str, **env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k != "SLAKIT_PURE"}
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**base, **env},
        )
        return out.stdout.strip()

    def test_slakit_pure_forces_pure_python(self) -> None:
        """SLAKIT_PURE=1 at import: ACCELERATED is False and add runs in Python."""
        code = "import slakit.calendar as c; print(c.ACCELERATED, c._add_fast, c._elapsed_fast)"
        assert self.run(code, SLAKIT_PURE="1") == "False None None"
        assert self.run(code, SLAKIT_PURE="0").startswith("True <built-in function add_fast>")
        assert self.run(code).startswith("True")

    def test_results_agree_across_processes(self) -> None:
        """The same deadlines in a pure process and an accelerated one."""
        code = (
            "from datetime import datetime, timedelta, timezone;"
            "from slakit import BusinessCalendar;"
            "cal = BusinessCalendar.weekdays('Australia/Lord_Howe');"
            "t = datetime(2026, 10, 2, 23, 5, 7, 11, tzinfo=timezone.utc);"
            "print([(r.isoformat(), r.fold) for r in"
            " (cal.add(t + timedelta(hours=k), timedelta(minutes=97 * k + 1)) for k in range(60))])"
        )
        assert self.run(code, SLAKIT_PURE="1") == self.run(code)

    def test_the_module_is_in_use(self) -> None:
        """When the module is built (always under CI), the calendar uses it."""
        assert calendar_module.ACCELERATED
        assert calendar_module._add_fast is ccal().add_fast
