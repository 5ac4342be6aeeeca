"""The engine: lifecycle events, due-step checks, outbox delivery, and the run loop."""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from slakit import _capture
from slakit._gc import paused
from slakit._time import ensure_aware, validate_sla
from slakit.abc import Notifier, RecordStore, TraceSink, resend_window
from slakit.clock import Clock, SystemClock
from slakit.errors import (
    CalendarClosedError,
    ConcurrentUpdateError,
    ConfigError,
    DuplicateHandoffError,
    InvalidTimestampError,
    InvalidTransitionError,
    PermanentNotifyError,
    SchemaVersionError,
    SlakitError,
    StoreError,
    TransientNotifyError,
    UnknownBreachReasonError,
    UnknownPolicyError,
    ValidationError,
)
from slakit.handoff import (
    Handoff,
    _from_values,
    _optional_text,
    _same_attributes,
    new_trace_id,
    replace_fields,
)
from slakit.notify import positive_seconds
from slakit.plugins import Plugins, get_plugins
from slakit.policy import Policy, Step, StepContext, run_actions
from slakit.records import (
    Escalation,
    Notification,
    OutboxItem,
    OutboxState,
    PurgeCounts,
    StepApplication,
    StepPayload,
    StoreSummary,
    TraceRecord,
    _positional,
)

__all__ = ["AppliedStep", "CheckResult", "DeliveryResult", "Engine", "LoggingNotifier"]

log = logging.getLogger("slakit.engine")

ENGINE_ACTOR = "engine"

#: Trace lines an engine holds for a failing sink, to send again, before it drops
#: the oldest (the store keeps every line; ``slakit traces --emit`` resends a window).
SINK_BACKLOG = 100_000
_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: Characters an id or an owner may not hold: they would split a log line, a CSV
#: row or a chat message, and no CRM issues them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: Half of a UTF-16 pair on its own: Python text can hold one, UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: start_many record keys that carry history already known.
_HISTORY_KEYS = (
    "first_response_at",
    "responded_by",
    "completed_at",
    "cancelled_at",
    "cancel_reason",
)
_HISTORY_KEY_SET = frozenset(_HISTORY_KEYS)

#: The longest ``Retry-After`` a delivery honours, in seconds: one day.
MAX_RETRY_AFTER = 86_400.0

#: The longest error text kept on an outbox row and its trace line, in characters.
MAX_ERROR_TEXT = 2_000

#: Event times, start times and the ``now`` of a check or delivery must come
#: before this instant; the room above it keeps deadlines and leases in range.
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class LoggingNotifier(Notifier):
    """The notifier an engine uses when none is configured: logs each notification."""

    def __init__(self, logger: str = "slakit.notify") -> None:
        self.name = "log"
        self.logger = logging.getLogger(logger)

    def send(self, notification: Notification) -> None:
        """Log the notification at INFO."""
        self.logger.info("→ %s: %s", notification.recipient, notification.text)


@attrs.frozen
class AppliedStep:
    """One (handoff, stage) the check applied, or skipped when coalescing."""

    handoff_id: str
    stage: int
    step: str
    actions: tuple[str, ...]
    outcome: str  # "applied" | "skipped"
    due_at: datetime


_applied_step = _positional(AppliedStep)


@attrs.frozen
class CheckResult:
    """What one :meth:`Engine.check` did.

    :ivar applied: the steps applied (and skipped, when a policy coalesces).
    :ivar lost: claims another writer beat us to (a response landed first, or
        another checker applied the step).
    :ivar errors: handoffs that could not be processed (e.g. unknown policy).
    """

    now: datetime
    applied: tuple[AppliedStep, ...] = ()
    lost: int = 0
    errors: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """Steps applied (skips not counted)."""
        return sum(1 for a in self.applied if a.outcome == "applied")


@attrs.frozen
class _Plan:
    """One planned step: what to write, and what to report once it is written."""

    app: StepApplication
    records: list[AppliedStep]
    stage: int
    step: Step


@attrs.frozen
class DeliveryResult:
    """What one :meth:`Engine.deliver` did."""

    now: datetime
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Engine:
    """Applies policies to handoffs in a store: events, checks and deliveries.

    :param store: where records live (default: a new in-memory store).
    :param policies: policies by name (a mapping, or any iterable of :class:`Policy`).
    :param notifiers: where notifications go (default: a logging notifier).
    :param trace_sinks: where trace lines go, in addition to the store.
    :param clock: where "now" comes from (default: :class:`SystemClock`).
    :param breach_reasons: the breach-reason taxonomy (name → description);
        when given, :meth:`tag_breach` accepts only these names.
    :param max_attempts: delivery attempts before a notification is dead-lettered.
    :param backoff_base: seconds before the first retry; doubles each attempt.
    :param backoff_cap: the longest wait between attempts, in seconds.
    :param batch_size: rows claimed per store round trip.
    :param claim_lease: seconds a claim on a due handoff keeps others away.
    :param outbox_lease: seconds a claim on an outbox row keeps others away.
    """

    def __init__(
        self,
        store: RecordStore | None = None,
        policies: Mapping[str, Policy] | Iterable[Policy] | None = None,
        notifiers: Iterable[Notifier] | None = None,
        trace_sinks: Iterable[TraceSink] = (),
        clock: Clock | None = None,
        *,
        breach_reasons: Mapping[str, str] | None = None,
        plugins: Plugins | None = None,
        worker_id: str | None = None,
        max_attempts: int = 8,
        backoff_base: float = 30.0,
        backoff_cap: float = 3600.0,
        batch_size: int = 500,
        claim_lease: float = 60.0,
        outbox_lease: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        if store is None:
            from slakit.adapters.memory import MemoryStore

            store = MemoryStore()
        self.store = store
        if policies is None:
            policies = [Policy.default()]
        if isinstance(policies, Mapping):
            self.policies: dict[str, Policy] = dict(policies)
            _check_kind("policies", self.policies.values(), Policy)
        else:
            policies = list(policies)
            _check_kind("policies", policies, Policy)  # before reading their names
            self.policies = {p.name: p for p in policies}
        self.notifiers: list[Notifier] = (
            list(notifiers) if notifiers is not None else [LoggingNotifier()]
        )
        if not self.notifiers:
            self.notifiers = [LoggingNotifier()]
        _check_duck("notifiers", self.notifiers, "send")
        self._notifier_by_name: dict[str, Notifier] = {}
        for i, n in enumerate(self.notifiers):
            name = n.name or type(n).__name__
            if name in self._notifier_by_name:
                name = f"{name}#{i}"
                n.name = name
            self._notifier_by_name[name] = n
        # Notifiers written as send(notification, idempotency_key) get the key too.
        self._send_with_key = {
            name: _takes_key(n.send) for name, n in self._notifier_by_name.items()
        }
        self.trace_sinks = list(trace_sinks)
        _check_duck("trace_sinks", self.trace_sinks, "emit")
        # Lines each failing sink has not taken yet (by id of the sink), in order.
        self._sink_backlog: dict[int, list[TraceRecord]] = {}
        self._sink_lock = threading.RLock()
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise ConfigError(
                f"clock must have a now() method (slakit.SystemClock, slakit.ManualClock), "
                f"got {clock!r}",
                field="clock",
                value=clock,
            )
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.breach_reasons = dict(breach_reasons) if breach_reasons else {}
        self._plugins = plugins
        if worker_id is not None and (
            not isinstance(worker_id, str) or not worker_id.strip() or not worker_id.isprintable()
        ):
            raise ValidationError(
                f"worker_id must be one line of text, got {worker_id!r}",
                field="worker_id",
                value=worker_id,
            )
        self.worker_id = worker_id or _default_worker_id()
        self.max_attempts = _whole_number("max_attempts", max_attempts)
        self.batch_size = _whole_number("batch_size", batch_size)
        self.backoff_base = positive_seconds(None, "backoff_base", backoff_base)
        self.backoff_cap = positive_seconds(None, "backoff_cap", backoff_cap)
        self.claim_lease = positive_seconds(None, "claim_lease", claim_lease)
        self.outbox_lease = positive_seconds(None, "outbox_lease", outbox_lease)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._running = False
        self._wake = threading.Event()
        self._setup_done = False
        self.config_path: Path | None = None
        self.config: Mapping[str, Any] = {}
        self.calendars: dict[str, Any] = {}
        self._start_details: dict[tuple[str | None, str | None], Mapping[str, Any]] = {}

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        clock: Clock | None = None,
        plugins: Plugins | None = None,
        **overrides: Any,
    ) -> Engine:
        """Build an engine from ``slakit.toml`` (a path) or the same shape as a mapping.

        Adapters are found by name through the plugin manager.

        :raises ConfigError: for malformed config.
        :raises UnknownAdapterError: for an adapter no installed plugin provides.
        """
        from slakit.config import build_engine

        return build_engine(source, clock=clock, plugins=plugins, **overrides)

    @property
    def plugins(self) -> Plugins:
        """The plugin wrapper this engine uses for actions and observers."""
        if self._plugins is None:
            self._plugins = get_plugins()
        return self._plugins

    def setup(self) -> Engine:
        """Create or migrate the store's schema (done once, lazily, by every method)."""
        if not self._setup_done:
            self.store.setup()
            self._setup_done = True
        return self

    def close(self) -> None:
        """Close the store, the notifiers and the trace sinks (held lines get one last try)."""
        if self._sink_backlog:
            _quietly(lambda: self._emit(()))
            for sink in self.trace_sinks:  # still refused: say what to resend
                with self._sink_lock:
                    held = self._sink_backlog.pop(id(sink), None)
                if held:
                    since, until = resend_window(held)
                    log.error(
                        "trace sink %r still failed at close; of its %d held line(s) it "
                        "took none or only a first part; the store keeps them all: slakit "
                        "traces --emit --since %s --until %s sends them again (a part the "
                        "sink took may then arrive twice)",
                        sink.name,
                        len(held),
                        since,
                        until,
                    )
        for n in self.notifiers:
            _quietly(n.close)
        for s in self.trace_sinks:
            _quietly(s.close)
        self.store.close()

    def __enter__(self) -> Engine:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------

    def policy(self, name: str) -> Policy:
        """The configured policy called ``name``.

        :raises UnknownPolicyError: listing the configured policies.
        """
        try:
            return self.policies[name]
        except KeyError:
            raise UnknownPolicyError(name, list(self.policies)) from None

    def _now(self, at: datetime | None, field: str = "at") -> datetime:
        if at is None:
            field, at = "clock.now()", self.clock.now()
        try:
            when = ensure_aware(field, at).astimezone(UTC)
        except OverflowError:  # an instant near datetime.max in a zone west of UTC
            when = LATEST
        if when < LATEST:
            return when
        raise InvalidTimestampError(
            f"{field} {at.isoformat()} is out of range: slakit takes instants before "
            f"{LATEST.isoformat()}, so that deadlines and leases can be computed",
            field=field,
            value=at,
        )

    def _trace(
        self,
        h: Handoff,
        rule: str,
        action: str,
        at: datetime,
        outcome: str = "ok",
        actor: str | None = None,
        **detail: Any,
    ) -> TraceRecord:
        return TraceRecord(
            trace_id=h.trace_id,
            handoff_id=h.id,
            policy=h.policy,
            rule=rule,
            action=action,
            actor=actor or ENGINE_ACTOR,
            at=at,
            outcome=outcome,
            detail=MappingProxyType({k: v for k, v in detail.items() if v is not None}),
        )

    @staticmethod
    def _notification_trace(
        n: Notification, actor: str, at: datetime, outcome: str, **detail: Any
    ) -> TraceRecord:
        """A trace line about notification ``n`` (a delivery attempt, a requeue);
        ``None`` details are left out."""
        return TraceRecord(
            trace_id=n.trace_id,
            handoff_id=n.handoff_id,
            policy=n.policy,
            rule=f"step:{n.step}",
            action=n.action,
            actor=actor,
            at=at,
            outcome=outcome,
            detail={k: v for k, v in detail.items() if v is not None},
        )

    def _emit(self, traces: Iterable[TraceRecord]) -> None:
        """Hand committed lines to every sink; a sink that fails gets them again later.

        A failing sink's lines are held (up to :data:`SINK_BACKLOG`) and sent
        before the next lines, in order, on the next emit or run-loop tick.
        """
        batch = list(traces)
        if batch:
            _capture.capture_traces(batch)
        elif not self._sink_backlog:
            return
        with self._sink_lock:  # one emit at a time keeps each sink's lines in order
            for sink in self.trace_sinks:
                held = self._sink_backlog.get(id(sink))
                lines = held + batch if held else batch
                if not lines:
                    continue
                try:
                    sink.emit(lines)
                except Exception as exc:
                    self._hold(sink, lines, first=not held, error=exc)
                    continue
                if held:
                    del self._sink_backlog[id(sink)]
                    log.warning(
                        "trace sink %r works again: %d held line(s) sent late",
                        sink.name,
                        len(held),
                    )

    def _hold(
        self, sink: TraceSink, lines: list[TraceRecord], *, first: bool, error: Exception
    ) -> None:
        """Keep a failing sink's ``lines`` to send again, dropping the oldest past the cap."""
        if first:
            # One line (a CLI user sees it on stderr); the traceback at DEBUG.
            log.error(
                "trace sink %r failed (%s: %s); holding %d line(s) to send again (the store "
                "keeps every line)",
                sink.name,
                type(error).__name__,
                error,
                len(lines),
            )
            log.debug("trace sink %r failure", sink.name, exc_info=error)
        else:
            log.warning("trace sink %r still fails; %d line(s) held", sink.name, len(lines))
        if len(lines) > SINK_BACKLOG:
            dropped = lines[: len(lines) - SINK_BACKLOG]
            lines = lines[len(dropped) :]
            since, until = resend_window(dropped)
            log.error(
                "trace sink %r: dropped its %d oldest held line(s); the store keeps them: "
                "slakit traces --emit --since %s --until %s sends them again",
                sink.name,
                len(dropped),
                since,
                until,
            )
        self._sink_backlog[id(sink)] = lines

    # -- events ----------------------------------------------------------------

    def _build(
        self,
        id: str,
        *,
        policy: str | None,
        owner: str | None,
        backup_owner: str | None,
        sla_minutes: float | None,
        started_at: datetime | None,
        trace_id: str | None,
        channel: str | None,
        segment: str | None,
        attributes: Mapping[str, Any],
        now: datetime,
    ) -> Handoff:
        if policy is None:
            if len(self.policies) != 1:
                raise UnknownPolicyError(None, list(self.policies))
            policy = next(iter(self.policies))
        pol = self.policy(policy)
        if not (
            (type(id) is not str or id.isprintable())
            and (type(owner) is not str or owner.isprintable())
            and (type(backup_owner) is not str or backup_owner.isprintable())
            and (type(channel) is not str or channel.isprintable())
            and (type(segment) is not str or segment.isprintable())
        ):
            # Rare: something unprintable (a control character, or harmless Unicode
            # such as a non-breaking space, which the pattern lets through).
            _refuse_control_characters(
                id=id, owner=owner, backup_owner=backup_owner, channel=channel, segment=segment
            )
        if (type(owner) is str and not owner.strip()) or (
            type(backup_owner) is str and not backup_owner.strip()
        ):
            _refuse_blank(owner=owner, backup_owner=backup_owner)
        if sla_minutes is not None:
            sla_minutes = validate_sla("sla_minutes", sla_minutes)
        start = self._now(started_at, "started_at") if started_at is not None else now
        sla = sla_minutes if sla_minutes is not None else pol.sla_minutes
        try:
            deadline, wall, business, first_due = pol.timers(start, sla)
        except OverflowError:
            raise _past_the_calendar(id, start, sla, sla_minutes) from None
        except CalendarClosedError as exc:  # a start outside the years a calendar covers
            raise InvalidTimestampError(
                f"started_at {start.isoformat()} of handoff {id!r}: {exc}",
                field="started_at",
                value=start,
            ) from None
        if backup_owner is None:
            backup_owner = pol.backup_owner
        if (
            type(id) is str
            and id.strip()
            and (owner is None or type(owner) is str)
            and (backup_owner is None or type(backup_owner) is str)
            and (channel is None or type(channel) is str)
            and (segment is None or type(segment) is str)
            and (trace_id is None or (type(trace_id) is str and trace_id.strip()))
            and type(attributes) is dict
        ):
            # The common case, every value of a plain type: the checks above are
            # the validators' own, so the record is built without running them
            # again. Anything else goes through Handoff(...) and its messages.
            return _from_values(
                (
                    id,
                    pol.name,
                    start,
                    owner,
                    backup_owner,
                    float(sla),
                    None,  # first_response_at
                    None,  # responded_by
                    None,  # completed_at
                    None,  # cancelled_at
                    None,  # cancel_reason
                    False,  # breached
                    None,  # breach_reason
                    trace_id or new_trace_id(),
                    pol.calendar.is_open(start),
                    channel,
                    segment,
                    0,  # stage
                    None,  # stopped_at
                    first_due,
                    deadline,
                    wall,
                    business,
                    None,  # paused_at
                    0.0,  # paused_seconds
                    0.0,  # paused_business_seconds
                    None,  # wall_elapsed_seconds
                    None,  # business_elapsed_seconds
                    now,  # ingested_at
                    # The callers pass a dict of their own (start's **attributes,
                    # _prepare's leftover keys), so it needs no copy.
                    MappingProxyType(attributes) if attributes else _EMPTY,
                    1,  # version
                )
            )
        return Handoff(
            id=id,
            policy=pol.name,
            started_at=start,
            owner=owner,
            backup_owner=backup_owner,
            sla_minutes=sla,
            trace_id=trace_id or new_trace_id(),
            channel=channel,
            segment=segment,
            within_business_hours=pol.calendar.is_open(start),
            ingested_at=now,
            attributes=attributes,
            version=1,
            deadline_at=deadline,
            wall_deadline_at=wall,
            business_deadline_at=business,
            next_due_at=first_due,
        )

    def start(
        self,
        id: str,
        policy: str | None = None,
        owner: str | None = None,
        backup_owner: str | None = None,
        sla_minutes: float | None = None,
        started_at: datetime | None = None,
        trace_id: str | None = None,
        channel: str | None = None,
        segment: str | None = None,
        **attributes: Any,
    ) -> Handoff:
        """Start a handoff's clock.

        Starting the same id again with the same content returns the stored
        handoff (idempotent); with different content it raises.

        :param id: your record's id (a lead id, a ticket number).
        :param policy: the policy name; may be omitted when exactly one is configured.
        :param sla_minutes: this record's SLA; the policy's default when ``None``.
        :param started_at: when the clock started (default: now); may be in the past.
        :param attributes: anything else to keep on the record (e.g. ``email=...``);
            a mapping given as ``attributes={...}`` is merged in, as in :meth:`start_many`.
        :raises UnknownPolicyError, InvalidSLAError, NaiveDatetimeError, ValidationError:
            for bad input; nothing is written.
        :raises DuplicateHandoffError: when ``id`` exists with different content.
        """
        self.setup()
        now = self._now(None)
        extra = attributes.pop("attributes", None)
        if extra is not None:  # start(..., attributes={...}), as start_many takes it
            attributes = _merge_attributes(id, extra, attributes)
        h = self._build(
            id,
            policy=policy,
            owner=owner,
            backup_owner=backup_owner,
            sla_minutes=sla_minutes,
            started_at=started_at,
            trace_id=trace_id,
            channel=channel,
            segment=segment,
            attributes=attributes,
            now=now,
        )
        trace = self._trace(
            h,
            "start",
            "start",
            now,
            owner=h.owner,
            backup_owner=h.backup_owner,
            sla_minutes=h.sla_minutes,
            deadline_at=h.deadline_at.isoformat() if h.deadline_at else None,
            within_business_hours=h.within_business_hours,
        )
        try:
            stored = self.store.insert(h, [trace])
        except DuplicateHandoffError:
            existing = self.store.get(id)
            candidate = attrs.evolve(
                h,
                sla_minutes=sla_minutes,
                trace_id=existing.trace_id,
                started_at=h.started_at if started_at is not None else existing.started_at,
            )
            if self.same_start(existing, candidate):
                return existing
            raise DuplicateHandoffError(
                f"handoff id {id!r} already exists with different content "
                f"({_first_difference(self.as_started(existing), h)})",
                field="id",
                value=id,
            ) from None
        self._emit([trace])
        return stored

    def same_start(self, stored: Handoff, given: Handoff) -> bool:
        """Whether ``given`` repeats the start of ``stored`` (an idempotent start).

        Steps may have moved the owners since (``reassign:backup``), so they
        are compared as the record started, from its start trace line.
        """
        if stored.same_content(given):
            return True
        return (
            stored.owner != given.owner or stored.backup_owner != given.backup_owner
        ) and self.as_started(stored).same_content(given)

    def as_started(self, stored: Handoff) -> Handoff:
        """``stored`` with the owners it started with, as its start trace line gives them.

        A record whose start line is gone (purged traces) or predates the
        line's ``backup_owner`` keeps what it lacks from ``stored``.
        """
        for line in self.store.traces(stored.id):
            if line.action == "start":
                detail = line.detail
                return stored._replace(
                    owner=detail.get("owner"),
                    backup_owner=detail.get("backup_owner", stored.backup_owner),
                )
        return stored

    def start_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Start many handoffs in one store transaction (bulk ingest, backfill).

        Each record is a mapping of :meth:`start`'s arguments; it may also
        carry ``first_response_at``, ``completed_at``, ``cancelled_at`` (and
        ``responded_by``, ``cancel_reason``) for history already known.

        :returns: how many were inserted.
        :raises SlakitError: for the first bad record; nothing is written.
        """
        self.setup()
        now = self._now(None)
        handoffs: list[Handoff] = []
        traces: list[TraceRecord] = []
        prepare = self._prepare
        with paused():  # many new records and no reference cycles
            for rec in records:
                prepare(rec, now, handoffs, traces)
            count = self.store.insert_many(handoffs, traces)
        self._emit(traces)
        return count

    def start_prepared(self, prepared: Iterable[tuple[Handoff, Sequence[TraceRecord]]]) -> int:
        """Write records :meth:`prepare` built, in one store transaction.

        For callers that validate row by row first (``slakit import`` reports
        every bad row before writing any) and would otherwise build each
        record twice. The records are written as they are.

        :returns: how many were inserted.
        :raises DuplicateHandoffError: when an id exists or repeats; nothing is written.
        """
        self.setup()
        handoffs: list[Handoff] = []
        traces: list[TraceRecord] = []
        for h, lines in prepared:
            handoffs.append(h)
            traces.extend(lines)
        return self._insert_many(handoffs, traces)

    def _insert_many(self, handoffs: list[Handoff], traces: list[TraceRecord]) -> int:
        """One store transaction for a batch of new records, then their trace lines to sinks."""
        count = self.store.insert_many(handoffs, traces)
        self._emit(traces)
        return count

    def prepare(
        self, record: Mapping[str, Any], *, now: datetime | None = None
    ) -> tuple[Handoff, list[TraceRecord]]:
        """Validate one :meth:`start_many` record and build what it would write.

        Nothing is written; use it to check input row by row (``slakit import`` does).

        :raises SlakitError: naming the field and value when the record is bad.
        """
        handoffs: list[Handoff] = []
        traces: list[TraceRecord] = []
        self._prepare(record, self._now(now), handoffs, traces)
        return handoffs[0], traces

    def _prepare(
        self,
        record: Mapping[str, Any],
        when: datetime,
        handoffs: list[Handoff],
        traces: list[TraceRecord],
    ) -> None:
        """:meth:`prepare`, appending to ``handoffs`` and ``traces`` (bulk ingest's loop)."""
        if type(record) is not dict and not isinstance(record, Mapping):
            raise ValidationError(
                f"a start_many record must be a mapping of start()'s arguments, got {record!r}",
                field="record",
                value=record,
            )
        data = dict(record)
        pop = data.pop
        hid = pop("id", None)
        if not isinstance(hid, str) or not hid:
            raise ValidationError(
                f"record needs a non-empty 'id', got {hid!r}", field="id", value=hid
            )
        policy = pop("policy", None)
        owner = pop("owner", None)
        backup_owner = pop("backup_owner", None)
        sla_minutes = pop("sla_minutes", None)
        started_at = pop("started_at", None)
        trace_id = pop("trace_id", None)
        channel = pop("channel", None)
        segment = pop("segment", None)
        history: dict[str, Any] | None = None
        if not _HISTORY_KEY_SET.isdisjoint(data):
            history = {k: v for k in _HISTORY_KEYS if (v := pop(k, None)) is not None}
        extra = pop("attributes", None)
        # What is left over, in a dict of our own, with any "attributes" mapping.
        attributes = data if extra is None else _merge_attributes(hid, extra, data)
        h = self._build(
            hid,
            policy=policy,
            owner=owner,
            backup_owner=backup_owner,
            sla_minutes=sla_minutes,
            started_at=started_at,
            trace_id=trace_id,
            channel=channel,
            segment=segment,
            attributes=attributes,
            now=when,
        )
        later: list[TraceRecord] = []
        if history:
            h, later = self._apply_history(h, history, when)
        handoffs.append(h)
        traces.append(
            TraceRecord._trusted(
                h.trace_id,
                h.id,
                h.policy,
                "start",
                "start",
                ENGINE_ACTOR,
                when,
                "ok",
                self._start_detail(h.owner, h.backup_owner),
            )
        )
        if later:
            traces.extend(later)

    def _start_detail(self, owner: str | None, backup: str | None) -> Mapping[str, Any]:
        """The start trace's detail, the owners it started with: one read-only mapping per pair.

        A bulk ingest has many records and few owners; sharing the mapping
        saves two objects per record, and a store encodes it once per batch.
        """
        key = (owner, backup)
        detail = self._start_details.get(key)
        if detail is None:
            if len(self._start_details) >= 4096:
                self._start_details.clear()
            detail = self._start_details[key] = MappingProxyType(
                {"owner": owner, "backup_owner": backup}
            )
        return detail

    def _apply_history(
        self, h: Handoff, history: Mapping[str, Any], now: datetime
    ) -> tuple[Handoff, list[TraceRecord]]:
        # Each value is checked here as Handoff's validators would (aware, not
        # before the start, text or None), so the copies skip them.
        pol = self.policy(h.policy)
        traces: list[TraceRecord] = []
        if history.get("cancelled_at") is not None:
            return self._cancelled_history(h, pol, history)
        # In the order they happened, as the events would have recorded them: a
        # completion before the first response stops the clock at the completion.
        events: list[tuple[datetime, int, str]] = []
        if history.get("first_response_at") is not None:
            at = self._history_at(h, history["first_response_at"], "first_response_at")
            events.append((at, 0, "respond"))
        if history.get("completed_at") is not None:
            at = self._history_at(h, history["completed_at"], "completed_at")
            events.append((at, 1, "complete"))
        for at, _, kind in sorted(events):
            if kind == "respond":
                by = _text("responded_by", history.get("responded_by"))
                h = h._replace(first_response_at=at, responded_by=by)
                traces.append(self._trace(h, "respond", "respond", at, actor=by))
                if pol.stop == "first_response" and h.stopped_at is None:
                    h = _stopped(pol, h, at)
            else:
                h = h._replace(completed_at=at)
                traces.append(self._trace(h, "complete", "complete", at))
                if h.stopped_at is None:
                    h = _stopped(pol, h, at)
        return h, traces

    def _cancelled_history(
        self, h: Handoff, pol: Policy, history: Mapping[str, Any]
    ) -> tuple[Handoff, list[TraceRecord]]:
        """A cancelled record's history, held to the rules the events follow.

        A cancel is refused once the clock stopped, and nothing is recorded
        after a cancel, so only a response that left the clock running (``stop
        = "completion"``) can come with it, and only at or before the cancel.
        """
        at = self._history_at(h, history["cancelled_at"], "cancelled_at")
        reason = _text("cancel_reason", history.get("cancel_reason"))
        traces: list[TraceRecord] = []
        if history.get("completed_at") is not None:
            raise InvalidTransitionError(
                f"handoff {h.id!r} has both completed_at and cancelled_at; a completed "
                "handoff cannot be cancelled, and a cancelled one cannot be completed",
                field="cancelled_at",
                value=at,
            )
        if history.get("first_response_at") is not None:
            responded = self._history_at(h, history["first_response_at"], "first_response_at")
            if responded > at:
                raise InvalidTransitionError(
                    f"handoff {h.id!r} has first_response_at {responded.isoformat()} after "
                    f"cancelled_at {at.isoformat()}; a cancelled handoff cannot be responded to",
                    field="first_response_at",
                    value=responded,
                )
            if pol.stop == "first_response":
                raise InvalidTransitionError(
                    f"handoff {h.id!r} was answered at {responded.isoformat()}, which stopped "
                    f"its clock under policy {pol.name!r}; it cannot be cancelled at "
                    f"{at.isoformat()}",
                    field="cancelled_at",
                    value=at,
                )
            by = _text("responded_by", history.get("responded_by"))
            h = h._replace(first_response_at=responded, responded_by=by)
            traces.append(self._trace(h, "respond", "respond", responded, actor=by))
        h = h._replace(cancelled_at=at, cancel_reason=reason, next_due_at=None)
        traces.append(self._trace(h, "cancel", "cancel", at))
        return h, traces

    def _history_at(self, h: Handoff, value: Any, field: str) -> datetime:
        """A history time from a record: aware, in UTC, not before the start."""
        at = self._now(value, field)
        self._check_at(h, at, field)
        return at

    def _event(
        self,
        id: str,
        at: datetime | None,
        change: Callable[[Handoff, Policy, datetime], tuple[Handoff, list[TraceRecord]] | None],
    ) -> Handoff:
        """Read, change at the event's time, compare-and-set; retry when another writer
        got in between.

        Without ``at``, the time is read after the record: a start another thread
        committed just before is then never later than the event.
        """
        given = self._now(at) if at is not None else None
        self.setup()
        for _ in range(20):
            h = self.store.get(id)
            pol = self.policy(h.policy)
            result = change(h, pol, given if given is not None else self._now(None))
            if result is None:
                return h
            new, traces = result
            try:
                stored = self.store.update(new, h.version, traces)
            except ConcurrentUpdateError:
                continue
            self._emit(traces)
            return stored
        raise ConcurrentUpdateError(
            f"handoff {id!r} kept changing under us; try again", field="id", value=id
        )

    def _check_at(self, h: Handoff, at: datetime, field: str) -> None:
        if at < h.started_at:
            raise InvalidTimestampError(
                f"{field} {at.isoformat()} is before started_at {h.started_at.isoformat()} "
                f"for handoff {h.id!r}",
                field=field,
                value=at,
            )

    def respond(self, id: str, at: datetime | None = None, by: str | None = None) -> Handoff:
        """Record the first human response. Later responses are ignored.

        With ``stop = "first_response"`` this stops the clock; steps not yet
        claimed never fire.

        :raises InvalidTransitionError: when the handoff is cancelled.
        :raises InvalidTimestampError: when ``at`` is before the start.
        :raises ValidationError: when ``by`` is not one line of text.
        """
        by = _text("responded_by", by)

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            self._check_at(h, when, "first_response_at")
            if h.cancelled_at is not None:
                raise InvalidTransitionError(
                    f"handoff {id!r} was cancelled; it cannot be responded to",
                    field="id",
                    value=id,
                )
            if h.first_response_at is not None:
                return None
            new = attrs.evolve(h, first_response_at=when, responded_by=by)
            if pol.stop == "first_response" and new.stopped_at is None:
                new = _stopped(pol, new, when)
            met = new.deadline_at is not None and when <= new.deadline_at
            return new, [
                self._trace(
                    new, "respond", "respond", when, actor=by, met=met if new.stopped_at else None
                )
            ]

        return self._event(id, at, change)

    def complete(self, id: str, at: datetime | None = None) -> Handoff:
        """Record completion. It stops the clock whatever the policy's stop event.

        :raises InvalidTransitionError: when the handoff is cancelled.
        """

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            self._check_at(h, when, "completed_at")
            if h.cancelled_at is not None:
                raise InvalidTransitionError(
                    f"handoff {id!r} was cancelled; it cannot be completed", field="id", value=id
                )
            if h.completed_at is not None:
                return None
            new = attrs.evolve(h, completed_at=when)
            if new.stopped_at is None:
                new = _stopped(pol, new, when)
            return new, [self._trace(new, "complete", "complete", when)]

        return self._event(id, at, change)

    def cancel(self, id: str, at: datetime | None = None, reason: str | None = None) -> Handoff:
        """Cancel a handoff: no more steps; it leaves the hit-rate denominator.

        :raises InvalidTransitionError: when its clock already stopped.
        :raises ValidationError: when ``reason`` is not one line of text.
        """
        reason = _text("cancel_reason", reason)

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            self._check_at(h, when, "cancelled_at")
            if h.cancelled_at is not None:
                return None
            if h.stopped_at is not None:
                raise InvalidTransitionError(
                    f"handoff {id!r} already stopped at {h.stopped_at.isoformat()}; "
                    "it cannot be cancelled",
                    field="id",
                    value=id,
                )
            if h.first_response_at is not None and when < h.first_response_at:
                # A cancelled handoff cannot be responded to, so no history has one
                # responded after its cancel (start_many and import refuse it too).
                raise InvalidTimestampError(
                    f"cancelled_at {when.isoformat()} is before first_response_at "
                    f"{h.first_response_at.isoformat()} for handoff {id!r}",
                    field="cancelled_at",
                    value=when,
                )
            if h.paused_at is not None:
                h = _unpaused(pol, h, max(when, h.paused_at))
            new = attrs.evolve(h, cancelled_at=when, cancel_reason=reason, next_due_at=None)
            return new, [self._trace(new, "cancel", "cancel", when, reason=reason)]

        return self._event(id, at, change)

    def pause(self, id: str, at: datetime | None = None) -> Handoff:
        """Stop the clock for a while (waiting on the customer); :meth:`resume` restarts it.

        Pausing a paused handoff changes nothing (the first pause time stays).

        :raises InvalidTransitionError: when the handoff is stopped or cancelled.
        """

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            self._check_at(h, when, "paused_at")
            if not h.is_active:
                raise InvalidTransitionError(
                    f"handoff {id!r} is {h.status}; only a running handoff can be paused",
                    field="id",
                    value=id,
                )
            if h.paused_at is not None:
                return None
            if h.paused_seconds or h.paused_business_seconds:
                self._after_last_resume(h, when)
            new = attrs.evolve(h, paused_at=when, next_due_at=None)
            return new, [self._trace(new, "pause", "pause", when)]

        return self._event(id, at, change)

    def _after_last_resume(self, h: Handoff, when: datetime) -> None:
        """:raises InvalidTimestampError: when ``when`` is before ``h``'s last resume: a
        pause dated inside time already paused would count that time twice."""
        last = max((t.at for t in self.store.traces(h.id) if t.action == "resume"), default=None)
        if last is not None and when < last:
            raise InvalidTimestampError(
                f"paused_at {when.isoformat()} is before the last resume of handoff "
                f"{h.id!r} at {last.isoformat()}; that time was paused already",
                field="paused_at",
                value=when,
            )

    def resume(self, id: str, at: datetime | None = None) -> Handoff:
        """Restart a paused clock; deadlines move by the paused time.

        Resuming a running handoff changes nothing and returns it as stored.

        :raises InvalidTransitionError: when the handoff is stopped or cancelled.
        :raises InvalidTimestampError: when ``at`` is before the pause.
        """

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            if not h.is_active:
                # A stopped or cancelled clock stays where it ended, paused or not.
                raise InvalidTransitionError(
                    f"handoff {id!r} is {h.status}; it cannot be resumed", field="id", value=id
                )
            if h.paused_at is None:
                return None
            if when < h.paused_at:
                raise InvalidTimestampError(
                    f"resume time {when.isoformat()} is before paused_at "
                    f"{h.paused_at.isoformat()} for handoff {id!r}",
                    field="at",
                    value=when,
                )
            new = _unpaused(pol, h, when)
            return new, [
                self._trace(
                    new,
                    "resume",
                    "resume",
                    when,
                    deadline_at=new.deadline_at.isoformat() if new.deadline_at else None,
                )
            ]

        return self._event(id, at, change)

    def tag_breach(self, id: str, reason: str, at: datetime | None = None) -> Handoff:
        """Record why a handoff breached (a name from the ``[breach_reasons]`` taxonomy).

        :raises UnknownBreachReasonError: when a taxonomy is configured and
            ``reason`` is not in it.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise UnknownBreachReasonError(
                f"breach reason must be a non-empty string, got {reason!r}",
                field="reason",
                value=reason,
            )
        if not reason.isprintable():
            _refuse_control_characters(reason=reason)
        if self.breach_reasons and reason not in self.breach_reasons:
            raise UnknownBreachReasonError(
                f"unknown breach reason {reason!r}; configured: "
                f"{', '.join(sorted(self.breach_reasons))}",
                field="reason",
                value=reason,
            )

        def change(
            h: Handoff, pol: Policy, when: datetime
        ) -> tuple[Handoff, list[TraceRecord]] | None:
            if h.breach_reason == reason:
                return None
            new = attrs.evolve(h, breach_reason=reason)
            return new, [self._trace(new, "tag", "tag_breach", when, reason=reason)]

        return self._event(id, at, change)

    def get(self, id: str) -> Handoff:
        """The stored handoff.

        :raises UnknownHandoffError: when there is none.
        """
        self.setup()
        return self.store.get(id)

    # -- check -----------------------------------------------------------------

    def check(self, now: datetime | None = None) -> CheckResult:
        """Apply every step that is due at ``now`` (default: the clock's now).

        Each (handoff, stage) is applied exactly once across any number of
        engines sharing the store. Due handoffs are claimed in batches; each
        round plans every due step of each claimed handoff and hands the batch
        to the store, which writes every step in its own all-or-nothing unit.
        Overdue steps of one handoff fire in order unless the policy coalesces
        them (then the earlier ones are traced as skipped and only the latest
        runs).
        """
        self.setup()
        when = self.store.effective_now(self._now(now, "now"))
        started = time.monotonic()
        applied: list[AppliedStep] = []
        errors: list[str] = []
        with paused():  # records by the thousand and no reference cycles among them
            lost = self._check_loop(when, started, applied, errors)
        return CheckResult(now=when, applied=tuple(applied), lost=lost, errors=tuple(errors))

    def _check_loop(
        self, when: datetime, started: float, applied: list[AppliedStep], errors: list[str]
    ) -> int:
        """Claim and apply batch after batch until nothing is due; the steps lost."""
        lost = 0
        while not self._stopping():
            batch = self.store.claim_due(
                when, self.batch_size, self.worker_id, _lease(self.claim_lease, started)
            )
            if not batch:
                break
            progressed, lost_here, done = self._check_batch(batch, when, errors)
            lost += lost_here
            if done:
                self._emit([t for p in done for t in p.app.traces])
                observe = self.plugins.observes_steps()
                for p in done:
                    applied.extend(p.records)
                    if observe:
                        self._observe(p, when)
            if not progressed:
                break
        return lost

    def _check_batch(
        self, batch: Sequence[Handoff], when: datetime, errors: list[str]
    ) -> tuple[bool, int, list[_Plan]]:
        """Plan and write one claimed batch: whether it made progress, how many
        steps were lost to other writers, and the plans written."""
        lost = 0
        plans: list[_Plan] = []
        progressed = False
        for i, h in enumerate(batch):
            if self._stopping():
                # Stopping: hand back what this round has not planned yet.
                for rest in batch[i:]:
                    self.store.release(rest.id, self.worker_id)
                break
            try:
                plan = self._plan_next(h, when)
            except ConcurrentUpdateError:
                lost += 1
                continue
            except SlakitError as exc:
                # The claim stays leased, so this round does not spin on it.
                errors.append(f"{h.id}: {exc}")
                log.warning("handoff %r not processed: %s", h.id, exc)
                continue
            except Exception as exc:  # a plugin action's bug stops its handoff, not the check
                errors.append(f"{h.id}: {type(exc).__name__}: {exc}")
                log.exception("handoff %r not processed", h.id)
                continue
            if plan is None:
                progressed = True
                continue
            plans.append(plan)
            try:
                self._plan_following(plan, when, plans)
            except Exception:
                # The steps planned so far are written; the next round claims the
                # handoff again and reports what stopped the rest.
                log.debug("handoff %r: later due steps left to the next round", h.id)
        if not plans:
            return progressed, lost, []
        results = self.store.apply_steps([p.app for p in plans])
        done: list[_Plan] = []
        failed: str | None = None  # the handoff whose step just failed
        for p, ok in zip(plans, results, strict=True):
            if ok:
                done.append(p)
                failed = None
            elif p.app.handoff.id != failed:
                # A later step planned on a failed one was never the engine's to lose.
                lost += 1
                failed = p.app.handoff.id
        return progressed or bool(done), lost, done

    def _plan_following(self, plan: _Plan, now: datetime, plans: list[_Plan]) -> None:
        """Append to ``plans`` the handoff's further steps that are due at ``now``,
        each planned on the state the one before leaves.

        A handoff behind by several steps (catching up after downtime) has them
        all planned in the round that claims it, in firing order, rather than
        one per claim: the store writes them in order, each still its own
        compare-and-set on stage with its own escalation row. A coalescing
        policy's plan already covers every due step, so nothing is added for one.

        Only steps whose actions are all built in are planned this way. Their
        changes (owner, backup, breached, stage, timer) read back from any
        store as they were written, so the next step sees the record exactly
        as the next round would read it, and nothing they write can be refused
        where the claimed record was not. After a plugin action, which may
        change any field (the policy too), the next round reads the record
        back from the store first, as always.
        """
        pol = self.policy(plan.app.handoff.policy)
        if pol.coalesce or not plan.step._builtin:
            return
        h = plan.app.handoff
        while (
            h.next_due_at is not None
            and h.next_due_at <= now
            and h.is_active
            and h.paused_at is None
        ):
            steps, dues = pol._steps_and_dues(h)
            if h.stage >= len(steps) or dues[h.stage] > now:
                return  # the next round tidies the timer, as it would have
            if not steps[h.stage]._builtin:
                return  # planned on the record as read back, in the next round
            plan = self._plan(pol, h, steps, dues, h.stage, now)
            plans.append(plan)
            h = plan.app.handoff

    def _observe(self, plan: _Plan, now: datetime) -> None:
        step = plan.step
        try:
            self.plugins.step_applied(
                plan.app.handoff,
                plan.stage,
                step.at,
                list(step.raw_actions),
                now,
                self,
            )
        except Exception:
            log.exception("slakit_step_applied observer failed")

    def _plan_next(self, h: Handoff, now: datetime) -> _Plan | None:
        """The next step to apply to a claimed handoff, or ``None`` after tidying its timer.

        :raises ConcurrentUpdateError: when tidying lost to another writer.
        """
        pol = self.policy(h.policy)
        if not h.is_active or h.paused_at is not None or h.next_due_at is None:
            if h.next_due_at is not None:
                self.store.update(attrs.evolve(h, next_due_at=None), h.version)
            else:
                self.store.release(h.id, self.worker_id)
            return None
        try:
            steps, dues = pol._steps_and_dues(h)
        except OverflowError:
            raise _past_the_calendar(h.id, h.started_at, pol.effective_sla(h), None) from None
        if h.stage >= len(steps):
            # The policy lost steps since this record was scheduled: stop the timer.
            self.store.update(attrs.evolve(h, next_due_at=None), h.version)
            return None
        first = dues[h.stage]
        if first > now:
            # The policy or calendar changed since the record was scheduled.
            self.store.update(attrs.evolve(h, next_due_at=first.astimezone(UTC)), h.version)
            return None
        target = h.stage
        if pol.coalesce:
            while target + 1 < len(steps) and dues[target + 1] <= now:
                target += 1
        return self._plan(pol, h, steps, dues, target, now)

    def _plan(
        self,
        pol: Policy,
        h: Handoff,
        steps: Sequence[Step],
        dues: Sequence[datetime],
        target: int,
        now: datetime,
    ) -> _Plan:
        """The step at ``target`` (firing order) with its records; earlier due steps skipped."""
        traces: list[TraceRecord] = []
        escalations: list[Escalation] = []
        records: list[AppliedStep] = []
        for k in range(h.stage, target):
            skipped, skipped_due = steps[k], dues[k]
            actions = skipped.raw_actions
            traces.append(
                self._trace(
                    h,
                    f"step:{skipped.at}",
                    "skip",
                    now,
                    outcome="skipped",
                    stage=k,
                    due_at=skipped_due.astimezone(UTC).isoformat(),
                    reason="coalesced: a later step was also due",
                )
            )
            escalations.append(
                Escalation(
                    handoff_id=h.id,
                    stage=k,
                    step=skipped.at,
                    applied_at=now,
                    outcome="skipped",
                    actions=actions,
                )
            )
            records.append(AppliedStep(h.id, k, skipped.at, actions, "skipped", skipped_due))
        step, due_at = steps[target], dues[target]
        ctx = StepContext(handoff=h, policy=pol, step=step, stage=target, now=now)
        run_actions(ctx, self.plugins.actions())
        next_due = dues[target + 1].astimezone(UTC) if target + 1 < len(dues) else None
        # One copy for the whole step; the version is the one the store will write.
        new = replace_fields(
            ctx.handoff, stage=target + 1, next_due_at=next_due, version=h.version + 1
        )
        rule = f"step:{step.at}"
        late = (now - due_at).total_seconds()
        actions = step.raw_actions
        base: dict[str, Any] = {"stage": target, "due_at": due_at.astimezone(UTC).isoformat()}
        if late > 0:
            base["late_seconds"] = round(late, 3)
        shared = MappingProxyType(base)  # one read-only detail for every plain action
        trace = TraceRecord._trusted
        trace_id, hid, policy = new.trace_id, new.id, new.policy
        for raw in actions:
            extra = ctx.detail.get(raw)
            if extra:
                detail = MappingProxyType({**base, **extra})
                outcome = "skipped" if "skipped" in extra else "ok"
            else:
                detail, outcome = shared, "ok"
            traces.append(
                trace(trace_id, hid, policy, rule, raw, ENGINE_ACTOR, now, outcome, detail)
            )
        notifications: list[Notification] = []
        if ctx.notifications:
            # Receivers see the record as the step leaves it (breached, reassigned).
            payload = StepPayload(new, step.at, target, ctx.link())
            subject = f"[{pol.name}] {h.id}: step {step.at}"
            notification = Notification._trusted
            for action_raw, recipient, text in ctx.notifications:
                key = f"{h.id}:{target}:{action_raw}:{recipient}"
                for notifier_name in self._notifier_by_name:
                    notifications.append(
                        notification(
                            key,
                            notifier_name,
                            recipient,
                            h.id,
                            target,
                            step.at,
                            action_raw,
                            subject,
                            text,
                            h.trace_id,
                            h.policy,
                            now,
                            payload,
                        )
                    )
        escalations.append(Escalation._trusted(h.id, target, step.at, now, "applied", actions))
        records.append(_applied_step(h.id, target, step.at, actions, "applied", due_at))
        app = StepApplication._trusted(
            new,
            h.version,
            h.stage,
            tuple(escalations),
            _dedupe(notifications),
            tuple(traces),
        )
        return _Plan(app=app, records=records, stage=target, step=step)

    # -- deliver ---------------------------------------------------------------

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failure: capped exponential, with jitter.

        Half the delay is fixed and half is random ("equal jitter"), so
        retries spread out but never come back at once. A peer's
        ``Retry-After`` is a floor, honoured up to :data:`MAX_RETRY_AFTER`
        (a day): a peer asking for longer gets its retry a day later.
        """
        delay = float(min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempts - 1))))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)
        if retry_after is not None and math.isfinite(retry_after):
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def deliver(self, now: datetime | None = None) -> DeliveryResult:
        """Send every outbox notification that is due, through the notifiers.

        Each attempt is traced. A transient failure is retried later with
        capped exponential backoff and jitter; a permanent one, or the last
        attempt, dead-letters the row. No store lock is held while sending.
        """
        self.setup()
        when = self.store.effective_now(self._now(now, "now"))
        started = time.monotonic()
        sent = retried = dead = lost = 0
        while True:
            claimed_at = time.monotonic()
            items = self.store.claim_outbox(
                when, self.batch_size, self.worker_id, _lease(self.outbox_lease, started)
            )
            if not items:
                break
            # Start a send only while at least half the lease is left, so a slow
            # batch never sends a row whose lease another worker may have taken
            # over; rows not reached are handed back for the next claim.
            send_until = claimed_at + self.outbox_lease / 2
            done = 0
            for item in items:
                if self._stopping() or time.monotonic() >= send_until:
                    break
                done += 1
                outcome = self._deliver_one(item, when)
                if outcome == OutboxState.SENT:
                    sent += 1
                elif outcome == OutboxState.DEAD:
                    dead += 1
                elif outcome == "retry":
                    retried += 1
                else:
                    lost += 1
            if done < len(items):
                self._release_outbox(items[done:])
            if self._stopping() or done == 0:
                break  # done == 0: the claim alone used half the lease; try again later
        return DeliveryResult(now=when, sent=sent, retried=retried, dead=dead, lost=lost)

    def _release_outbox(self, items: Sequence[OutboxItem]) -> None:
        try:
            self.store.release_outbox(items)
        except SlakitError as exc:  # they come back when their lease runs out
            log.warning("could not hand back %d outbox row(s): %s", len(items), exc)

    def _deliver_one(self, item: OutboxItem, now: datetime) -> str:
        n = item.notification
        attempts = item.attempts + 1
        error: str | None = None
        retry_after: float | None = None
        permanent = False
        captured = _capture.capture_notification(n)
        notifier = self._notifier_by_name.get(n.notifier)
        if not captured:
            if notifier is None:
                permanent = True
                error = f"no notifier named {n.notifier!r} is configured"
            else:
                try:
                    if self._send_with_key.get(n.notifier):
                        notifier.send(n, n.idempotency_key)  # type: ignore[call-arg]
                    else:
                        notifier.send(n)
                except PermanentNotifyError as exc:
                    permanent, error = True, str(exc) or type(exc).__name__
                except TransientNotifyError as exc:
                    error, retry_after = str(exc) or type(exc).__name__, exc.retry_after
                except Exception as exc:  # a broken notifier is retried, not fatal
                    error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            error = _storable_error(error)
        next_at: datetime | None = None
        if error is None:
            state, outcome = OutboxState.SENT, OutboxState.SENT
        elif permanent or attempts >= self.max_attempts:
            state, outcome = OutboxState.DEAD, OutboxState.DEAD
        else:
            state, outcome = OutboxState.PENDING, "retry"
            next_at = now + timedelta(seconds=self.backoff(attempts, retry_after))
        trace = self._notification_trace(
            n,
            f"notifier:{n.notifier}" if not captured else "capture",
            now,
            outcome,
            idempotency_key=n.idempotency_key,
            recipient=n.recipient,
            attempt=attempts,
            error=error,
            next_attempt_at=next_at.isoformat() if next_at else None,
        )
        ok = self.store.complete_outbox(
            item,
            state=state,
            attempts=attempts,
            next_attempt_at=next_at,
            error=error,
            traces=[trace],
        )
        if not ok:
            log.warning("outbox lease lost for %s; another worker owns it", n.idempotency_key)
            return "lost"
        self._emit([trace])
        return outcome

    def requeue_dead(
        self,
        *,
        keys: Iterable[str] | None = None,
        handoff_id: str | None = None,
        notifier: str | None = None,
        now: datetime | None = None,
        by: str | None = None,
        open_only: bool = False,
        dry_run: bool = False,
    ) -> list[OutboxItem]:
        """Put dead-lettered notifications back in the queue, for the next :meth:`deliver`.

        Selects the outbox rows in state ``dead``, narrowed by ``keys``
        (idempotency keys), ``handoff_id`` and ``notifier``; each becomes
        pending again, due at ``now`` with a fresh budget of ``max_attempts``,
        and keeps its idempotency key, so a receiver that did get an earlier
        attempt can recognise the resend and drop it. Each requeue writes a trace
        line (``outcome = "requeued"``, ``actor = by`` or ``"operator"``) in
        the same transaction. A row that is no longer dead when the write
        happens (another operator requeued it) is left alone.

        :param open_only: leave out rows whose handoff has stopped or been
            cancelled since (an alert about a lead answered meanwhile is moot).
        :param dry_run: select and return the rows without changing anything.
        :returns: the dead rows requeued (as they were), in creation order.
        :raises UnknownHandoffError: when ``handoff_id`` names no handoff.
        :raises ValidationError: when a key names no outbox row, or ``by`` is not text.
        """
        self.setup()
        when = self.store.effective_now(self._now(now, "now"))
        actor = _text("by", by) or "operator"
        if isinstance(keys, str):
            keys = [keys]  # one key, not its characters
        wanted = None if keys is None else list(dict.fromkeys(keys))
        if handoff_id is not None:
            self.store.get(handoff_id)  # UnknownHandoffError for a typo
        dead = self.store.outbox(handoff_id=handoff_id, state=OutboxState.DEAD)
        if wanted is not None:
            found = {item.notification.idempotency_key for item in dead}
            if any(k not in found for k in wanted):
                # Keys of rows that are not dead are fine; unknown ones are typos. Only
                # this case reads the whole outbox.
                found.update(i.notification.idempotency_key for i in self.store.outbox(handoff_id))
                missing = next((k for k in wanted if k not in found), None)
                if missing is not None:
                    where = f" of handoff {handoff_id!r}" if handoff_id is not None else ""
                    raise ValidationError(
                        f"key {missing!r} names no outbox row{where}", field="key", value=missing
                    )
        chosen = [
            item
            for item in dead
            if (wanted is None or item.notification.idempotency_key in wanted)
            and (notifier is None or item.notification.notifier == notifier)
        ]
        if open_only and chosen:
            records = self.store.get_many({i.notification.handoff_id for i in chosen})
            chosen = [
                item
                for item in chosen
                if (h := records.get(item.notification.handoff_id)) is not None and h.is_active
            ]
        if dry_run or not chosen:
            return chosen
        lines = [
            self._notification_trace(
                n,
                actor,
                when,
                "requeued",
                idempotency_key=n.idempotency_key,
                notifier=n.notifier,
                recipient=n.recipient,
                attempts=item.attempts,
                error=item.last_error,
            )
            for item in chosen
            for n in (item.notification,)
        ]
        done = self.store.requeue_outbox(chosen, now=when, traces=lines)
        self._emit([line for line, ok in zip(lines, done, strict=True) if ok])
        self.wake()
        return [item for item, ok in zip(chosen, done, strict=True) if ok]

    def purge(
        self,
        before: datetime,
        *,
        dry_run: bool = False,
        batch_size: int = 1000,
        progress: Callable[[PurgeCounts], None] | None = None,
    ) -> PurgeCounts:
        """Delete handoffs that ended before ``before``, with all their rows.

        A handoff goes when it was stopped or cancelled before ``before`` and
        has no notification left to send; its escalations, outbox rows and
        trace lines go with it, in the same transaction. Open and paused
        handoffs stay. The work runs in transactions of ``batch_size``
        handoffs, so workers are never held up for long; ``progress`` is
        called after each. Reports no longer count what is purged.

        :param dry_run: count what would go; delete nothing.
        :returns: what was deleted (or would be).
        :raises ValidationError: when ``before`` is after now, or ``batch_size`` < 1.
        :raises StoreError: when the store cannot purge.
        """
        self.setup()
        ensure_aware("before", before)
        now = self.store.effective_now(self._now(None))
        if before > now:
            raise ValidationError(
                f"before {before.isoformat()} is after now ({now.isoformat()}): "
                "only what has already ended can be purged",
                field="before",
                value=before,
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(
                f"batch_size must be a whole number >= 1, got {batch_size!r}",
                field="batch_size",
                value=batch_size,
            )
        if dry_run:
            return self.store.purge(before, dry_run=True)
        total = PurgeCounts()
        while True:
            done = self.store.purge(before, limit=batch_size)
            if not done.handoffs:
                break
            total += done
            if progress is not None:
                progress(done)
        log.info("purged %d handoff(s) that ended before %s", total.handoffs, before.isoformat())
        return total

    def summary(self, now: datetime | None = None) -> StoreSummary:
        """How much work the store holds at ``now`` (default: the clock's now), and its age.

        Due steps and due notifications that have waited long mean no
        :meth:`run` loop (or not enough of them) is working the store; dead
        letters wait for :meth:`requeue_dead`. SQL stores answer from their
        indexes, so a monitor can ask every minute.
        """
        self.setup()
        return self.store.summary(self.store.effective_now(self._now(now, "now")))

    # -- run loop --------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> tuple[CheckResult, DeliveryResult]:
        """One ``check`` then one ``deliver``: both at ``now`` if given, else each at the
        clock's time when it starts (a long check does not age the delivery's leases)."""
        if now is not None:
            now = self._now(now, "now")
        return self.check(now), self.deliver(now)

    def wake(self) -> None:
        """Wake a sleeping :meth:`run` loop early (e.g. on a database notification)."""
        self._wake.set()

    def _stopping(self) -> bool:
        return self._running and self._stop.is_set()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current tick.

        A store with ``stop_waiting()`` (SQLite) is asked to give up waiting for
        a lock another process holds, so the loop does not outlive the stop by
        the store's whole retry budget; a transaction in flight still finishes.
        """
        self._stop.set()
        self._wake.set()
        self._store_waits(False)

    def _store_waits(self, wait: bool) -> None:
        stop_waiting = getattr(self.store, "stop_waiting", None)
        if callable(stop_waiting):
            stop_waiting(not wait)

    def run(
        self,
        *,
        interval: float = 60.0,
        max_ticks: int | None = None,
        on_tick: Callable[[CheckResult, DeliveryResult], None] | None = None,
    ) -> int:
        """Loop: check + deliver, then sleep until the next due time (at most ``interval``).

        Returns after :meth:`stop` (a signal handler may call it) once the
        current tick's transactions are finished. A tick that fails with a
        :class:`~slakit.errors.StoreError` (a database restarting, a network
        cut, a lock held too long) is logged and tried again after 1, 2, 4…
        seconds, at most ``interval``; the loop goes on once the store answers.
        Claims a failed tick left behind run out with their leases, so no step
        is lost or applied twice. With ``max_ticks`` the error is raised
        instead, as is :class:`~slakit.errors.SchemaVersionError` always.

        :returns: the number of ticks run.
        """
        ticks = 0
        failures = 0
        stalled = 0  # ticks in a row that found due work and could take none of it
        self._running = True
        try:
            while not self._stop.is_set():
                try:
                    self.setup()  # a store down or locked at start is an outage too
                    result = self.tick()
                    nxt = self.store.next_wakeup()
                except SchemaVersionError:
                    raise
                except StoreError as exc:
                    if max_ticks is not None:
                        raise
                    if self._stop.is_set():
                        log.info("stopped while the store was failing: %s", exc)
                        break
                    failures += 1
                    wait = min(interval, 2.0 ** min(failures - 1, 16))
                    log.warning(
                        "tick failed (%d in a row), trying again in %.0f s: %s",
                        failures,
                        wait,
                        exc,
                    )
                    self._sleep(wait)
                    continue
                if failures:
                    log.info("the store answers again after %d failed tick(s)", failures)
                    failures = 0
                ticks += 1
                self._emit(())  # lines a failing sink missed, even on an idle tick
                if on_tick is not None:
                    on_tick(*result)
                if max_ticks is not None and ticks >= max_ticks:
                    break
                wait = interval
                if nxt is not None:
                    wait = min(interval, max(0.0, (nxt - self._now(None)).total_seconds()))
                checked, delivered = result
                if (
                    wait <= 0
                    and not (checked.applied or checked.lost)
                    and not (
                        delivered.sent or delivered.retried or delivered.dead or delivered.lost
                    )
                ):
                    # Work is due that this tick could not take: leased by another
                    # worker (or one that died), or failing. Its lease runs out within
                    # claim_lease; back off until then instead of spinning.
                    stalled += 1
                    wait = min(interval, self.claim_lease, 2.0 ** min(stalled - 1, 16))
                else:
                    stalled = 0
                self._sleep(wait)
        finally:
            self._running = False
            self._stop.clear()
            self._store_waits(True)
        return ticks

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when :meth:`wake` or :meth:`stop` is called."""
        self._wake.clear()
        if not self._stop.is_set():
            self._wake.wait(max(seconds, 0.01))


def _timers(policy: Policy, h: Handoff) -> Handoff:
    """Recompute deadlines and ``next_due_at`` from the record's state."""
    sla = h.sla_minutes if h.sla_minutes is not None else policy.sla_minutes
    deadline, wall, business, due = policy.timers(
        h.started_at,
        sla,
        paused_seconds=h.paused_seconds,
        paused_business_seconds=h.paused_business_seconds,
        stage=h.stage,
    )
    running = h.is_active and h.paused_at is None
    return attrs.evolve(
        h,
        deadline_at=deadline,
        wall_deadline_at=wall,
        business_deadline_at=business,
        next_due_at=due if running else None,
    )


def _stopped(pol: Policy, h: Handoff, at: datetime) -> Handoff:
    """The handoff with its clock stopped at ``at``: elapsed times written.

    A clock stopped while paused ends its pause at ``at`` first, as a
    resume would: the paused time is added and the deadlines move by it,
    so the record is judged on the time its clock really ran.
    """
    if h.paused_at is not None:
        h = _unpaused(pol, h, max(at, h.paused_at))
    wall = (at - h.started_at) - timedelta(seconds=h.paused_seconds)
    business = pol.calendar.elapsed(h.started_at, at) - timedelta(seconds=h.paused_business_seconds)
    # Every caller has checked ``at`` against the start (as a response,
    # completion or history time), so the copy needs no validators.
    return h._replace(
        stopped_at=at,
        next_due_at=None,
        wall_elapsed_seconds=max(0.0, wall.total_seconds()),
        business_elapsed_seconds=max(0.0, business.total_seconds()),
    )


def _unpaused(pol: Policy, h: Handoff, at: datetime) -> Handoff:
    """``h`` with its pause ended at ``at``: paused time added, timers moved by it.

    A deadline the pause began after stays where it was: the record was
    late already, and a pause cannot rescue it. The steps still move.
    """
    paused_at = h.paused_at
    assert paused_at is not None
    new = _timers(
        pol,
        attrs.evolve(
            h,
            paused_at=None,
            paused_seconds=h.paused_seconds + (at - paused_at).total_seconds(),
            paused_business_seconds=h.paused_business_seconds
            + pol.calendar.elapsed(paused_at, at).total_seconds(),
        ),
    )
    wall, business = h.wall_deadline_at, h.business_deadline_at
    late_wall = wall is not None and paused_at > wall
    late_business = business is not None and paused_at > business
    # A pause that began exactly as the business clock ran out: the open time it
    # held ends before the resume, so adding it lands the deadline inside the
    # pause (at a closing time), late the instant the clock restarts. The clock
    # had nothing left, so the deadline is the resume, as on the wall basis.
    early_business = (
        not late_business and new.business_deadline_at is not None and new.business_deadline_at < at
    )
    if not (late_wall or late_business or early_business):
        return new
    wall = wall if late_wall else new.wall_deadline_at
    business = business if late_business else (at if early_business else new.business_deadline_at)
    return new._replace(
        wall_deadline_at=wall,
        business_deadline_at=business,
        deadline_at=wall if pol.basis == "wall" else business,
    )


def _past_the_calendar(
    hid: Any, start: datetime, sla: float | timedelta, given: float | None
) -> InvalidTimestampError:
    """The error for a record whose steps fall past the last date Python can hold."""
    if isinstance(sla, timedelta):
        sla = sla.total_seconds() / 60
    text = (
        f"handoff {hid!r}: a {sla:g}-minute SLA from {start.isoformat()} puts its "
        "deadlines or steps past the year 9999"
    )
    if given is not None:
        return InvalidTimestampError(text, field="sla_minutes", value=given)
    return InvalidTimestampError(text, field="started_at", value=start)


def _takes_key(send: Callable[..., Any]) -> bool:
    """Whether a notifier's ``send`` takes the idempotency key as a second argument:
    one it requires, or one named ``idempotency_key``."""
    try:
        params = list(inspect.signature(send).parameters.values())
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds]
    if len(positional) < 2:
        return False
    second = positional[1]
    return second.default is inspect.Parameter.empty or second.name == "idempotency_key"


def _lease(seconds: float, started: float) -> float:
    """A lease of ``seconds`` from now, for a claim stamped with the time taken at ``started``.

    A check or delivery takes its time once and claims batch after batch
    against it; a store sets ``lease_until`` from that time. After a long
    run, a lease of ``seconds`` from the start would already be over (or
    nearly) for other workers, who would take the rows over while this one
    is still sending them. The time since the start is added back.
    """
    return seconds + max(0.0, time.monotonic() - started)


def _whole_number(field: str, value: Any) -> int:
    """:raises ValidationError: unless ``value`` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            f"{field} must be a whole number of at least 1, got {value!r}",
            field=field,
            value=value,
        )
    return value


def _storable_error(text: str) -> str:
    """A notifier's error as every store can keep it: NUL (which PostgreSQL text
    refuses) spelt out, and at most :data:`MAX_ERROR_TEXT` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > MAX_ERROR_TEXT:
        text = text[: MAX_ERROR_TEXT - 1] + "…"
    return text


def _refuse_blank(**fields: Any) -> None:
    """:raises ValidationError: naming the first field that is empty or only spaces.

    An owner of ``""`` would route every alert nowhere; no owner is ``None``.
    """
    for name, text in fields.items():
        if type(text) is str and not text.strip():
            raise ValidationError(
                f"{name} must not be empty (leave it out for none), got {text!r}",
                field=name,
                value=text,
            )


def _text(field: str, value: Any) -> str | None:
    """An event's free text (who responded, why cancelled): text or ``None``, one line.

    :raises ValidationError: naming ``field`` for anything else, or a control character.
    """
    text = _optional_text(field, value)
    if text is not None and not text.isprintable():
        _refuse_control_characters(**{field: text})
    return text


def _check_kind(field: str, items: Iterable[Any], kind: type) -> None:
    """:raises ConfigError: naming ``field`` and the first item that is not a ``kind``."""
    for item in items:
        if not isinstance(item, kind):
            raise ConfigError(
                f"{field} must hold {kind.__name__} objects, got {item!r}",
                field=field,
                value=item,
            )


def _check_duck(field: str, items: Iterable[Any], method: str) -> None:
    """:raises ConfigError: naming ``field`` and the first item without ``method``."""
    for item in items:
        if not callable(getattr(item, method, None)):
            raise ConfigError(
                f"{field} must hold objects with a {method}() method, got {item!r}",
                field=field,
                value=item,
            )


def _refuse_control_characters(**fields: Any) -> None:
    """:raises ValidationError: naming the first field whose text holds a control
    character, or a lone surrogate (text no store can encode)."""
    for name, text in fields.items():
        if type(text) is str and _CONTROL.search(text):
            raise ValidationError(
                f"{name} must not contain control characters (newlines, tabs…), got {text!r}",
                field=name,
                value=text,
            )
        if type(text) is str and _SURROGATE.search(text):
            raise ValidationError(
                f"{name} must be Unicode text without lone surrogates (no store can "
                f"encode them), got {text!r}",
                field=name,
                value=text,
            )


def _merge_attributes(hid: Any, extra: Any, rest: dict[str, Any]) -> dict[str, Any]:
    """A record's ``attributes`` mapping with its other leftover keys (which win)."""
    if not isinstance(extra, Mapping):
        raise ValidationError(
            f"attributes of record {hid!r} must be a mapping, got {extra!r}",
            field="attributes",
            value=extra,
        )
    merged = dict(extra)
    merged.update(rest)
    return merged


def _dedupe(items: list[Notification]) -> tuple[Notification, ...]:
    if len(items) < 2:
        return tuple(items)
    seen: set[tuple[str, str]] = set()
    out: list[Notification] = []
    for n in items:
        key = (n.notifier, n.idempotency_key)
        if key not in seen:
            seen.add(key)
            out.append(n)
    return tuple(out)


_MISSING = object()


def _shown(value: Any) -> str:
    """A field's value as a message shows it: times in ISO-8601, the rest as repr."""
    return value.isoformat() if isinstance(value, datetime) else repr(value)


def _first_difference(a: Handoff, b: Handoff) -> str:
    for name in ("policy", "owner", "backup_owner", "sla_minutes", "started_at", "channel"):
        if getattr(a, name) != getattr(b, name):
            return f"{name}: stored {_shown(getattr(a, name))}, given {_shown(getattr(b, name))}"
    if a.segment != b.segment:
        return f"segment: stored {a.segment!r}, given {b.segment!r}"
    for key in sorted(set(a.attributes) | set(b.attributes)):
        mine, theirs = a.attributes.get(key, _MISSING), b.attributes.get(key, _MISSING)
        if (
            mine is _MISSING
            or theirs is _MISSING
            or not _same_attributes({key: mine}, {key: theirs})
        ):
            shown = ["(none)" if v is _MISSING else repr(v) for v in (mine, theirs)]
            return f"attributes.{key}: stored {shown[0]}, given {shown[1]}"
    return "attributes differ"


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("error while closing")
