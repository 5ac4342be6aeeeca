"""Helpers shared by SQL stores: column lists, row tuples, hit-rate groups, JSON.

The SQLite store and the PostgreSQL store (``slakit-postgres``) keep the same
tables with the same columns; only how a time or a JSON value is encoded
differs. So the builders here take the encoded values from the caller and
place them in column order. Nothing here imports a database driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from slakit.errors import DuplicateHandoffError
from slakit.handoff import Handoff
from slakit.records import Escalation, Notification, OutboxItem, TraceRecord

__all__ = [
    "BOOL_COLUMNS",
    "ESCALATION_COLUMNS",
    "GROUPABLE_COLUMNS",
    "NOTIFICATION_COLUMNS",
    "OUTBOX_COLUMNS",
    "TRACE_COLUMNS",
    "attribute_name",
    "check_batch_ids",
    "escalation_from_row",
    "escalation_row",
    "hit_rate_groups",
    "json_default",
    "notification_row",
    "outbox_from_row",
    "trace_from_row",
    "trace_row",
]

#: Handoff columns ``aggregate_hit_rate`` can group by in SQL.
GROUPABLE_COLUMNS = frozenset(
    {
        "policy",
        "owner",
        "backup_owner",
        "channel",
        "segment",
        "within_business_hours",
        "breached",
        "breach_reason",
        "responded_by",
        "stage",
        "cancel_reason",
    }
)
#: Groupable columns that hold booleans (an integer in SQLite).
BOOL_COLUMNS = frozenset({"breached", "within_business_hours"})

_ATTR_PREFIX = "attributes."


def attribute_name(key: str) -> str | None:
    """``NAME`` for a group key ``attributes.NAME``; ``None`` for any other key."""
    if key.startswith(_ATTR_PREFIX) and len(key) > len(_ATTR_PREFIX):
        return key[len(_ATTR_PREFIX) :]
    return None


#: The escalation columns, in :func:`escalation_row` order.
ESCALATION_COLUMNS: tuple[str, ...] = (
    "handoff_id",
    "stage",
    "step",
    "applied_at",
    "outcome",
    "actions",
)
#: The outbox columns a step writes, in :func:`notification_row` order.
NOTIFICATION_COLUMNS: tuple[str, ...] = (
    "notifier",
    "idempotency_key",
    "recipient",
    "handoff_id",
    "stage",
    "step",
    "action",
    "subject",
    "text",
    "trace_id",
    "policy",
    "created_at",
    "payload",
)
#: Every outbox column but ``seq``, as SQL text, in :func:`outbox_from_row` order.
OUTBOX_COLUMNS = ", ".join(
    (
        *NOTIFICATION_COLUMNS,
        "state",
        "attempts",
        "next_attempt_at",
        "lease_token",
        "lease_until",
        "last_error",
    )
)
#: Every trace column but ``seq``, as SQL text, in :func:`trace_row` order.
TRACE_COLUMNS = "trace_id, handoff_id, policy, rule, action, actor, at, outcome, detail"


def json_default(value: Any) -> Any:
    """The JSON form of values ``json`` cannot encode itself: dates, mappings, sets, tuples.

    :raises TypeError: for anything else (a store may catch it and fall back).
    """
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_batch_ids(handoffs: Sequence[Handoff]) -> None:
    """Refuse a batch that holds one id twice, before anything is written.

    :raises DuplicateHandoffError: naming the first repeated id.
    """
    seen: set[str] = set()
    for h in handoffs:
        if h.id in seen:
            raise DuplicateHandoffError(
                f"handoff id {h.id!r} appears twice in the batch", field="id", value=h.id
            )
        seen.add(h.id)


def escalation_row(e: Escalation, applied_at: Any, actions: Any) -> tuple[Any, ...]:
    """``e`` in :data:`ESCALATION_COLUMNS` order, with ``applied_at`` and ``actions`` encoded."""
    return (e.handoff_id, e.stage, e.step, applied_at, e.outcome, actions)


def escalation_from_row(
    r: Sequence[Any], applied_at: datetime, actions: Iterable[str]
) -> Escalation:
    """An escalation from a row in :data:`ESCALATION_COLUMNS` order, with its decoded values."""
    return Escalation(
        handoff_id=r[0],
        stage=r[1],
        step=r[2],
        applied_at=applied_at,
        outcome=r[4],
        actions=tuple(actions),
    )


def notification_row(n: Notification, created_at: Any, payload: Any) -> tuple[Any, ...]:
    """``n`` in :data:`NOTIFICATION_COLUMNS` order, with ``created_at`` and ``payload`` encoded."""
    return (
        n.notifier,
        n.idempotency_key,
        n.recipient,
        n.handoff_id,
        n.stage,
        n.step,
        n.action,
        n.subject,
        n.text,
        n.trace_id,
        n.policy,
        created_at,
        payload,
    )


def outbox_from_row(
    r: Sequence[Any],
    *,
    created_at: datetime,
    payload: Mapping[str, Any],
    next_attempt_at: datetime | None,
    lease_until: datetime | None,
) -> OutboxItem:
    """An item from ``seq`` and the :data:`OUTBOX_COLUMNS` columns, with its decoded values."""
    n = Notification(
        notifier=r[1],
        idempotency_key=r[2],
        recipient=r[3],
        handoff_id=r[4],
        stage=r[5],
        step=r[6],
        action=r[7],
        subject=r[8],
        text=r[9],
        trace_id=r[10],
        policy=r[11],
        created_at=created_at,
        payload=payload,
    )
    return OutboxItem(
        notification=n,
        state=r[14],
        attempts=r[15],
        next_attempt_at=next_attempt_at,
        lease_token=r[17],
        lease_until=lease_until,
        last_error=r[19],
    )


def trace_row(t: TraceRecord, at: Any, detail: Any) -> tuple[Any, ...]:
    """``t`` in :data:`TRACE_COLUMNS` order, with ``at`` and ``detail`` encoded."""
    return (t.trace_id, t.handoff_id, t.policy, t.rule, t.action, t.actor, at, t.outcome, detail)


def trace_from_row(r: Sequence[Any], at: datetime, detail: Mapping[str, Any]) -> TraceRecord:
    """A trace from a row in :data:`TRACE_COLUMNS` order, with its decoded values."""
    return TraceRecord(
        trace_id=r[0],
        handoff_id=r[1],
        policy=r[2],
        rule=r[3],
        action=r[4],
        actor=r[5],
        at=at,
        outcome=r[7],
        detail=detail,
    )


def hit_rate_groups(keys: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """The ``aggregate_hit_rate`` groups from the rows of its ``GROUP BY`` query.

    Each row holds the values of ``keys``, then six counts: live (not
    cancelled), excluded (cancelled), wall met, wall missed, business met,
    business missed; a NULL count is 0. A row with no handoffs (an empty
    window without keys) gives no group.
    """
    out: list[dict[str, Any]] = []
    width = len(keys)
    for r in rows:
        live, excluded, w_met, w_missed, b_met, b_missed = (int(v or 0) for v in r[width:])
        if live + excluded == 0:
            continue
        group: dict[str, Any] = {}
        for key, v in zip(keys, r, strict=False):
            group[key] = bool(v) if key in BOOL_COLUMNS and v is not None else v
        group.update(
            wall_met=w_met,
            wall_missed=w_missed,
            wall_pending=live - w_met - w_missed,
            business_met=b_met,
            business_missed=b_missed,
            business_pending=live - b_met - b_missed,
            excluded=excluded,
        )
        out.append(group)
    return out
