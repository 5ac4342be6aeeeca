"""The handoff record: one thing whose clock is running.

A :class:`Handoff` is a frozen value. The engine changes state with
:func:`attrs.evolve` and writes the new value back through the store with a
compare-and-set on :attr:`Handoff.version`.
"""

from __future__ import annotations

import json
import math
import operator
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

from slakit import _build
from slakit._time import from_iso, optional_aware, validate_sla
from slakit.errors import InvalidTimestampError, ValidationError

__all__ = ["Handoff", "Status", "attributes_json", "new_trace_id", "is_w3c_trace_id"]

_TRACE_RE = re.compile(r"^[0-9a-f]{32}$")
_ids = random.Random()  # seeded from os.urandom
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)
_getrandbits = _ids.getrandbits


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zeros.

    Trace ids need to be unique, not secret: like OpenTelemetry's own id
    generator this draws from a Mersenne Twister, a private one seeded from
    ``os.urandom`` (and again in a forked child), so it costs a fraction of a
    system call per id and ``random.seed()`` elsewhere cannot repeat ids.
    """
    while True:
        bits = _getrandbits(128)
        if bits:
            return f"{bits:032x}"


def is_w3c_trace_id(value: str) -> bool:
    """Whether ``value`` is a valid W3C trace-context trace id."""
    return bool(_TRACE_RE.match(value)) and value != "0" * 32


class Status:
    """The states a handoff can be in (plain strings, stable in stores and JSON)."""

    OPEN = "open"
    PAUSED = "paused"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


def _aware(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # The common cases first, cheaply: None, or a datetime with a working offset.
    if value is None or (type(value) is datetime and value.utcoffset() is not None):
        return
    optional_aware(attribute.name, value)


def _non_empty_str(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            f"{attribute.name} must be a non-empty string, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _optional_text(field: str, value: Any) -> str | None:
    """``value`` when it is text or ``None``.

    :raises ValidationError: naming ``field`` otherwise.
    """
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {value!r}", field=field, value=value)
    return value


def _optional_str(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _optional_text(attribute.name, value)


def _sla(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        validate_sla(attribute.name, value, limit=math.inf)


def _freeze_attributes(value: Any) -> Mapping[str, Any]:
    if type(value) is MappingProxyType:
        return value  # already frozen (evolve passes it through)
    if value is None:
        return MappingProxyType({})
    if type(value) is dict:
        return MappingProxyType(value.copy())
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"attributes must be a mapping, got {value!r}", field="attributes", value=value
        )
    return MappingProxyType(dict(value))


def _sla_converter(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


_DATETIME_FIELDS = (
    "started_at",
    "first_response_at",
    "completed_at",
    "cancelled_at",
    "stopped_at",
    "next_due_at",
    "deadline_at",
    "wall_deadline_at",
    "business_deadline_at",
    "paused_at",
    "ingested_at",
)


#: Attributes as stored: JSON data only (no NaN or infinities, nothing JSON lacks).
_encode_attributes = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def attributes_json(h: Handoff, where: str) -> str:
    """``h.attributes`` as the JSON text a store keeps.

    Every store takes the same values: text, finite numbers, booleans, null,
    lists and mappings, so code written against one store behaves the same on
    another.

    :param where: the store, for the message (``"SQLite"``).
    :raises ValidationError: naming the first attribute that is not JSON data.
    """
    attributes = h.attributes
    try:
        return _attributes_text(attributes)
    except (TypeError, ValueError, RecursionError):
        for key, value in attributes.items():
            try:
                _encode_attributes(value)
            except RecursionError:
                raise ValidationError(
                    f"attributes[{key!r}] of handoff {h.id!r} is nested too deeply to be "
                    f"stored in {where}",
                    field=f"attributes.{key}",
                    value=type(value).__name__,
                ) from None
            except (TypeError, ValueError):
                raise ValidationError(
                    f"attributes[{key!r}] of handoff {h.id!r} must be JSON data to be "
                    f"stored in {where} (text, finite numbers, booleans, null, lists, "
                    f"mappings), got {value!r}",
                    field=f"attributes.{key}",
                    value=value,
                ) from None
            if not _utf8({key: value}):
                raise ValidationError(
                    f"attributes[{key!r}] of handoff {h.id!r} holds a lone surrogate, "
                    "which is not Unicode text and no store can encode",
                    field=f"attributes.{key}",
                    value=value,
                ) from None
            if "\x00" in str(key) or _holds_nul(value):
                raise ValidationError(
                    f"attributes[{key!r}] of handoff {h.id!r} holds a NUL character, "
                    "which not every store can keep (PostgreSQL text cannot)",
                    field=f"attributes.{key}",
                    value=value,
                ) from None
        raise


def _attributes_text(attributes: Mapping[str, Any]) -> str:
    """The JSON text of an attribute mapping every store keeps (``{}`` when empty).

    :raises TypeError, ValueError: for a value that is not JSON data, or text with
        NUL; :func:`attributes_json` names the attribute.
    """
    if not attributes:
        return "{}"
    text = _encode_attributes(dict(attributes))
    # JSON spells NUL so; a text holding "\\u0000" itself is rarer, and checked.
    if "\\u0000" in text and _holds_nul(dict(attributes)):
        raise ValueError("NUL in attributes")
    if not text.isascii():
        text.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return text


def _utf8(value: Any) -> bool:
    """Whether a JSON value's text encodes as UTF-8 (holds no lone surrogate)."""
    try:
        _encode_attributes(value).encode()
    except UnicodeEncodeError:
        return False
    return True


def _holds_nul(value: Any) -> bool:
    """Whether a JSON value has NUL in a text or a key, at any depth."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any("\x00" in str(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _same_attributes(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two attribute mappings hold the same data once stored.

    Stores keep attributes as JSON, where a tuple reads back as a list and a
    number as a key reads back as text; so ``{"k": (1, 2)}`` given again
    matches ``{"k": [1, 2]}`` as stored.
    """
    if dict(a) == dict(b):
        return True
    try:
        return bool(
            json.loads(_encode_attributes(dict(a))) == json.loads(_encode_attributes(dict(b)))
        )
    except (TypeError, ValueError):  # not JSON data: only plain equality counts
        return False


@attrs.frozen(kw_only=True)
class Handoff:
    """One record whose SLA clock is running.

    The ten fields of the operations playbook are ``owner``, ``backup_owner``,
    ``sla_minutes``, ``started_at``, ``first_response_at``, ``completed_at``,
    ``breached``, ``breach_reason``, ``trace_id`` and ``within_business_hours``.
    The rest is bookkeeping the engine keeps so that every step fires once and
    every report can be computed from stored columns.
    """

    id: str = attrs.field(validator=_non_empty_str)
    policy: str = attrs.field(validator=_non_empty_str)
    started_at: datetime = attrs.field(validator=_aware)
    owner: str | None = attrs.field(default=None, validator=_optional_str)
    backup_owner: str | None = attrs.field(default=None, validator=_optional_str)
    sla_minutes: float | None = attrs.field(default=None, converter=_sla_converter, validator=_sla)
    first_response_at: datetime | None = attrs.field(default=None, validator=_aware)
    responded_by: str | None = attrs.field(default=None, validator=_optional_str)
    completed_at: datetime | None = attrs.field(default=None, validator=_aware)
    cancelled_at: datetime | None = attrs.field(default=None, validator=_aware)
    cancel_reason: str | None = attrs.field(default=None, validator=_optional_str)
    breached: bool = False
    breach_reason: str | None = attrs.field(default=None, validator=_optional_str)
    trace_id: str = attrs.field(factory=new_trace_id, validator=_non_empty_str)
    within_business_hours: bool | None = None
    channel: str | None = attrs.field(default=None, validator=_optional_str)
    segment: str | None = attrs.field(default=None, validator=_optional_str)
    stage: int = 0
    #: The instant the policy's stop event (first response or completion) happened.
    stopped_at: datetime | None = attrs.field(default=None, validator=_aware)
    #: When the next step is due; ``None`` when nothing more can fire.
    next_due_at: datetime | None = attrs.field(default=None, validator=_aware)
    #: The 1x deadline on the policy's basis, pauses included.
    deadline_at: datetime | None = attrs.field(default=None, validator=_aware)
    wall_deadline_at: datetime | None = attrs.field(default=None, validator=_aware)
    business_deadline_at: datetime | None = attrs.field(default=None, validator=_aware)
    #: Set while the clock is paused.
    paused_at: datetime | None = attrs.field(default=None, validator=_aware)
    #: Total paused time so far, in wall seconds and in open (business) seconds.
    paused_seconds: float = 0.0
    paused_business_seconds: float = 0.0
    #: Time to the stop event net of pauses, written when the stop event arrives.
    wall_elapsed_seconds: float | None = None
    business_elapsed_seconds: float | None = None
    ingested_at: datetime | None = attrs.field(default=None, validator=_aware)
    attributes: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_freeze_attributes, hash=False
    )
    version: int = 0

    def __attrs_post_init__(self) -> None:
        for name in ("first_response_at", "completed_at", "cancelled_at", "stopped_at"):
            value: datetime | None = getattr(self, name)
            if value is not None and value < self.started_at:
                raise InvalidTimestampError(
                    f"{name} {value.isoformat()} is before started_at "
                    f"{self.started_at.isoformat()} for handoff {self.id!r}",
                    field=name,
                    value=value,
                )
        if self.stage < 0:
            raise ValidationError(
                f"stage must be >= 0, got {self.stage!r}", field="stage", value=self.stage
            )

    @property
    def status(self) -> str:
        """One of :class:`Status`: cancelled, stopped, paused or open."""
        if self.cancelled_at is not None:
            return Status.CANCELLED
        if self.stopped_at is not None:
            return Status.STOPPED
        if self.paused_at is not None:
            return Status.PAUSED
        return Status.OPEN

    @property
    def is_active(self) -> bool:
        """Whether the clock can still run (neither stopped nor cancelled)."""
        return self.cancelled_at is None and self.stopped_at is None

    @property
    def sla(self) -> timedelta:
        """``sla_minutes`` as a timedelta.

        :raises ValidationError: when the record has no ``sla_minutes`` yet.
        """
        if self.sla_minutes is None:
            raise ValidationError(
                f"handoff {self.id!r} has no sla_minutes", field="sla_minutes", value=None
            )
        return timedelta(minutes=self.sla_minutes)

    def same_content(self, other: Handoff) -> bool:
        """Whether ``other`` describes the same start event (used to make ``start`` idempotent)."""
        keys = (
            "id",
            "policy",
            "owner",
            "backup_owner",
            "channel",
            "segment",
        )
        if any(getattr(self, k) != getattr(other, k) for k in keys):
            return False
        if self.started_at != other.started_at:
            return False
        if other.sla_minutes is not None and self.sla_minutes != other.sla_minutes:
            return False
        return _same_attributes(self.attributes, other.attributes)

    def _replace(self, **changes: Any) -> Handoff:
        """A copy with ``changes``, *without* validation: for values the engine computed.

        Input from outside (events, config, plugin actions) goes through
        :func:`attrs.evolve` and the validators instead.
        """
        return replace_fields(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: datetimes as ISO-8601 UTC text."""
        out = dict(zip(_FIELD_NAMES, _values_of(self), strict=True))
        for name in _DATETIME_FIELDS:
            value = out[name]
            if value is not None:
                if value.tzinfo is not UTC:
                    value = value.astimezone(UTC)
                out[name] = value.isoformat()
        out["attributes"] = dict(self.attributes)
        out["status"] = self.status
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Handoff:
        """Build a handoff from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {a.name for a in attrs.fields(Handoff)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                continue
            if key in _DATETIME_FIELDS and isinstance(value, str):
                value = from_iso(key, value)
            kwargs[key] = value
        return cls(**kwargs)


_FIELD_NAMES = tuple(a.name for a in attrs.fields(Handoff))
#: Every field's value, in field order, as one tuple.
_values_of: Callable[[Handoff], tuple[Any, ...]] = operator.attrgetter(*_FIELD_NAMES)


#: A handoff from every field's value in field order (one sequence), with no
#: validation or conversion: for values validated once already (a store's own
#: rows, the engine's own copies); anything from outside goes through Handoff(...).
_from_values: Callable[[Sequence[Any]], Handoff] = _build.packed(Handoff, _FIELD_NAMES)

#: ``replace_fields(h, **changes)``: what ``h._replace(**changes)`` does, one call
#: less (the engine's hot path calls it directly).
replace_fields: Callable[..., Handoff] = _build.replacer(Handoff, _FIELD_NAMES)
