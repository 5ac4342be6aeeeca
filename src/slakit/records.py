"""Rows a step leaves behind: escalations, notifications in the outbox, trace lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import attrs

from slakit import _build
from slakit._time import from_iso, to_iso
from slakit.handoff import Handoff

__all__ = [
    "Escalation",
    "LazyPayload",
    "Notification",
    "OutboxItem",
    "OutboxState",
    "PurgeCounts",
    "StepApplication",
    "StepPayload",
    "StoreSummary",
    "TraceRecord",
]


T = TypeVar("T")


def _positional(cls: type[T]) -> Callable[..., T]:
    """A constructor taking every field in order, with no converters or validators.

    For values the engine built itself (mappings already read-only); input
    from elsewhere goes through the class's own ``__init__``.
    """
    return _build.positional(cls, [a.name for a in attrs.fields(cls)])  # type: ignore[arg-type]


def _frozen_map(value: Any) -> Mapping[str, Any]:
    if type(value) is MappingProxyType or isinstance(value, LazyPayload):
        return value  # already read-only; sharing it saves a copy per row
    return MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class TraceRecord:
    """One trace line: what happened to which handoff, by which rule, with what outcome.

    ``rule`` names the policy rule (``"start"``, ``"respond"``, ``"step:2x"``,
    ``"deliver"``…), ``action`` what was done (``"notify:owner"``,
    ``"mark_breached"``, ``"skip"``…), ``actor`` who did it (a person, or
    ``"engine"``), ``outcome`` how it ended (``"ok"``, ``"sent"``, ``"retry"``,
    ``"dead"``, ``"skipped"``…) and ``detail`` anything else as a mapping.
    """

    #: Every field in order, with no converters or validators (the engine's own values).
    _trusted: ClassVar[Callable[..., TraceRecord]]

    trace_id: str
    handoff_id: str
    policy: str
    rule: str
    action: str
    actor: str
    at: datetime
    outcome: str
    detail: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_map, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping with ``at`` as ISO-8601 UTC text."""
        return {
            "trace_id": self.trace_id,
            "handoff_id": self.handoff_id,
            "policy": self.policy,
            "rule": self.rule,
            "action": self.action,
            "actor": self.actor,
            "at": to_iso(self.at),
            "outcome": self.outcome,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TraceRecord:
        """Inverse of :meth:`to_dict`."""
        at = data["at"]
        if isinstance(at, str):
            at = from_iso("at", at)
        return cls(
            trace_id=data["trace_id"],
            handoff_id=data["handoff_id"],
            policy=data["policy"],
            rule=data["rule"],
            action=data["action"],
            actor=data["actor"],
            at=at,
            outcome=data["outcome"],
            detail=data.get("detail") or {},
        )


class LazyPayload(Mapping[str, Any]):
    """A read-only payload mapping whose content is built the first time it is read.

    Notifiers that never look at the payload (a log line, a chat message
    with its own text) then cost nothing for it. Subclasses implement
    :meth:`_build`.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = None

    def _build(self) -> dict[str, Any]:
        raise NotImplementedError

    def _built(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = self._data = self._build()
        return data

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._built()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (sent to another process) as the plain dict it stands for.
        return (dict, (self._built(),))


class StepPayload(LazyPayload):
    """The payload of a step's notifications, built on first read.

    ``{"handoff": <the record as the step leaves it, as Handoff.to_dict()>,
    "step": ..., "stage": ..., "link": ...}``. Every notification of one step
    shares one payload; a store that keeps the record's own row anyway can
    store the payload without building it (the SQLite store does).
    """

    __slots__ = ("handoff", "link", "stage", "step")

    def __init__(self, handoff: Handoff, step: str, stage: int, link: str) -> None:
        super().__init__()
        self.handoff = handoff
        self.step = step
        self.stage = stage
        self.link = link

    def _build(self) -> dict[str, Any]:
        return {
            "handoff": self.handoff.to_dict(),
            "step": self.step,
            "stage": self.stage,
            "link": self.link,
        }

    def __len__(self) -> int:
        return 4


@attrs.frozen(kw_only=True)
class Notification:
    """What a notifier is asked to deliver.

    :ivar idempotency_key: ``handoff:stage:action:recipient``; stable across
        retries and redeliveries, so a receiver can drop duplicates.
    :ivar notifier: the name of the notifier instance this row is routed to.
    :ivar payload: the handoff as JSON-ready data, plus the step's label.
    """

    #: Every field in order, with no converters or validators (the engine's own values).
    _trusted: ClassVar[Callable[..., Notification]]

    idempotency_key: str
    notifier: str
    recipient: str
    handoff_id: str
    stage: int
    step: str
    action: str
    subject: str
    text: str
    trace_id: str
    policy: str
    created_at: datetime
    payload: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_map, hash=False)


class OutboxState:
    """Outbox row states."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@attrs.frozen(kw_only=True)
class OutboxItem:
    """A notification in the outbox, with its delivery bookkeeping.

    ``lease_token`` is set by a claim; only the holder of the current token
    can complete the row (a fenced completion).
    """

    notification: Notification
    state: str = OutboxState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease_token: str | None = None
    lease_until: datetime | None = None
    last_error: str | None = None

    @property
    def key(self) -> str:
        """The row's identity: idempotency key plus notifier."""
        return outbox_key(self.notification.idempotency_key, self.notification.notifier)


def outbox_key(idempotency_key: str, notifier: str) -> str:
    """The unique identity of an outbox row."""
    return f"{notifier}|{idempotency_key}"


@attrs.frozen(kw_only=True)
class Escalation:
    """The row that makes a (handoff, stage) happen once: ``UNIQUE(handoff_id, stage)``."""

    #: Every field in order, with no converters or validators (the engine's own values).
    _trusted: ClassVar[Callable[..., Escalation]]

    handoff_id: str
    stage: int
    step: str
    applied_at: datetime
    outcome: str  # "applied" or "skipped"
    actions: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class StepApplication:
    """Everything one step writes, committed by :meth:`RecordStore.apply_step` at once.

    The store applies it only if the stored handoff still has
    ``expected_version`` and ``expected_stage``; otherwise nothing is written.
    """

    #: Every field in order, with no converters or validators (the engine's own values).
    _trusted: ClassVar[Callable[..., StepApplication]]

    handoff: Handoff
    expected_version: int
    expected_stage: int
    escalations: tuple[Escalation, ...]
    notifications: tuple[Notification, ...] = ()
    traces: tuple[TraceRecord, ...] = ()

    def to_debug(self) -> dict[str, Any]:
        """A compact description for logs."""
        return {
            "handoff": self.handoff.id,
            "stages": [e.stage for e in self.escalations],
            "notifications": [n.idempotency_key for n in self.notifications],
        }


# Positional constructors for the engine's hot path (see _positional).
TraceRecord._trusted = staticmethod(_positional(TraceRecord))
Notification._trusted = staticmethod(_positional(Notification))
Escalation._trusted = staticmethod(_positional(Escalation))
StepApplication._trusted = staticmethod(_positional(StepApplication))


@attrs.frozen(kw_only=True)
class StoreSummary:
    """How much work a store holds at ``now``, and how long the oldest has waited.

    Every figure comes from an index in the SQL stores, so a monitor can ask
    for it every minute on a large database.
    """

    now: datetime
    #: Handoffs stored, in any state.
    handoffs: int
    #: Handoffs whose timer runs (a next step is scheduled).
    timers: int
    #: Handoffs with a step due at ``now`` that no check has applied yet.
    due: int
    #: The oldest of those due times (``None`` when nothing is due).
    oldest_due_at: datetime | None
    #: The first due time after ``now`` (``None`` when no timer runs).
    next_due_at: datetime | None
    #: Outbox rows waiting to be sent (due now or scheduled for a retry).
    outbox_pending: int
    #: Pending rows whose next attempt is due at ``now``.
    outbox_due: int
    #: The oldest of those attempt times (``None`` when none is due).
    oldest_outbox_due_at: datetime | None
    #: Dead-lettered rows (``slakit requeue`` sends them again).
    outbox_dead: int

    @property
    def step_lag(self) -> timedelta:
        """How long the oldest due step has waited (zero when none is due)."""
        return timedelta(0) if self.oldest_due_at is None else self.now - self.oldest_due_at

    @property
    def delivery_lag(self) -> timedelta:
        """How long the oldest due notification has waited (zero when none is due)."""
        if self.oldest_outbox_due_at is None:
            return timedelta(0)
        return self.now - self.oldest_outbox_due_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping: datetimes as ISO-8601 UTC text, lags in seconds."""
        out: dict[str, Any] = {}
        for a in attrs.fields(StoreSummary):
            value = getattr(self, a.name)
            out[a.name] = to_iso(value) if isinstance(value, datetime) else value
        out["step_lag_seconds"] = self.step_lag.total_seconds()
        out["delivery_lag_seconds"] = self.delivery_lag.total_seconds()
        return out


@attrs.frozen(kw_only=True)
class PurgeCounts:
    """What a purge removed (or, for a dry run, would remove)."""

    handoffs: int = 0
    escalations: int = 0
    outbox: int = 0
    traces: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(
            handoffs=self.handoffs + other.handoffs,
            escalations=self.escalations + other.escalations,
            outbox=self.outbox + other.outbox,
            traces=self.traces + other.traces,
        )

    def to_dict(self) -> dict[str, int]:
        """The counts by table."""
        return attrs.asdict(self)
