"""The exception hierarchy.

Every error slakit raises on purpose is a :class:`SlakitError`. Each cause has
its own subclass, and each message names the offending field and value, so a
caller can both branch on the type and show the message to a person.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdapterError",
    "AmbiguousTimeError",
    "CalendarClosedError",
    "CalendarError",
    "ConcurrentUpdateError",
    "ConfigError",
    "DuplicateHandoffError",
    "InvalidGroupKeyError",
    "InvalidHoursError",
    "InvalidRRuleError",
    "InvalidSLAError",
    "InvalidStepError",
    "InvalidTimestampError",
    "InvalidTransitionError",
    "NaiveDatetimeError",
    "NonexistentTimeError",
    "NotifyError",
    "OverlappingIntervalsError",
    "PermanentNotifyError",
    "SchemaVersionError",
    "SlakitError",
    "StoreError",
    "StoreUnavailableError",
    "TransientNotifyError",
    "UnknownAdapterError",
    "UnknownBreachReasonError",
    "UnknownCalendarError",
    "UnknownHandoffError",
    "UnknownHolidayCountryError",
    "UnknownPolicyError",
    "UnknownTimezoneError",
    "ValidationError",
]


class SlakitError(Exception):
    """Base class of every error slakit raises on purpose.

    :param message: the human-readable message; it names the field and value.
    :param field: the name of the offending field, when there is one.
    :param value: the offending value, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value

    def __str__(self) -> str:
        return self.message


class ValidationError(SlakitError, ValueError):
    """Input that cannot be accepted; nothing was written."""


class NaiveDatetimeError(ValidationError):
    """A datetime without a time zone crossed the API."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(
            f"{field} must be a timezone-aware datetime, got naive {value!r} "
            "(attach a zone, e.g. datetime(..., tzinfo=ZoneInfo('UTC')))",
            field=field,
            value=value,
        )


class NonexistentTimeError(ValidationError):
    """A wall-clock time that a zone skipped (a spring-forward gap) was given without an offset."""


class AmbiguousTimeError(ValidationError):
    """A wall-clock time that a zone read twice (a fall-back repeat) was given without an
    offset, and nothing said which of the two instants it means."""


class InvalidSLAError(ValidationError):
    """``sla_minutes`` is not a positive number of minutes up to ten years."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(
            f"{field} must be a positive number of minutes, at most ten years "
            f"(5259600), got {value!r}",
            field=field,
            value=value,
        )


class InvalidTimestampError(ValidationError):
    """A timestamp is out of order, e.g. a response before the start."""


class InvalidStepError(ValidationError):
    """A policy step's ``at`` or ``do`` cannot be parsed."""


class ConfigError(ValidationError):
    """Configuration is malformed: a missing key, a wrong type, an unknown option."""


class UnknownPolicyError(SlakitError, LookupError):
    """A handoff names a policy that is not configured."""

    def __init__(self, name: str | None, known: list[str] | None = None) -> None:
        known_txt = ", ".join(sorted(known)) if known is not None else ""
        if name is None:
            message = f"no policy given and several are configured; pass one of: {known_txt}"
        else:
            message = f"unknown policy {name!r}" + (f"; configured: {known_txt}" if known else "")
        super().__init__(message, field="policy", value=name)


class UnknownCalendarError(SlakitError, LookupError):
    """A policy names a calendar that is not configured."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        known_txt = f"; configured: {', '.join(sorted(known))}" if known is not None else ""
        super().__init__(f"unknown calendar {name!r}{known_txt}", field="calendar", value=name)


class UnknownAdapterError(SlakitError, LookupError):
    """No installed plugin registers an adapter of that kind and name."""

    def __init__(self, kind: str, name: str, installed: list[str]) -> None:
        inst = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"no {kind} adapter named {name!r}; installed: {inst}",
            field="adapter",
            value=name,
        )
        self.kind = kind
        self.installed = sorted(installed)


class UnknownHandoffError(SlakitError, LookupError):
    """No handoff with that id exists in the store."""

    def __init__(self, handoff_id: str) -> None:
        super().__init__(f"unknown handoff id {handoff_id!r}", field="id", value=handoff_id)


class InvalidGroupKeyError(ValidationError):
    """A report's ``by`` key is neither a known handoff field nor ``attributes.NAME``."""


class UnknownBreachReasonError(ValidationError):
    """``tag_breach`` was given a reason outside the configured taxonomy."""


class DuplicateHandoffError(SlakitError):
    """A handoff id was started twice with different content."""


class InvalidTransitionError(SlakitError):
    """An event does not apply to the handoff's state (e.g. responding to a cancelled one)."""


class ConcurrentUpdateError(SlakitError):
    """Another writer changed the handoff first (compare-and-set lost); retry the event."""


class CalendarError(ValidationError):
    """Base class of calendar configuration errors."""


class UnknownTimezoneError(CalendarError):
    """The calendar's ``timezone`` is not an IANA zone name."""


class InvalidHoursError(CalendarError):
    """An ``hours`` entry is not ``HH:MM-HH:MM`` or is out of range."""


class OverlappingIntervalsError(CalendarError):
    """Two opening intervals of a calendar overlap."""


class UnknownHolidayCountryError(CalendarError):
    """python-holidays does not know the country or subdivision."""


class InvalidRRuleError(CalendarError):
    """A ``closed`` entry is neither a date nor a valid RFC 5545 RRULE."""


class CalendarClosedError(SlakitError):
    """The calendar has no open time within its search horizon."""


class AdapterError(SlakitError):
    """An adapter failed in a way the caller should see (not a bug in slakit)."""


class StoreError(AdapterError):
    """A record store failed."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached."""


class SchemaVersionError(StoreError):
    """The store's schema is newer than this version of slakit understands."""


class NotifyError(AdapterError):
    """A notifier could not deliver a notification."""


class TransientNotifyError(NotifyError):
    """Delivery failed but may succeed later; the outbox retries with backoff.

    :param retry_after: seconds the peer asked us to wait, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentNotifyError(NotifyError):
    """Delivery can never succeed (bad credentials, unknown user); dead-letter at once."""
