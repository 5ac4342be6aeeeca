"""The in-memory store: a real adapter, and the baseline of every contract test.

One lock guards everything; due work is found through a heap on
``next_due_at`` with lazy deletion, so a claim costs in proportion to what is
due, not to what is open.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from slakit._time import ensure_aware, to_us
from slakit.abc import RecordStore, paired_traces
from slakit.errors import ConcurrentUpdateError, DuplicateHandoffError, UnknownHandoffError
from slakit.handoff import Handoff, attributes_json
from slakit.records import (
    Escalation,
    OutboxItem,
    OutboxState,
    PurgeCounts,
    StepApplication,
    TraceRecord,
    outbox_key,
)

__all__ = ["MemoryStore"]


class MemoryStore(RecordStore):
    """Keeps everything in process memory; thread-safe, not shared across processes."""

    name = "memory"
    multi_process = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[str, Handoff] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._heap: list[tuple[int, str, int]] = []
        self._escalations: dict[tuple[str, int], Escalation] = {}
        self._outbox: dict[str, OutboxItem] = {}
        self._outbox_seq: dict[str, int] = {}
        self._pending: set[str] = set()
        self._traces: list[TraceRecord] = []
        self._seq = itertools.count()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._rows)} handoffs)"

    # -- helpers --------------------------------------------------------

    def _index(self, h: Handoff) -> None:
        if h.next_due_at is not None:
            heapq.heappush(self._heap, (to_us(h.next_due_at), h.id, h.version))

    def _store(self, h: Handoff) -> None:
        self._rows[h.id] = h
        self._leases.pop(h.id, None)
        self._index(h)

    # -- handoffs -------------------------------------------------------

    def insert(self, handoff: Handoff, traces: Sequence[TraceRecord] = ()) -> Handoff:
        attributes_json(handoff, "the memory store")  # the values every store takes
        with self._lock:
            if handoff.id in self._rows:
                raise DuplicateHandoffError(
                    f"handoff id {handoff.id!r} already exists", field="id", value=handoff.id
                )
            self._store(handoff)
            self._traces.extend(traces)
            return handoff

    def insert_many(self, handoffs: Sequence[Handoff], traces: Sequence[TraceRecord] = ()) -> int:
        for h in handoffs:
            attributes_json(h, "the memory store")
        with self._lock:
            seen: set[str] = set()
            for h in handoffs:
                if h.id in self._rows or h.id in seen:
                    raise DuplicateHandoffError(
                        f"handoff id {h.id!r} already exists", field="id", value=h.id
                    )
                seen.add(h.id)
            for h in handoffs:
                self._store(h)
            self._traces.extend(traces)
            return len(handoffs)

    def get(self, handoff_id: str) -> Handoff:
        with self._lock:
            try:
                return self._rows[handoff_id]
            except KeyError:
                raise UnknownHandoffError(handoff_id) from None

    def update(
        self, handoff: Handoff, expected_version: int, traces: Sequence[TraceRecord] = ()
    ) -> Handoff:
        with self._lock:
            current = self.get(handoff.id)
            if handoff.attributes is not current.attributes:  # else checked when stored
                attributes_json(handoff, "the memory store")
            if current.version != expected_version:
                raise ConcurrentUpdateError(
                    f"handoff {handoff.id!r} changed: expected version {expected_version}, "
                    f"found {current.version}",
                    field="version",
                    value=expected_version,
                )
            stored = attrs.evolve(handoff, version=expected_version + 1)
            self._store(stored)
            self._traces.extend(traces)
            return stored

    def claim_due(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[Handoff]:
        now_us = to_us(now)
        until = now + timedelta(seconds=lease_seconds)
        out: list[Handoff] = []
        keep: list[tuple[int, str, int]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now_us and len(out) < limit:
                entry = heapq.heappop(self._heap)
                if not self._is_current(entry):
                    continue  # stale heap entry
                hid = entry[1]
                h = self._rows[hid]
                lease = self._leases.get(hid)
                keep.append(entry)
                if lease is not None and lease[1] > now:
                    continue
                self._leases[hid] = (worker, until)
                out.append(h)
            for entry in keep:
                heapq.heappush(self._heap, entry)
        return out

    def apply_step(self, application: StepApplication) -> bool:
        h = application.handoff
        with self._lock:
            current = self._rows.get(h.id)
            if current is None:
                raise UnknownHandoffError(h.id)
            if h.attributes is not current.attributes:  # an action gave it new ones
                attributes_json(h, "the memory store")
            if (
                current.version != application.expected_version
                or current.stage != application.expected_stage
            ):
                return False
            if any((e.handoff_id, e.stage) in self._escalations for e in application.escalations):
                return False
            keys = [outbox_key(n.idempotency_key, n.notifier) for n in application.notifications]
            if any(k in self._outbox for k in keys) or len(set(keys)) != len(keys):
                return False
            if h.version != application.expected_version + 1:
                h = attrs.evolve(h, version=application.expected_version + 1)
            self._store(h)
            for e in application.escalations:
                self._escalations[(e.handoff_id, e.stage)] = e
            for key, n in zip(keys, application.notifications, strict=True):
                self._outbox[key] = OutboxItem(notification=n, next_attempt_at=n.created_at)
                self._outbox_seq[key] = next(self._seq)
                self._pending.add(key)
            self._traces.extend(application.traces)
            return True

    def release(self, handoff_id: str, worker: str) -> None:
        with self._lock:
            lease = self._leases.get(handoff_id)
            if lease is not None and lease[0] == worker:
                del self._leases[handoff_id]

    def iter_handoffs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        policy: str | None = None,
    ) -> Iterator[Handoff]:
        since = _utc_bound("since", since)
        until = _utc_bound("until", until)
        with self._lock:
            rows = list(self._rows.values())
        # By instant: times sharing a local zone compare by wall clock, fold ignored.
        rows.sort(key=lambda h: (h.started_at.astimezone(UTC), h.id))
        for h in rows:
            started = h.started_at.astimezone(UTC)
            if since is not None and started < since:
                continue
            if until is not None and started >= until:
                continue
            if policy is not None and h.policy != policy:
                continue
            yield h

    def count(self) -> int:
        with self._lock:
            return len(self._rows)

    def _is_current(self, entry: tuple[int, str, int]) -> bool:
        due, hid, version = entry
        h = self._rows.get(hid)
        return (
            h is not None
            and h.version == version
            and h.next_due_at is not None
            and to_us(h.next_due_at) == due
        )

    def next_wakeup(self) -> datetime | None:
        with self._lock:
            # The heap's top is the earliest due once stale entries are dropped.
            while self._heap and not self._is_current(self._heap[0]):
                heapq.heappop(self._heap)
            candidates: list[datetime | None] = [
                self._outbox[k].next_attempt_at for k in self._pending
            ]
            if self._heap:
                candidates.append(self._rows[self._heap[0][1]].next_due_at)
        return min((c for c in candidates if c is not None), default=None)

    # -- escalations ----------------------------------------------------

    def escalations(self, handoff_id: str | None = None) -> list[Escalation]:
        with self._lock:
            rows = [
                e
                for (hid, _), e in self._escalations.items()
                if handoff_id is None or hid == handoff_id
            ]
        return sorted(rows, key=lambda e: (e.handoff_id, e.stage))

    def purge(
        self, before: datetime, *, limit: int | None = None, dry_run: bool = False
    ) -> PurgeCounts:
        ensure_aware("before", before)
        with self._lock:
            pending = {self._outbox[k].notification.handoff_id for k in self._pending}
            ended = sorted(
                (
                    h
                    for h in self._rows.values()
                    if _ended_before(h, before) and h.id not in pending
                ),
                key=lambda h: (h.started_at, h.id),
            )
            ids = {h.id for h in ended[:limit]}
            escalations = [k for k in self._escalations if k[0] in ids]
            outbox = [k for k, i in self._outbox.items() if i.notification.handoff_id in ids]
            traces = sum(1 for t in self._traces if t.handoff_id in ids)
            counts = PurgeCounts(
                handoffs=len(ids), escalations=len(escalations), outbox=len(outbox), traces=traces
            )
            if dry_run or not ids:
                return counts
            for hid in ids:
                del self._rows[hid]
                self._leases.pop(hid, None)
            for pair in escalations:
                del self._escalations[pair]
            for key in outbox:
                del self._outbox[key]
                del self._outbox_seq[key]
            self._traces = [t for t in self._traces if t.handoff_id not in ids]
            return counts

    # -- outbox ---------------------------------------------------------

    def claim_outbox(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[OutboxItem]:
        until = now + timedelta(seconds=lease_seconds)
        out: list[OutboxItem] = []
        with self._lock:
            keys = sorted(self._pending, key=lambda k: self._outbox_seq[k])
            for key in keys:
                if len(out) >= limit:
                    break
                item = self._outbox[key]
                if item.next_attempt_at is not None and item.next_attempt_at > now:
                    continue
                if item.lease_until is not None and item.lease_until > now:
                    continue
                claimed = attrs.evolve(
                    item, lease_token=f"{worker}:{uuid.uuid4().hex}", lease_until=until
                )
                self._outbox[key] = claimed
                out.append(claimed)
        return out

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
        key = item.key
        with self._lock:
            current = self._outbox.get(key)
            if (
                current is None
                or current.lease_token is None
                or current.lease_token != item.lease_token
                or current.state != OutboxState.PENDING
            ):
                return False
            self._outbox[key] = attrs.evolve(
                current,
                state=state,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_error=error,
                lease_token=None,
                lease_until=None,
            )
            if state != OutboxState.PENDING:
                self._pending.discard(key)
            self._traces.extend(traces)
            return True

    def release_outbox(self, items: Sequence[OutboxItem]) -> int:
        released = 0
        with self._lock:
            for item in items:
                current = self._outbox.get(item.key)
                if (
                    current is not None
                    and item.lease_token is not None
                    and current.lease_token == item.lease_token
                    and current.state == OutboxState.PENDING
                ):
                    self._outbox[item.key] = attrs.evolve(
                        current, lease_token=None, lease_until=None
                    )
                    released += 1
        return released

    def requeue_outbox(
        self,
        items: Sequence[OutboxItem],
        *,
        now: datetime,
        traces: Sequence[TraceRecord] = (),
    ) -> list[bool]:
        ensure_aware("now", now)
        lines = paired_traces(items, traces)
        done: list[bool] = []
        with self._lock:
            for item, line in zip(items, lines, strict=True):
                key = item.key
                current = self._outbox.get(key)
                if current is None or current.state != OutboxState.DEAD:
                    done.append(False)
                    continue
                self._outbox[key] = attrs.evolve(
                    current,
                    state=OutboxState.PENDING,
                    attempts=0,
                    next_attempt_at=now.astimezone(UTC),
                    lease_token=None,
                    lease_until=None,
                )
                self._pending.add(key)
                if line is not None:
                    self._traces.append(line)
                done.append(True)
        return done

    def outbox(self, handoff_id: str | None = None, state: str | None = None) -> list[OutboxItem]:
        with self._lock:
            items = sorted(self._outbox.items(), key=lambda kv: self._outbox_seq[kv[0]])
        return [
            item
            for _, item in items
            if (handoff_id is None or item.notification.handoff_id == handoff_id)
            and (state is None or item.state == state)
        ]

    # -- traces ---------------------------------------------------------

    def add_traces(self, traces: Sequence[TraceRecord]) -> None:
        with self._lock:
            self._traces.extend(traces)

    def traces(
        self,
        handoff_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TraceRecord]:
        since = _utc_bound("since", since)
        until = _utc_bound("until", until)
        with self._lock:
            rows = list(self._traces)
        return [
            t
            for t in rows
            if (handoff_id is None or t.handoff_id == handoff_id)
            and (since is None or t.at.astimezone(UTC) >= since)
            and (until is None or t.at.astimezone(UTC) < until)
        ]


def _ended_before(h: Handoff, before: datetime) -> bool:
    """Whether ``h`` was cancelled, or stopped, before ``before``."""
    ended = h.cancelled_at if h.cancelled_at is not None else h.stopped_at
    return ended is not None and ended < before


def _utc_bound(field: str, value: datetime | None) -> datetime | None:
    """A window bound in UTC (times in one zone compare by wall clock, fold ignored).

    :raises NaiveDatetimeError: for a naive ``value``, naming ``field``.
    """
    return None if value is None else ensure_aware(field, value).astimezone(UTC)
