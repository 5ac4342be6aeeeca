"""Reading a wall-clock time in a zone, checked against a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slakit._time import localize
from slakit.errors import AmbiguousTimeError, NonexistentTimeError, ValidationError

#: Zones with gaps and repeats of one hour, half an hour (Lord Howe) and a
#: negative "summer" offset (Dublin), plus one without any.
ZONES = [
    ZoneInfo(name)
    for name in (
        "America/New_York",
        "Europe/London",
        "Europe/Dublin",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Asia/Kolkata",
    )
]


def readings(naive: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every instant at which the wall clock in ``tz`` reads ``naive``, in order.

    Brute force: step through the instants up to 26 hours either side of the
    naive time read as UTC, a quarter of an hour at a time (every offset these
    zones used since 1990 is a whole number of quarter hours, so every reading
    is on that grid), and keep those whose local reading matches.
    """
    base = naive.replace(tzinfo=UTC)
    found = []
    for quarter in range(-26 * 4, 26 * 4 + 1):
        instant = base + timedelta(minutes=15 * quarter)
        if instant.astimezone(tz).replace(tzinfo=None) == naive:
            found.append(instant)
    return found


naive_times = st.one_of(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 12, 31)),
    # Near the changes, where it matters: the small hours of March/April and October/November.
    st.builds(
        datetime,
        st.integers(2000, 2035),
        st.sampled_from([3, 4, 9, 10, 11]),
        st.integers(1, 28),
        st.integers(0, 3),
        st.integers(0, 59),
    ),
)


def _zone(name: str) -> ZoneInfo:
    return next(z for z in ZONES if z.key == name)


@settings(max_examples=400, deadline=None)
@given(naive=naive_times, tz=st.sampled_from(ZONES))
# Every zone's gap and repeat, each checked on every run.
@example(datetime(2026, 3, 8, 2, 30), _zone("America/New_York"))
@example(datetime(2026, 11, 1, 1, 30), _zone("America/New_York"))
@example(datetime(2026, 3, 29, 1, 30), _zone("Europe/London"))
@example(datetime(2026, 3, 29, 1, 30), _zone("Europe/Dublin"))
@example(datetime(2026, 10, 25, 1, 30), _zone("Europe/Dublin"))
@example(datetime(2026, 10, 4, 2, 15), _zone("Australia/Lord_Howe"))
@example(datetime(2026, 4, 5, 1, 45), _zone("Australia/Lord_Howe"))
@example(datetime(2026, 9, 6, 0, 30), _zone("America/Santiago"))
@example(datetime(2026, 4, 4, 23, 30), _zone("America/Santiago"))
def test_localize_matches_the_oracle(naive: datetime, tz: ZoneInfo) -> None:
    found = readings(naive, tz)
    assert len(found) <= 2
    if not found:
        with pytest.raises(NonexistentTimeError):
            localize("t", naive, tz)
        return
    if len(found) == 1:
        for choice in ("reject", "earlier", "later"):
            assert localize("t", naive, tz, choice) == found[0]  # type: ignore[arg-type]
        return
    with pytest.raises(AmbiguousTimeError):
        localize("t", naive, tz)
    earlier = localize("t", naive, tz, "earlier")
    later = localize("t", naive, tz, "later")
    assert (earlier, later) == (found[0], found[1])
    assert earlier.tzinfo is later.tzinfo is UTC
    assert earlier.astimezone(tz).replace(tzinfo=None) == naive
    assert later.astimezone(tz).replace(tzinfo=None) == naive


def test_errors_name_the_field_and_the_value() -> None:
    ny = ZoneInfo("America/New_York")
    with pytest.raises(NonexistentTimeError) as gap:
        localize("started_at", datetime(2026, 3, 8, 2, 30), ny, text="3/8/2026 2:30 AM")
    assert (gap.value.field, gap.value.value) == ("started_at", "3/8/2026 2:30 AM")
    assert "started_at '3/8/2026 2:30 AM' does not exist in America/New_York" in str(gap.value)
    with pytest.raises(AmbiguousTimeError) as twice:
        localize("completed_at", datetime(2026, 11, 1, 1, 5), ny)
    assert twice.value.field == "completed_at"
    assert "'2026-11-01 01:05:00' happened twice" in str(twice.value)
    assert "UTC-04:00 and then at UTC-05:00" in str(twice.value)
    assert isinstance(twice.value, ValidationError)
