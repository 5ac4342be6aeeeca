"""Rows a step leaves behind: escalations, notifications in the outbox, trace lines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from slakit._time import from_iso, to_iso
from slakit.handoff import Handoff

__all__ = [
    "Escalation",
    "Notification",
    "OutboxItem",
    "OutboxState",
    "StepApplication",
    "TraceRecord",
]


def _frozen_map(value: Any) -> Mapping[str, Any]:
    if type(value) is MappingProxyType:
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


@attrs.frozen(kw_only=True)
class Notification:
    """What a notifier is asked to deliver.

    :ivar idempotency_key: ``handoff:stage:action:recipient``; stable across
        retries and redeliveries, so a receiver can drop duplicates.
    :ivar notifier: the name of the notifier instance this row is routed to.
    :ivar payload: the handoff as JSON-ready data, plus the step's label.
    """

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
