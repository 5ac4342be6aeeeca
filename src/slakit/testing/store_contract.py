"""The record-store contract suite.

Subclass :class:`StoreContract` in your adapter's tests and provide a
``store`` fixture that yields a fresh, empty, set-up store::

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            s = MyStore(tmp_path / "db")
            s.setup()
            yield s
            s.close()

Every built-in and adapter store passes these tests unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from slakit.abc import RecordStore
from slakit.errors import (
    ConcurrentUpdateError,
    DuplicateHandoffError,
    NaiveDatetimeError,
    UnknownHandoffError,
    ValidationError,
)
from slakit.handoff import Handoff
from slakit.records import (
    Escalation,
    Notification,
    OutboxItem,
    OutboxState,
    PurgeCounts,
    StepApplication,
    StepPayload,
    TraceRecord,
)

__all__ = ["StoreContract", "make_handoff", "make_notification", "make_outbox_row", "make_trace"]

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def make_handoff(hid: str = "h1", **kw: Any) -> Handoff:
    """A valid handoff due at ``T0 + 30 min`` unless overridden."""
    defaults: dict[str, Any] = {
        "id": hid,
        "policy": "speed-to-lead",
        "started_at": T0,
        "owner": "alice",
        "backup_owner": "bob",
        "sla_minutes": 30.0,
        "next_due_at": T0 + timedelta(minutes=30),
        "deadline_at": T0 + timedelta(minutes=30),
        "ingested_at": T0,
        "version": 1,
    }
    defaults.update(kw)
    return Handoff(**defaults)


def make_trace(hid: str = "h1", rule: str = "start", **kw: Any) -> TraceRecord:
    """A trace line for ``hid``."""
    defaults: dict[str, Any] = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "handoff_id": hid,
        "policy": "speed-to-lead",
        "rule": rule,
        "action": "start",
        "actor": "engine",
        "at": T0,
        "outcome": "ok",
        "detail": {"n": 1},
    }
    defaults.update(kw)
    return TraceRecord(**defaults)


def make_notification(
    hid: str = "h1", stage: int = 0, recipient: str = "alice", **kw: Any
) -> Notification:
    """A notification for ``hid`` at ``stage``."""
    defaults: dict[str, Any] = {
        "idempotency_key": f"{hid}:{stage}:notify:owner:{recipient}",
        "notifier": "console",
        "recipient": recipient,
        "handoff_id": hid,
        "stage": stage,
        "step": "1x",
        "action": "notify:owner",
        "subject": "SLA",
        "text": f"handoff {hid} is due",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "policy": "speed-to-lead",
        "created_at": T0 + timedelta(minutes=30),
        "payload": {"id": hid, "nested": {"a": [1, 2]}},
    }
    defaults.update(kw)
    return Notification(**defaults)


def make_outbox_row(
    store: RecordStore, hid: str = "h1", state: str = OutboxState.DEAD, error: str | None = None
) -> OutboxItem:
    """``hid`` started and stepped once with one notification, whose outbox row is
    then left in ``state`` (after one attempt, with ``error``); the claimed item."""
    h = store.insert(make_handoff(hid), [make_trace(hid)])
    note = make_notification(hid)
    assert store.apply_step(_step(h, notifications=(note,)))
    (item,) = [
        i
        for i in store.claim_outbox(note.created_at, 100, "w", 60)
        if i.notification.handoff_id == hid
    ]
    if state == OutboxState.PENDING:
        store.release_outbox([item])
    else:
        assert store.complete_outbox(
            item, state=state, attempts=1, next_attempt_at=None, error=error
        )
    return item


def _step(
    h: Handoff, *, stage: int = 0, notifications: tuple[Notification, ...] = ()
) -> StepApplication:
    new = attrs.evolve(
        h,
        stage=stage + 1,
        next_due_at=h.started_at + timedelta(minutes=60),
        breached=False,
    )
    return StepApplication(
        handoff=new,
        expected_version=h.version,
        expected_stage=stage,
        escalations=(
            Escalation(
                handoff_id=h.id,
                stage=stage,
                step="1x",
                applied_at=T0 + timedelta(minutes=30),
                outcome="applied",
                actions=("notify:owner",),
            ),
        ),
        notifications=notifications,
        traces=(make_trace(h.id, rule="step:1x", action="notify:owner"),),
    )


class StoreContract:
    """Behaviour every :class:`~slakit.abc.RecordStore` must show."""

    @pytest.fixture
    def store(self) -> Iterator[RecordStore]:
        """Override: yield a fresh, set-up, empty store."""
        raise NotImplementedError("subclasses provide a `store` fixture")

    # -- insert / get ---------------------------------------------------

    def test_insert_then_get_round_trips_every_field(self, store: RecordStore) -> None:
        """A stored handoff comes back equal, with aware datetimes for the same instants."""
        ny = ZoneInfo("America/New_York")
        h = make_handoff(
            "lead-1",
            started_at=datetime(2026, 3, 8, 1, 30, 15, 123456, tzinfo=ny),
            first_response_at=None,
            channel="web",
            segment="ICP",
            within_business_hours=False,
            attributes={"email": "a@example.com", "score": 7, "tags": ["x"]},
            paused_seconds=12.5,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            next_due_at=datetime(2026, 3, 9, 9, 30, tzinfo=ny),
        )
        store.insert(h)
        got = store.get("lead-1")
        assert got == h
        assert got.started_at.utcoffset() is not None
        assert dict(got.attributes) == {"email": "a@example.com", "score": 7, "tags": ["x"]}

    @pytest.mark.parametrize(
        "value",
        [float("nan"), float("inf"), object(), [1, {"deep": float("-inf")}]],
        ids=["nan", "inf", "object", "nested"],
    )
    def test_attributes_must_be_json_data(self, store: RecordStore, value: Any) -> None:
        """An attribute that is not JSON data (NaN, an infinity, an object) is refused
        by insert, insert_many and update alike, naming attributes.KEY; nothing is
        written. Every store takes the same values."""
        bad = {"ok": 1, "k": value}
        with pytest.raises(ValidationError) as one:
            store.insert(make_handoff("h1", attributes=bad))
        assert one.value.field == "attributes.k"
        assert "attributes['k'] of handoff 'h1' must be JSON data" in str(one.value)
        with pytest.raises(ValidationError, match="handoff 'h3'"):
            store.insert_many([make_handoff("h2"), make_handoff("h3", attributes=bad)])
        assert [h.id for h in store.iter_handoffs()] == []
        h = store.insert(make_handoff("h4"))
        with pytest.raises(ValidationError, match="attributes"):
            store.update(attrs.evolve(h, attributes=bad), h.version)
        assert dict(store.get("h4").attributes) == dict(h.attributes)

    @pytest.mark.parametrize(
        "value",
        ["x\x00y", {"k\x00": 1}, [["deep \x00"]]],
        ids=["text", "key", "nested"],
    )
    def test_attributes_must_not_hold_nul(self, store: RecordStore, value: Any) -> None:
        """NUL in an attribute's text or key (PostgreSQL text cannot keep it) is refused
        by every store alike, naming attributes.KEY; text spelling ``\\u0000`` is kept."""
        bad = {"ok": 1, "k": value}
        with pytest.raises(ValidationError, match="NUL") as one:
            store.insert(make_handoff("h1", attributes=bad))
        assert one.value.field == "attributes.k"
        with pytest.raises(ValidationError, match="NUL"):
            store.insert_many([make_handoff("h2"), make_handoff("h3", attributes=bad)])
        assert [h.id for h in store.iter_handoffs()] == []
        kept = store.insert(make_handoff("h4", attributes={"k": "a\\u0000b"}))
        assert store.get("h4").attributes == kept.attributes

    def test_get_unknown_raises(self, store: RecordStore) -> None:
        """Getting a missing id raises UnknownHandoffError naming the id."""
        with pytest.raises(UnknownHandoffError, match="nope"):
            store.get("nope")

    def test_insert_duplicate_raises_and_keeps_first(self, store: RecordStore) -> None:
        """A second insert of the same id raises and leaves the first row alone."""
        store.insert(make_handoff("h1", owner="alice"))
        with pytest.raises(DuplicateHandoffError):
            store.insert(make_handoff("h1", owner="carol"))
        assert store.get("h1").owner == "alice"

    def test_insert_writes_traces(self, store: RecordStore) -> None:
        """Trace rows given with an insert are stored with it, in order."""
        store.insert(make_handoff("h1"), [make_trace("h1"), make_trace("h1", rule="second")])
        assert [t.rule for t in store.traces("h1")] == ["start", "second"]
        assert store.traces("h1")[0] == make_trace("h1")

    def test_insert_many_is_all_or_nothing(self, store: RecordStore) -> None:
        """insert_many writes every row, or none when one id already exists."""
        assert store.insert_many([make_handoff(f"m{i}") for i in range(50)]) == 50
        assert store.count() == 50
        with pytest.raises(DuplicateHandoffError):
            store.insert_many([make_handoff("new-1"), make_handoff("m3")])
        with pytest.raises(UnknownHandoffError):
            store.get("new-1")
        assert store.count() == 50

    # -- update ---------------------------------------------------------

    def test_update_bumps_version(self, store: RecordStore) -> None:
        """A successful update stores version + 1."""
        h = store.insert(make_handoff("h1"))
        new = store.update(attrs.evolve(h, owner="carol"), h.version, [make_trace("h1", "x")])
        assert new.version == h.version + 1
        assert store.get("h1").owner == "carol"
        assert store.get("h1").version == h.version + 1
        assert [t.rule for t in store.traces("h1")] == ["x"]

    def test_update_with_stale_version_writes_nothing(self, store: RecordStore) -> None:
        """A compare-and-set with an old version raises and changes nothing."""
        h = store.insert(make_handoff("h1"))
        store.update(attrs.evolve(h, owner="carol"), h.version)
        with pytest.raises(ConcurrentUpdateError):
            store.update(attrs.evolve(h, owner="dave"), h.version, [make_trace("h1", "lost")])
        assert store.get("h1").owner == "carol"
        assert store.traces("h1") == []

    def test_update_unknown_raises(self, store: RecordStore) -> None:
        """Updating a missing handoff raises UnknownHandoffError."""
        with pytest.raises(UnknownHandoffError):
            store.update(make_handoff("ghost"), 1)

    # -- claim_due ------------------------------------------------------

    def test_claim_due_returns_only_due_oldest_first(self, store: RecordStore) -> None:
        """Only rows with next_due_at <= now are claimed, oldest due first, up to limit."""
        for i, minutes in enumerate([50, 10, 30, 90]):
            store.insert(make_handoff(f"h{i}", next_due_at=T0 + timedelta(minutes=minutes)))
        store.insert(make_handoff("never", next_due_at=None))
        got = store.claim_due(T0 + timedelta(minutes=60), 10, "w1", 30)
        assert [h.id for h in got] == ["h1", "h2", "h0"]
        assert store.claim_due(T0 + timedelta(minutes=60), 10, "w2", 30) == []

    def test_claim_due_respects_limit(self, store: RecordStore) -> None:
        """A claim returns at most `limit` rows; the next claim gets the rest."""
        for i in range(7):
            store.insert(make_handoff(f"h{i}", next_due_at=T0 + timedelta(minutes=i)))
        now = T0 + timedelta(hours=1)
        first = store.claim_due(now, 4, "w1", 30)
        second = store.claim_due(now, 4, "w1", 30)
        assert len(first) == 4
        assert len(second) == 3
        assert {h.id for h in first} | {h.id for h in second} == {f"h{i}" for i in range(7)}

    def test_claim_lease_expires(self, store: RecordStore) -> None:
        """A claimed row can be claimed again once its lease runs out."""
        store.insert(make_handoff("h1", next_due_at=T0))
        assert len(store.claim_due(T0, 10, "w1", 30)) == 1
        assert store.claim_due(T0 + timedelta(seconds=10), 10, "w2", 30) == []
        assert [h.id for h in store.claim_due(T0 + timedelta(seconds=31), 10, "w2", 30)] == ["h1"]

    def test_release_makes_row_claimable(self, store: RecordStore) -> None:
        """Releasing a claim lets another worker claim the row at once."""
        store.insert(make_handoff("h1", next_due_at=T0))
        store.claim_due(T0, 10, "w1", 300)
        store.release("h1", "w1")
        assert [h.id for h in store.claim_due(T0, 10, "w2", 300)] == ["h1"]

    def test_update_releases_claim_and_reindexes(self, store: RecordStore) -> None:
        """An update that moves next_due_at makes the row due at its new time."""
        h = store.insert(make_handoff("h1", next_due_at=T0))
        store.claim_due(T0, 10, "w1", 300)
        store.update(attrs.evolve(h, next_due_at=T0 + timedelta(minutes=5)), h.version)
        assert store.claim_due(T0 + timedelta(minutes=1), 10, "w2", 300) == []
        assert len(store.claim_due(T0 + timedelta(minutes=5), 10, "w2", 300)) == 1

    def test_update_clearing_due_removes_from_claims(self, store: RecordStore) -> None:
        """A row whose next_due_at becomes None is never claimed."""
        h = store.insert(make_handoff("h1", next_due_at=T0))
        store.update(attrs.evolve(h, next_due_at=None), h.version)
        assert store.claim_due(T0 + timedelta(days=1), 10, "w", 30) == []

    # -- apply_step -----------------------------------------------------

    def test_apply_step_writes_everything_once(self, store: RecordStore) -> None:
        """A step writes the handoff, the escalation, the outbox rows and the traces."""
        h = store.insert(make_handoff("h1"))
        n = make_notification("h1")
        assert store.apply_step(_step(h, notifications=(n,))) is True
        got = store.get("h1")
        assert got.stage == 1
        assert got.version == h.version + 1
        assert [(e.handoff_id, e.stage, e.outcome) for e in store.escalations("h1")] == [
            ("h1", 0, "applied")
        ]
        assert store.escalations("h1")[0].actions == ("notify:owner",)
        rows = store.outbox("h1")
        assert len(rows) == 1
        assert rows[0].notification == n
        assert rows[0].state == "pending"
        assert [t.rule for t in store.traces("h1")] == ["step:1x"]

    def test_apply_step_twice_is_rejected(self, store: RecordStore) -> None:
        """The same application cannot be committed twice."""
        h = store.insert(make_handoff("h1"))
        app = _step(h, notifications=(make_notification("h1"),))
        assert store.apply_step(app) is True
        assert store.apply_step(app) is False
        assert len(store.escalations("h1")) == 1
        assert len(store.outbox("h1")) == 1
        assert len(store.traces("h1")) == 1

    def test_apply_step_after_concurrent_update_writes_nothing(self, store: RecordStore) -> None:
        """A step computed from an old version loses to an event written in between."""
        h = store.insert(make_handoff("h1"))
        app = _step(h, notifications=(make_notification("h1"),))
        store.update(attrs.evolve(h, first_response_at=T0, stopped_at=T0), h.version)
        assert store.apply_step(app) is False
        assert store.escalations("h1") == []
        assert store.outbox() == []
        assert store.get("h1").stage == 0

    def test_apply_step_rejects_existing_escalation(self, store: RecordStore) -> None:
        """The escalation unique key holds even if version and stage would match."""
        h = store.insert(make_handoff("h1"))
        assert store.apply_step(_step(h))
        again = store.get("h1")
        rewound = attrs.evolve(again, stage=0)
        store.update(rewound, again.version)
        stale = store.get("h1")
        assert store.apply_step(_step(stale)) is False
        assert len(store.escalations("h1")) == 1

    def test_apply_step_is_exactly_once_across_threads(self, store: RecordStore) -> None:
        """Many threads racing to apply the same steps apply each exactly once."""
        n_rows = 60
        for i in range(n_rows):
            store.insert(make_handoff(f"r{i}", next_due_at=T0))
        wins: list[str] = []
        lock = threading.Lock()

        def worker() -> None:
            for i in range(n_rows):
                h = store.get(f"r{i}")
                if h.stage != 0:
                    continue
                app = _step(h, notifications=(make_notification(h.id),))
                if store.apply_step(app):
                    with lock:
                        wins.append(h.id)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == sorted(f"r{i}" for i in range(n_rows))
        assert len(store.escalations()) == n_rows
        assert len(store.outbox()) == n_rows

    # -- outbox ---------------------------------------------------------

    def _with_outbox(self, store: RecordStore, count: int = 1) -> list[Notification]:
        notes = []
        for i in range(count):
            h = store.insert(make_handoff(f"o{i}"))
            n = make_notification(f"o{i}")
            store.apply_step(_step(h, notifications=(n,)))
            notes.append(n)
        return notes

    def test_claim_outbox_and_mark_sent(self, store: RecordStore) -> None:
        """A claimed row completed with its token is sent and never claimed again."""
        (n,) = self._with_outbox(store)
        now = n.created_at
        (item,) = store.claim_outbox(now, 10, "w1", 60)
        assert item.lease_token
        assert item.notification == n
        assert store.complete_outbox(
            item, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.claim_outbox(now + timedelta(hours=1), 10, "w1", 60) == []
        (row,) = store.outbox()
        assert row.state == "sent"
        assert row.attempts == 1
        # A finished row has no next attempt and no lease, in every store.
        assert row.next_attempt_at is None
        assert row.lease_token is None
        assert row.lease_until is None

    def test_claim_outbox_waits_for_next_attempt(self, store: RecordStore) -> None:
        """A row scheduled for retry is claimed only when its time comes."""
        (n,) = self._with_outbox(store)
        (item,) = store.claim_outbox(n.created_at, 10, "w1", 60)
        later = n.created_at + timedelta(minutes=5)
        assert store.complete_outbox(
            item, state=OutboxState.PENDING, attempts=1, next_attempt_at=later, error="503"
        )
        assert store.claim_outbox(later - timedelta(seconds=1), 10, "w1", 60) == []
        (again,) = store.claim_outbox(later, 10, "w1", 60)
        assert again.attempts == 1
        assert again.last_error == "503"

    def test_outbox_lease_fences_late_worker(self, store: RecordStore) -> None:
        """After a lease runs out and is re-claimed, the old holder cannot complete."""
        (n,) = self._with_outbox(store)
        (first,) = store.claim_outbox(n.created_at, 10, "w1", 60)
        assert store.claim_outbox(n.created_at + timedelta(seconds=30), 10, "w2", 60) == []
        (second,) = store.claim_outbox(n.created_at + timedelta(seconds=61), 10, "w2", 60)
        assert second.lease_token != first.lease_token
        assert not store.complete_outbox(
            first, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.complete_outbox(
            second, state=OutboxState.DEAD, attempts=1, next_attempt_at=None, error="boom"
        )
        assert store.outbox()[0].state == "dead"

    def test_release_outbox_hands_rows_back_fenced(self, store: RecordStore) -> None:
        """Released rows are claimable at once; a stale or spent token releases nothing.

        Skipped for a store that keeps the default (rows come back when their
        lease runs out).
        """
        if type(store).release_outbox is RecordStore.release_outbox:
            pytest.skip("the store keeps the default release_outbox (a no-op)")
        notes = self._with_outbox(store, 3)
        now = notes[0].created_at
        first, second, third = store.claim_outbox(now, 10, "w1", 60)
        assert store.complete_outbox(
            third, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.release_outbox([first, second, third]) == 2  # the sent one stays sent
        again = store.claim_outbox(now, 10, "w2", 60)
        assert [i.notification.handoff_id for i in again] == ["o0", "o1"]
        assert {i.lease_token for i in again}.isdisjoint({first.lease_token, second.lease_token})
        assert store.release_outbox([first, second]) == 0  # their tokens are gone
        assert store.release_outbox([]) == 0
        assert not store.complete_outbox(
            first, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.complete_outbox(
            again[0], state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )

    def test_requeue_outbox_revives_dead_rows_only(self, store: RecordStore) -> None:
        """Dead rows come back pending, due at ``now``, with their trace lines; others stay.

        Skipped for a store that keeps the default (it cannot requeue).
        """
        if type(store).requeue_outbox is RecordStore.requeue_outbox:
            pytest.skip("the store keeps the default requeue_outbox (cannot requeue)")
        notes = self._with_outbox(store, 3)
        now = notes[0].created_at
        dead, sent, retry = store.claim_outbox(now, 10, "w1", 60)
        later = now + timedelta(hours=1)
        assert store.complete_outbox(
            dead, state=OutboxState.DEAD, attempts=5, next_attempt_at=None, error="boom"
        )
        assert store.complete_outbox(
            sent, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.complete_outbox(
            retry, state=OutboxState.PENDING, attempts=1, next_attempt_at=later, error="503"
        )
        (listed,) = store.outbox(state=OutboxState.DEAD)
        lines = [
            make_trace(
                f"o{i}",
                rule="step:1x",
                action="notify:owner",
                actor="ops",
                at=later,
                outcome="requeued",
            )
            for i in range(3)
        ]
        with pytest.raises(ValidationError):
            store.requeue_outbox([listed, sent, retry], now=later, traces=lines[:2])
        with pytest.raises(NaiveDatetimeError):
            store.requeue_outbox([listed], now=later.replace(tzinfo=None))
        assert store.outbox(state=OutboxState.DEAD) == [listed]  # nothing half-written

        assert store.requeue_outbox([listed, sent, retry], now=later, traces=lines) == [
            True,
            False,
            False,
        ]
        back, still_sent, still_retry = store.outbox()
        assert back.state == OutboxState.PENDING
        assert back.attempts == 0
        assert back.next_attempt_at == later
        assert back.lease_token is None
        assert back.lease_until is None
        assert back.last_error == "boom"
        assert back.notification == notes[0]
        assert (still_sent.state, still_sent.attempts) == (OutboxState.SENT, 1)
        assert (still_retry.state, still_retry.next_attempt_at) == (OutboxState.PENDING, later)
        requeued = [t for t in store.traces() if t.outcome == "requeued"]
        assert requeued == [lines[0]]
        # Requeued rows are claimed like any pending row; a second requeue is a no-op.
        assert store.requeue_outbox([listed], now=later) == [False]
        assert store.requeue_outbox([], now=later) == []
        claimed = store.claim_outbox(later, 10, "w2", 60)
        assert [i.notification.handoff_id for i in claimed] == ["o0", "o2"]

    def test_outbox_window_selects_by_creation_time(self, store: RecordStore) -> None:
        """Rows created in [since, until), in creation order; naive bounds are rejected."""
        base = T0 + timedelta(hours=1)
        for i, hours in enumerate((0, 2, 1, 3)):  # created out of time order
            h = store.insert(make_handoff(f"w{i}"))
            note = make_notification(f"w{i}", created_at=base + timedelta(hours=hours))
            store.apply_step(_step(h, notifications=(note,)))
        window = store.outbox_window(
            since=base + timedelta(hours=1), until=base + timedelta(hours=3)
        )
        assert [i.notification.handoff_id for i in window] == ["w1", "w2"]
        assert store.outbox_window(since=base, until=base) == []
        everything = store.outbox_window(since=base, until=base + timedelta(days=1))
        assert everything == store.outbox()
        with pytest.raises(NaiveDatetimeError):
            store.outbox_window(since=base.replace(tzinfo=None), until=base + timedelta(hours=1))
        local = ZoneInfo("America/New_York")
        start = (base + timedelta(hours=3)).astimezone(local)
        assert [
            i.notification.handoff_id
            for i in store.outbox_window(since=start, until=start + timedelta(hours=1))
        ] == ["w3"]

    def test_summary_counts_work_and_its_age(self, store: RecordStore) -> None:
        """Handoffs, running timers, due steps, pending, due and dead rows, at ``now``."""
        now = T0 + timedelta(minutes=45)
        empty = store.summary(now)
        assert (empty.handoffs, empty.timers, empty.due, empty.outbox_dead) == (0, 0, 0, 0)
        assert empty.oldest_due_at is None
        assert empty.next_due_at is None
        assert empty.step_lag == timedelta(0) == empty.delivery_lag
        # o0, o1, o2: a step applied (next due T0 + 60 min), each with one outbox row.
        notes = self._with_outbox(store, 3)
        store.insert(make_handoff("late", next_due_at=T0 + timedelta(minutes=10)))
        store.insert(make_handoff("due", next_due_at=T0 + timedelta(minutes=40)))
        store.insert(make_handoff("done", next_due_at=None))
        sent, dead, retry = store.claim_outbox(notes[0].created_at, 10, "w1", 60)
        assert store.complete_outbox(
            sent, state=OutboxState.SENT, attempts=1, next_attempt_at=None, error=None
        )
        assert store.complete_outbox(
            dead, state=OutboxState.DEAD, attempts=1, next_attempt_at=None, error="boom"
        )
        assert store.complete_outbox(
            retry,
            state=OutboxState.PENDING,
            attempts=1,
            next_attempt_at=T0 + timedelta(minutes=50),
            error="503",
        )
        s = store.summary(now)
        assert s.now == now
        assert (s.handoffs, s.timers, s.due) == (6, 5, 2)
        assert s.oldest_due_at == T0 + timedelta(minutes=10)
        assert s.step_lag == timedelta(minutes=35)
        assert s.next_due_at == T0 + timedelta(minutes=60)
        assert (s.outbox_pending, s.outbox_due, s.outbox_dead) == (1, 0, 1)
        assert s.oldest_outbox_due_at is None
        later = store.summary(T0 + timedelta(minutes=55))
        assert (later.outbox_due, later.oldest_outbox_due_at) == (1, T0 + timedelta(minutes=50))
        assert later.delivery_lag == timedelta(minutes=5)
        assert later.to_dict()["delivery_lag_seconds"] == 300.0
        assert later.to_dict()["oldest_outbox_due_at"] == "2026-03-02T14:50:00+00:00"
        with pytest.raises(NaiveDatetimeError):
            store.summary(now.replace(tzinfo=None))

    def test_get_many_returns_the_stored_ones(self, store: RecordStore) -> None:
        """Found ids map to their handoffs; missing and repeated ids are no error."""
        assert store.get_many([]) == {}
        ids = [f"m{i}" for i in range(1200)]  # more than one query's worth in SQL stores
        store.insert_many([make_handoff(hid) for hid in ids])
        found = store.get_many(["ghost", *ids, "m7", "m7"])
        assert set(found) == set(ids)
        assert found["m7"] == store.get("m7")
        assert store.get_many(iter(["m1", "nope"])) == {"m1": store.get("m1")}

    def _ended(
        self,
        store: RecordStore,
        hid: str,
        *,
        after: timedelta,
        outbox_state: str,
        cancelled: bool = False,
    ) -> None:
        """``hid`` with a step, one outbox row left in ``outbox_state``, then stopped
        (or cancelled) at ``T0 + after``."""
        make_outbox_row(store, hid, outbox_state)
        current = store.get(hid)
        when = T0 + after
        changes: dict[str, Any] = (
            {"cancelled_at": when} if cancelled else {"stopped_at": when, "first_response_at": when}
        )
        store.update(attrs.evolve(current, next_due_at=None, **changes), current.version)

    def test_purge_removes_ended_handoffs_whole(self, store: RecordStore) -> None:
        """Stopped or cancelled before the cutoff, nothing pending: gone with every row.

        Skipped for a store that keeps the default (it cannot purge).
        """
        if type(store).purge is RecordStore.purge:
            pytest.skip("the store keeps the default purge (cannot purge)")
        hour = timedelta(hours=1)
        store.insert(make_handoff("open"))
        store.insert(make_handoff("paused", next_due_at=None, paused_at=T0 + hour))
        self._ended(store, "b-stopped", after=hour, outbox_state=OutboxState.SENT)
        self._ended(store, "a-cancelled", after=hour, outbox_state=OutboxState.DEAD, cancelled=True)
        self._ended(store, "late", after=5 * hour, outbox_state=OutboxState.SENT)
        self._ended(store, "unsent", after=hour, outbox_state=OutboxState.PENDING)
        cutoff = T0 + 2 * hour
        before = (len(store.escalations()), len(store.outbox()), len(store.traces()))

        dry = store.purge(cutoff, dry_run=True)
        assert dry == PurgeCounts(handoffs=2, escalations=2, outbox=2, traces=4)
        assert (len(store.escalations()), len(store.outbox()), len(store.traces())) == before
        assert store.purge(cutoff, limit=1, dry_run=True).handoffs == 1

        first = store.purge(cutoff, limit=1)  # oldest start first; ties by id
        assert first == PurgeCounts(handoffs=1, escalations=1, outbox=1, traces=2)
        with pytest.raises(UnknownHandoffError):
            store.get("a-cancelled")
        assert store.get("b-stopped").id == "b-stopped"
        assert store.purge(cutoff) == PurgeCounts(handoffs=1, escalations=1, outbox=1, traces=2)
        assert store.purge(cutoff) == PurgeCounts()
        for gone in ("a-cancelled", "b-stopped"):
            assert store.escalations(gone) == []
            assert store.outbox(gone) == []
            assert store.traces(gone) == []
        kept = {"open", "paused", "late", "unsent"}
        assert set(store.get_many([*kept, "a-cancelled", "b-stopped"])) == kept
        assert len(store.outbox()) == before[1] - 2
        assert {e.handoff_id for e in store.escalations()} == {"late", "unsent"}
        with pytest.raises(NaiveDatetimeError):
            store.purge(cutoff.replace(tzinfo=None))

    def test_claim_outbox_limit_and_order(self, store: RecordStore) -> None:
        """Outbox rows are claimed in creation order up to the limit."""
        notes = self._with_outbox(store, 5)
        now = notes[0].created_at
        got = store.claim_outbox(now, 3, "w", 60)
        assert [i.notification.handoff_id for i in got] == ["o0", "o1", "o2"]
        assert len(store.claim_outbox(now, 10, "w", 60)) == 2

    def test_outbox_filters(self, store: RecordStore) -> None:
        """outbox() filters by handoff and by state."""
        self._with_outbox(store, 3)
        assert len(store.outbox("o1")) == 1
        assert len(store.outbox(state="pending")) == 3
        assert store.outbox(state="sent") == []

    def test_completed_item_is_a_value(self, store: RecordStore) -> None:
        """Outbox rows come back as OutboxItem values with their notification intact."""
        (_n,) = self._with_outbox(store)
        (row,) = store.outbox()
        assert isinstance(row, OutboxItem)
        assert dict(row.notification.payload) == {"id": "o0", "nested": {"a": [1, 2]}}

    def test_step_payload_comes_back_as_its_mapping(self, store: RecordStore) -> None:
        """A StepPayload (the engine's payload) reads back as the mapping it stands for.

        Two notifications of one step share it; the record in it is the one
        the step writes, attributes, breach and reassignment included.
        """
        h = store.insert(make_handoff("h1", attributes={"region": "EMEA", "n": [1, 2.5]}))
        step = _step(h)
        new = attrs.evolve(step.handoff, breached=True, owner="bob", backup_owner="alice")
        payload = StepPayload(new, "2x", 0, "https://crm.example/leads/h1")
        notes = tuple(
            make_notification("h1", recipient=who, payload=payload) for who in ("alice", "bob")
        )
        assert store.apply_step(attrs.evolve(step, handoff=new, notifications=notes)) is True
        expected = {
            "handoff": new.to_dict(),
            "step": "2x",
            "stage": 0,
            "link": "https://crm.example/leads/h1",
        }
        rows = store.outbox("h1")
        assert len(rows) == 2
        for row in rows:
            assert dict(row.notification.payload) == expected
        claimed = store.claim_outbox(notes[0].created_at, 10, "w1", 60)
        assert [dict(c.notification.payload) for c in claimed] == [expected, expected]

    # -- traces, listing, wakeup -----------------------------------------

    def test_traces_filter_by_time(self, store: RecordStore) -> None:
        """traces() filters by handoff and by [since, until)."""
        store.add_traces([make_trace("a", at=T0), make_trace("b", at=T0 + timedelta(hours=1))])
        assert [t.handoff_id for t in store.traces()] == ["a", "b"]
        assert [t.handoff_id for t in store.traces(since=T0 + timedelta(minutes=1))] == ["b"]
        assert [t.handoff_id for t in store.traces(until=T0 + timedelta(hours=1))] == ["a"]
        assert [t.handoff_id for t in store.traces("b")] == ["b"]

    def test_iter_handoffs_filters_window_and_policy(self, store: RecordStore) -> None:
        """iter_handoffs yields rows with since <= started_at < until, by start time."""
        for i in range(5):
            store.insert(
                make_handoff(
                    f"h{i}",
                    started_at=T0 + timedelta(days=i),
                    policy="a" if i % 2 else "b",
                )
            )
        got = list(store.iter_handoffs(since=T0 + timedelta(days=1), until=T0 + timedelta(days=4)))
        assert [h.id for h in got] == ["h1", "h2", "h3"]
        assert [h.id for h in store.iter_handoffs(policy="a")] == ["h1", "h3"]

    def test_windows_refuse_naive_bounds_and_read_local_times_as_instants(
        self, store: RecordStore
    ) -> None:
        """A naive since/until is a NaiveDatetimeError naming it; bounds and stored
        times in a local zone compare as instants, also in a fall-back hour."""
        store.insert(make_handoff("h", started_at=T0))
        store.add_traces([make_trace("h", at=T0)])
        naive = datetime(2026, 1, 1)
        reads: list[tuple[str, Callable[[], object]]] = [
            ("since", lambda: list(store.iter_handoffs(since=naive))),
            ("until", lambda: list(store.iter_handoffs(until=naive))),
            ("since", lambda: store.traces(since=naive)),
            ("until", lambda: store.traces(until=naive)),
        ]
        for bound, read in reads:
            with pytest.raises(NaiveDatetimeError) as err:
                read()
            assert err.value.field == bound
        ny = ZoneInfo("America/New_York")
        # 01:30 on the fall-back night, read the second time (fold=1): 06:30Z.
        first, second = (datetime(2026, 11, 1, 1, 30, fold=f, tzinfo=ny) for f in (0, 1))
        store.insert(make_handoff("fold", started_at=datetime(2026, 11, 1, 6, 10, tzinfo=UTC)))
        assert [h.id for h in store.iter_handoffs(since=first, until=second)] == ["fold"]
        assert [h.id for h in store.iter_handoffs(since=second)] == []
        # Listed by start instant: 01:40 EDT (05:40Z) before 01:20 EST (06:20Z).
        edt = datetime(2026, 11, 1, 1, 40, tzinfo=ny)
        est = datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=ny)
        store.insert(make_handoff("z-edt", started_at=edt))
        store.insert(make_handoff("a-est", started_at=est))
        assert [h.id for h in store.iter_handoffs(since=first)] == ["z-edt", "fold", "a-est"]

    def test_excluded_ids_lists_cancelled_in_window(self, store: RecordStore) -> None:
        """excluded_ids gives the cancelled handoffs started in [since, until), by start."""
        for i in range(4):
            start = T0 + timedelta(days=i)
            cancelled = start + timedelta(minutes=5) if i != 1 else None
            store.insert(
                make_handoff(f"c{i}", started_at=start, cancelled_at=cancelled, next_due_at=None)
            )
        assert store.excluded_ids() == ["c0", "c2", "c3"]
        assert store.excluded_ids(since=T0 + timedelta(days=1), until=T0 + timedelta(days=3)) == [
            "c2"
        ]

    def test_next_wakeup(self, store: RecordStore) -> None:
        """next_wakeup is the earliest due time, or None when nothing is due."""
        assert store.next_wakeup() is None
        store.insert(make_handoff("h1", next_due_at=T0 + timedelta(minutes=9)))
        store.insert(make_handoff("h2", next_due_at=T0 + timedelta(minutes=3)))
        assert store.next_wakeup() == T0 + timedelta(minutes=3)
