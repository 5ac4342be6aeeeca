"""Contracts for adapters: record stores, notifiers and trace sinks.

The rules an adapter must keep are written in these docstrings and checked by
the contract suites in :mod:`slakit.testing`. Every store passes the same
suite; the in-memory store is its baseline.

Times given to a store are aware datetimes; a store keeps UTC and returns
aware UTC datetimes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from slakit._time import ensure_aware
from slakit.errors import DuplicateHandoffError, StoreError, UnknownHandoffError, ValidationError
from slakit.handoff import Handoff, attributes_json
from slakit.records import (
    Escalation,
    Notification,
    OutboxItem,
    OutboxState,
    PurgeCounts,
    StepApplication,
    StoreSummary,
    TraceRecord,
)

__all__ = ["Notifier", "RecordStore", "TraceSink", "resend_window"]


class RecordStore(ABC):
    """Where handoffs, escalations, the outbox and trace rows live.

    Rules every store keeps:

    * Each write method is one transaction: all of it is visible, or none.
    * ``version`` is a compare-and-set token. Every successful write of a
      handoff stores ``version + 1`` of what the caller read.
    * An escalation is unique per ``(handoff_id, stage)``; an outbox row is
      unique per ``(notifier, idempotency_key)``.
    * No method holds a lock across a call out of the store.
    * Methods are safe to call from several threads; SQL stores are safe
      across processes too.
    """

    #: Name the store is registered under (``"memory"``, ``"sqlite"``…).
    name: str = ""
    #: Whether several processes may share this store (memory: no).
    multi_process: bool = False

    def setup(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Create or migrate the schema. Idempotent; called by the engine once."""

    def close(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Release connections. The store is unusable afterwards."""

    def effective_now(self, now: datetime) -> datetime:
        """The instant a check or delivery at ``now`` should act as of.

        A store with a clock of record (PostgreSQL's ``now()``) returns the
        earlier of the two, so a worker whose clock runs fast never plans a
        step early. The default trusts ``now``.
        """
        return now

    # -- handoffs -------------------------------------------------------

    @abstractmethod
    def insert(self, handoff: Handoff, traces: Sequence[TraceRecord] = ()) -> Handoff:
        """Insert a new handoff (``version`` as given, normally 1) with its trace rows.

        :returns: the stored handoff.
        :raises DuplicateHandoffError: when the id exists. The caller decides
            whether that is an idempotent repeat (see :meth:`Handoff.same_content`).
        :raises ValidationError: when an attribute is not JSON data (text, finite
            numbers, booleans, null, lists, mappings), naming ``attributes.KEY``
            (:func:`slakit.handoff.attributes_json` checks it); nothing is written.
            The same holds for ``insert_many``, ``update`` and ``apply_step``.
        """

    def insert_many(self, handoffs: Sequence[Handoff], traces: Sequence[TraceRecord] = ()) -> int:
        """Insert many new handoffs in one transaction.

        The default checks the whole batch first (ids new and distinct,
        attributes that every store takes), then calls :meth:`insert` for each
        handoff. A store with transactions should override it, so that a
        concurrent writer of one of the ids cannot leave part of the batch
        written.

        :returns: how many were inserted.
        :raises DuplicateHandoffError: when any id exists; then nothing is written.
        :raises ValidationError: naming an attribute no store can keep; then
            nothing is written.
        """
        seen: set[str] = set()
        for h in handoffs:
            attributes_json(h, type(self).__name__)
            if h.id in seen:
                raise DuplicateHandoffError(
                    f"handoff id {h.id!r} appears twice in the batch", field="id", value=h.id
                )
            seen.add(h.id)
        stored = self.get_many(seen)
        for h in handoffs:
            if h.id in stored:
                raise DuplicateHandoffError(
                    f"handoff id {h.id!r} already exists", field="id", value=h.id
                )
        lines: dict[str, list[TraceRecord]] = {}
        for t in traces:
            lines.setdefault(t.handoff_id, []).append(t)
        for h in handoffs:
            self.insert(h, lines.get(h.id, []))
        return len(handoffs)

    @abstractmethod
    def get(self, handoff_id: str) -> Handoff:
        """The stored handoff.

        :raises UnknownHandoffError: when there is none.
        """

    def get_many(self, handoff_ids: Iterable[str]) -> dict[str, Handoff]:
        """The stored handoffs among ``handoff_ids``, by id; missing ids are left out.

        The default calls :meth:`get` per id; SQL stores read them in a few queries.
        """
        found: dict[str, Handoff] = {}
        for hid in handoff_ids:
            try:
                found[hid] = self.get(hid)
            except UnknownHandoffError:
                continue
        return found

    @abstractmethod
    def update(
        self, handoff: Handoff, expected_version: int, traces: Sequence[TraceRecord] = ()
    ) -> Handoff:
        """Replace the stored handoff if its version is still ``expected_version``.

        The stored row gets ``version = expected_version + 1`` and any claim
        lease on it is released.

        :returns: the stored handoff (with the new version).
        :raises ConcurrentUpdateError: when the version differs; nothing is written.
        :raises UnknownHandoffError: when there is no such handoff.
        """

    @abstractmethod
    def claim_due(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[Handoff]:
        """Claim up to ``limit`` handoffs with ``next_due_at <= now``, oldest due first.

        A claimed row carries a lease until ``now + lease_seconds`` (SQL
        stores may use the database's clock); other claims skip leased rows
        until the lease runs out. The lease only spreads work: exactly-once
        comes from :meth:`apply_step`. Cost is proportional to the number due,
        not the number open.
        """

    @abstractmethod
    def apply_step(self, application: StepApplication) -> bool:
        """Commit one step: handoff update, escalation rows, outbox rows and trace rows.

        All in one transaction, and only if the stored handoff still has
        ``expected_version`` and ``expected_stage`` and no escalation exists
        for any of the stages. The handoff is stored with
        ``version = expected_version + 1`` and its claim lease released.

        :returns: ``True`` when written; ``False`` when another writer won
            (then nothing is written).
        """

    def apply_steps(self, applications: Sequence[StepApplication]) -> list[bool]:
        """Commit many steps, each exactly as :meth:`apply_step` would, in order.

        A store may write the whole batch in one transaction (SQL stores do,
        with a savepoint per step) as long as each step stays all-or-nothing on
        its own terms. The default calls :meth:`apply_step` for each.

        :returns: one flag per application, ``True`` when written.
        """
        return [self.apply_step(a) for a in applications]

    @abstractmethod
    def release(self, handoff_id: str, worker: str) -> None:
        """Drop ``worker``'s claim lease on a handoff (after deciding not to act)."""

    @abstractmethod
    def iter_handoffs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        policy: str | None = None,
    ) -> Iterator[Handoff]:
        """Handoffs with ``since <= started_at < until`` (either bound optional), by start."""

    @abstractmethod
    def next_wakeup(self) -> datetime | None:
        """The earliest ``next_due_at`` or pending outbox ``next_attempt_at``; ``None`` if idle."""

    def count(self) -> int:
        """How many handoffs are stored."""
        return sum(1 for _ in self.iter_handoffs())

    def summary(self, now: datetime) -> StoreSummary:
        """How much work the store holds at ``now`` and how long the oldest has waited.

        The default walks every handoff and outbox row; SQL stores answer from
        their indexes.
        """
        ensure_aware("now", now)
        handoffs = timers = due = 0
        oldest: datetime | None = None
        upcoming: datetime | None = None
        for h in self.iter_handoffs():
            handoffs += 1
            at = h.next_due_at
            if at is None:
                continue
            timers += 1
            if at <= now:
                due += 1
                oldest = at if oldest is None else min(oldest, at)
            else:
                upcoming = at if upcoming is None else min(upcoming, at)
        pending = outbox_due = dead = 0
        oldest_outbox: datetime | None = None
        for item in self.outbox():
            if item.state == OutboxState.DEAD:
                dead += 1
            elif item.state == OutboxState.PENDING:
                pending += 1
                at = item.next_attempt_at or item.notification.created_at
                if at <= now:
                    outbox_due += 1
                    oldest_outbox = at if oldest_outbox is None else min(oldest_outbox, at)
        return StoreSummary(
            now=now,
            handoffs=handoffs,
            timers=timers,
            due=due,
            oldest_due_at=oldest,
            next_due_at=upcoming,
            outbox_pending=pending,
            outbox_due=outbox_due,
            oldest_outbox_due_at=oldest_outbox,
            outbox_dead=dead,
        )

    def purge(
        self, before: datetime, *, limit: int | None = None, dry_run: bool = False
    ) -> PurgeCounts:
        """Delete handoffs that ended before ``before``, with all their rows.

        A handoff is purged when it was stopped or cancelled before ``before``
        and has no pending outbox row; it goes with its escalations, outbox
        rows and trace lines, all in one transaction. Open and paused
        handoffs are never purged. ``limit`` caps how many handoffs one call
        takes (oldest start first), so a large purge can run in short
        transactions; ``dry_run`` counts without deleting.

        The default raises :class:`~slakit.errors.StoreError`: the store
        cannot purge.
        """
        raise StoreError(f"the {self.name or type(self).__name__} store cannot purge")

    # -- escalations ----------------------------------------------------

    @abstractmethod
    def escalations(self, handoff_id: str | None = None) -> list[Escalation]:
        """Escalation rows (for one handoff, or all), by handoff then stage."""

    # -- outbox ---------------------------------------------------------

    @abstractmethod
    def claim_outbox(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` pending rows whose ``next_attempt_at <= now``.

        Each claimed row gets a fresh ``lease_token`` and ``lease_until``;
        rows whose lease is still running are skipped, and a row whose lease
        ran out can be claimed again (with a new token).
        """

    @abstractmethod
    def complete_outbox(
        self,
        item: OutboxItem,
        *,
        state: str,
        attempts: int,
        next_attempt_at: datetime | None,
        error: str | None,
        traces: Sequence[TraceRecord] = (),
    ) -> bool:
        """Record the outcome of a delivery attempt (fenced).

        Writes only if the row still carries ``item.lease_token`` (the claim
        has not been taken over), and clears the lease.

        :returns: ``True`` when written; ``False`` when the lease was lost.
        """

    def release_outbox(self, items: Sequence[OutboxItem]) -> int:
        """Hand back claimed rows that will not be sent under this claim (fenced).

        Clears the lease of each row that still carries its item's
        ``lease_token`` and is pending, so any worker can claim it at once.
        The default does nothing: the rows come back when their lease runs out.

        :returns: how many rows were released.
        """
        return 0

    def requeue_outbox(
        self,
        items: Sequence[OutboxItem],
        *,
        now: datetime,
        traces: Sequence[TraceRecord] = (),
    ) -> list[bool]:
        """Put dead-lettered rows back in the queue, due at ``now``, in one transaction.

        Each row that is still ``dead`` becomes ``pending`` again with
        ``attempts = 0``, ``next_attempt_at = now`` and no lease (its
        ``last_error`` stays until the next attempt). A row in any other state
        (already requeued, or not dead) is left alone. ``traces``, when given,
        holds one line per item; a line is written only with its row.

        The default raises :class:`~slakit.errors.StoreError`: the store
        cannot requeue.

        :returns: one flag per item, ``True`` when that row was requeued.
        """
        raise StoreError(f"the {self.name or type(self).__name__} store cannot requeue outbox rows")

    @abstractmethod
    def outbox(self, handoff_id: str | None = None, state: str | None = None) -> list[OutboxItem]:
        """Outbox rows, optionally filtered, in creation order."""

    def outbox_window(self, *, since: datetime, until: datetime) -> list[OutboxItem]:
        """Outbox rows whose notification was created in ``[since, until)``, in creation order.

        The default filters :meth:`outbox`, which reads every row; SQL stores
        select the window in the database.
        """
        ensure_aware("since", since)
        ensure_aware("until", until)
        return [i for i in self.outbox() if since <= i.notification.created_at < until]

    # -- traces ---------------------------------------------------------

    @abstractmethod
    def add_traces(self, traces: Sequence[TraceRecord]) -> None:
        """Append trace rows."""

    @abstractmethod
    def traces(
        self,
        handoff_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TraceRecord]:
        """Trace rows in the order they were written."""

    # -- reports --------------------------------------------------------

    def excluded_ids(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[str]:
        """Ids of the cancelled handoffs started in ``[since, until)``, by start time.

        The default walks :meth:`iter_handoffs`; SQL stores answer from an index.
        """
        return [
            h.id for h in self.iter_handoffs(since=since, until=until) if h.cancelled_at is not None
        ]

    def aggregate_hit_rate(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        by: Sequence[str],
        now: datetime,
    ) -> list[dict[str, Any]] | None:
        """Hit-rate counts computed inside the store, or ``None`` to let Python do it.

        Returns one mapping per group with the ``by`` keys and integer counts
        ``wall_met``, ``wall_missed``, ``wall_pending``, ``business_met``,
        ``business_missed``, ``business_pending`` and ``excluded``.
        """
        return None


class Notifier(ABC):
    """Tells a person about a step.

    Rules:

    * :meth:`send` either returns (delivered) or raises.
      :class:`~slakit.errors.PermanentNotifyError` dead-letters at once;
      :class:`~slakit.errors.TransientNotifyError` (or any other exception)
      is retried with backoff until the attempts run out.
    * The same ``notification.idempotency_key`` may arrive more than once
      (only after a crash between a send and its record); pass it on to the
      peer where the peer can dedupe on it.
    * :meth:`send` is called with no store lock held and may block on the network.
    * ``send(self, notification, idempotency_key=None)`` also works: the
      engine passes the key as a second argument when ``send`` requires one or
      names it ``idempotency_key``. It is the same as
      ``notification.idempotency_key``.
    """

    #: The name this instance is routed by (``[[notifiers]] name = …``), default the adapter name.
    name: str = ""

    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver one notification.

        :raises PermanentNotifyError: delivery can never succeed.
        :raises TransientNotifyError: try again later (``retry_after`` honoured).
        """

    def close(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Release connections."""


class TraceSink(ABC):
    """Receives every trace line after the transaction that wrote it commits.

    Rules: :meth:`emit` must not raise for a single bad line (log it instead);
    an exception from :meth:`emit` is logged by the engine and never undoes the
    step: the engine holds the lines (up to ``slakit.engine.SINK_BACKLOG``)
    and hands them over again, before newer ones, on its next emit or run-loop
    tick, so a batch that failed part-way may arrive twice. Lines arrive in
    commit order per engine.
    """

    name: str = ""

    @abstractmethod
    def emit(self, records: Iterable[TraceRecord]) -> None:
        """Write trace lines."""

    def close(self) -> None:  # noqa: B027 - optional hook with a sensible default
        """Flush and release resources."""


def resend_window(lines: Iterable[TraceRecord]) -> tuple[str, str]:
    """``--since`` and ``--until`` (ISO-8601, UTC) of the ``slakit traces --emit``
    command that hands ``lines`` (at least one) to the trace sinks again from the store,
    for a sink that had to drop them to say how to get them back."""
    times = [t.at for t in lines]
    since = min(times).astimezone(UTC)
    until = max(times).astimezone(UTC) + timedelta(microseconds=1)
    return since.isoformat(), until.isoformat()


def paired_traces(
    items: Sequence[OutboxItem], traces: Sequence[TraceRecord]
) -> list[TraceRecord | None]:
    """``traces`` of :meth:`RecordStore.requeue_outbox` as one entry per item.

    :raises ValidationError: when ``traces`` is given with another length.
    """
    if not traces:
        return [None] * len(items)
    if len(traces) != len(items):
        raise ValidationError(
            f"traces must hold one line per outbox item ({len(items)}), got {len(traces)}",
            field="traces",
            value=len(traces),
        )
    return list(traces)
