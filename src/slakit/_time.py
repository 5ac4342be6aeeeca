"""Small time helpers shared by the models, the engine and the stores."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from slakit._compiled import PURE_BY_ENV
from slakit.errors import (
    AmbiguousTimeError,
    InvalidSLAError,
    NaiveDatetimeError,
    NonexistentTimeError,
    ValidationError,
)

__all__ = [
    "UTC",
    "ensure_aware",
    "from_iso",
    "from_us",
    "optional_aware",
    "parse_duration",
    "parse_signed_duration",
    "to_iso",
    "to_us",
    "to_utc",
    "validate_sla",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ensure_aware(field: str, value: Any) -> datetime:
    """Return ``value`` if it is an aware datetime.

    :raises NaiveDatetimeError: when it has no zone.
    :raises ValidationError: when it is not a datetime at all.
    """
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be a timezone-aware datetime, got {value!r}", field=field, value=value
        )
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(field, value)
    return value


def optional_aware(field: str, value: Any) -> datetime | None:
    """Like :func:`ensure_aware` but lets ``None`` through."""
    return None if value is None else ensure_aware(field, value)


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC."""
    return value.astimezone(UTC)


def python_to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch, exact."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def python_from_us(value: int) -> datetime:
    """The UTC datetime ``value`` microseconds after the Unix epoch."""
    # Positional arguments: timedelta's keyword path is over twice as slow.
    return _EPOCH + timedelta(0, 0, value)


to_us: Callable[[datetime], int] = python_to_us
from_us: Callable[[int], datetime] = python_from_us
#: Whether ``slakit._crecords`` (several times faster) is in use: the one place that
#: decides, for these conversions, the record builders and the SQLite row codec.
ACCELERATED = False
if not PURE_BY_ENV:
    try:
        from slakit import _crecords
    except ImportError:  # built without a C compiler
        pass
    else:
        to_us, from_us, ACCELERATED = _crecords.to_us, _crecords.from_us, True


#: How :func:`localize` reads a wall time that happened twice.
Ambiguous = Literal["reject", "earlier", "later"]
AMBIGUOUS_CHOICES: tuple[Ambiguous, ...] = ("reject", "earlier", "later")


def _offset(value: datetime) -> str:
    off = value.utcoffset()
    assert off is not None
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def localize(
    field: str, naive: datetime, tz: tzinfo, ambiguous: Ambiguous = "reject", text: Any = None
) -> datetime:
    """``naive`` read as a wall-clock time in ``tz``, refusing to guess; the instant in UTC.

    A time the zone skipped (inside a spring-forward gap) never happened, so it
    is an error. A time the zone read twice (inside a fall-back repeat) is an
    error unless ``ambiguous`` picks the ``earlier`` or the ``later`` instant.

    In UTC because an aware datetime inside a repeat compares unequal to every
    datetime of another zone (PEP 495), the same instant included.

    :param text: the value as the user wrote it, for the message (default: ``naive``).
    :raises NonexistentTimeError: for a skipped time.
    :raises AmbiguousTimeError: for a repeated time when ``ambiguous`` is ``"reject"``.
    """
    shown = naive.isoformat(sep=" ") if text is None else text
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        # fold=0 reads the wall time with the offset before the transition,
        # fold=1 with the one after; inside a gap neither round-trips.
        raise NonexistentTimeError(
            f"{field} {shown!r} does not exist in {tz}: the clocks skipped from "
            f"{_offset(first)} to {_offset(second)} over it (a daylight-saving gap); "
            "give the time with its UTC offset",
            field=field,
            value=shown,
        )
    if ambiguous == "earlier":
        return first.astimezone(UTC)
    if ambiguous == "later":
        return second.astimezone(UTC)
    raise AmbiguousTimeError(
        f"{field} {shown!r} happened twice in {tz}, at {_offset(first)} and then at "
        f"{_offset(second)} (the clocks went back); give the time with its UTC offset, "
        "or choose with --ambiguous earlier|later",
        field=field,
        value=shown,
    )


def to_iso(value: datetime | None) -> str | None:
    """ISO-8601 text in UTC (``None`` stays ``None``)."""
    return None if value is None else value.astimezone(UTC).isoformat()


def from_iso(field: str, value: str | None) -> datetime | None:
    """Parse ISO-8601 text that carries an offset.

    :raises NaiveDatetimeError: when the text has no offset.
    :raises ValidationError: when it is not ISO-8601.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO-8601 timestamp with an offset, got {value!r}",
            field=field,
            value=value,
        ) from None
    return ensure_aware(field, parsed)


#: The longest SLA and the longest duration slakit takes: ten years. Longer
#: ones are typing mistakes (``1e8`` for ``1e3``), and a business calendar
#: would spend seconds to minutes laying out the centuries they span.
MAX_SLA_MINUTES = 10 * 365.25 * 24 * 60
MAX_DURATION = timedelta(minutes=MAX_SLA_MINUTES)


def validate_sla(field: str, value: Any, *, limit: float = MAX_SLA_MINUTES) -> float:
    """Return ``value`` as a float of positive, finite minutes, at most ``limit``.

    Input (a start, a policy, a what-if) is held to :data:`MAX_SLA_MINUTES`; a
    record read back or copied is not (``limit=math.inf``), so one stored
    before the limit existed stays usable.

    :raises InvalidSLAError: otherwise (booleans included).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSLAError(field, value)
    minutes = float(value)
    if not math.isfinite(minutes) or minutes <= 0 or minutes > limit:
        raise InvalidSLAError(field, value)
    return minutes


_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(field: str, text: str) -> timedelta:
    """Parse ``90m``, ``1h30m``, ``2d``, ``45s`` or ISO-8601 ``PT1H30M``.

    :raises ValidationError: naming ``field`` and ``text`` when malformed.
    """
    try:
        duration = _parse_duration(field, text)
    except OverflowError:  # beyond timedelta itself
        duration = timedelta.max
    if duration > MAX_DURATION:
        raise ValidationError(
            f"{field} must be at most ten years, got {text!r}", field=field, value=text
        )
    return duration


def _parse_duration(field: str, text: str) -> timedelta:
    raw = text.strip()
    if len(raw) > 64:  # "1w2d3h4m5s" is 10 characters; the patterns are slow on long text
        raise ValidationError(
            f"{field} must be a duration like '90m', '1h30m', '2d' or 'PT1H30M', got "
            f"{len(raw)} characters",
            field=field,
            value=raw[:64],
        )
    iso = re.fullmatch(
        r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", raw.upper()
    )
    if iso and raw.upper() not in ("P", "PT") and any(g is not None for g in iso.groups()):
        w, d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([wdhms])", raw.lower())
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*[wdhms])+\s*", raw.lower()):
        return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    raise ValidationError(
        f"{field} must be a duration like '90m', '1h30m', '2d' or 'PT1H30M', got {text!r}",
        field=field,
        value=text,
    )


def parse_signed_duration(field: str, text: str) -> timedelta:
    """:func:`parse_duration` with an optional leading ``+`` or ``-`` (spaces ignored)."""
    raw = text.replace(" ", "")
    sign = -1 if raw.startswith("-") else 1
    return sign * parse_duration(field, raw.lstrip("+-"))
