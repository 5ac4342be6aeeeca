"""The SQLite store: the store contract suite, plus what only SQLite has."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slakit
import slakit.adapters.sqlite as sqlite_module
from slakit import Engine, ManualClock, Policy, _time
from slakit.adapters.sqlite import (
    CLAIM_DUE_SQL,
    HANDOFF_COLUMNS,
    SCHEMA_VERSION,
    SQLiteStore,
)
from slakit.errors import (
    ConfigError,
    DuplicateHandoffError,
    SchemaVersionError,
    StoreError,
    UnknownHandoffError,
    ValidationError,
)
from slakit.handoff import Handoff
from slakit.metrics import classify
from slakit.records import Escalation, StepApplication, StepPayload
from slakit.testing import capture_notifications
from slakit.testing.store_contract import (
    T0,
    StoreContract,
    make_handoff,
    make_notification,
    make_outbox_row,
    make_trace,
)


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        s = SQLiteStore(tmp_path / "slakit.db")
        s.setup()
        yield s
        s.close()


class TestSQLiteMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[SQLiteStore]:
        s = SQLiteStore(":memory:")
        s.setup()
        yield s
        s.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "slakit.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db)
    s.setup()
    yield s
    s.close()


def _raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None)


class TestSchema:
    def test_setup_writes_the_current_version_in_wal_mode(
        self, db: Path, store: SQLiteStore
    ) -> None:
        """A new database gets PRAGMA user_version = SCHEMA_VERSION and the WAL journal."""
        conn = _raw(db)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.schema_version() == SCHEMA_VERSION

    def test_every_handoff_field_has_its_own_column(self, db: Path, store: SQLiteStore) -> None:
        """Each Handoff field is one column; the lease columns come on top."""
        fields = [a.name for a in attrs.fields(Handoff)]
        assert list(HANDOFF_COLUMNS) == fields
        cols = [r[1] for r in _raw(db).execute("PRAGMA table_info(handoffs)")]
        assert cols == [*fields, "lease_owner", "lease_until"]

    def test_due_index_is_partial(self, db: Path, store: SQLiteStore) -> None:
        """The due index covers only rows with a next_due_at."""
        (sql,) = (
            _raw(db).execute("SELECT sql FROM sqlite_master WHERE name = 'handoffs_due'").fetchone()
        )
        assert "WHERE next_due_at IS NOT NULL" in sql

    def test_setup_is_idempotent(self, db: Path, store: SQLiteStore) -> None:
        """Opening the same database again changes nothing and keeps the rows."""
        store.insert(make_handoff("h1"))
        again = SQLiteStore(db)
        again.setup()
        again.setup()
        assert again.get("h1") == store.get("h1")
        assert again.schema_version() == SCHEMA_VERSION
        again.close()

    def test_newer_schema_raises_naming_the_version(self, db: Path) -> None:
        """A database written by a newer slakit is refused, naming its version."""
        conn = _raw(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
        conn.close()
        s = SQLiteStore(db)
        with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 7}") as e:
            s.setup()
        assert e.value.value == SCHEMA_VERSION + 7
        with pytest.raises(SchemaVersionError):
            s.get("h1")  # every use opens (and checks) first
        s.close()

    def test_forward_migrations_run_in_order(
        self, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Opening an older database applies each later step once and keeps the data."""
        old = SQLiteStore(db)
        old.insert(make_handoff("h1"))
        old.close()
        step = ("ALTER TABLE handoffs ADD COLUMN region TEXT", "CREATE TABLE extra (x INTEGER)")
        monkeypatch.setattr(sqlite_module, "MIGRATIONS", [*sqlite_module.MIGRATIONS, step])
        new = SQLiteStore(db)
        new.setup()
        assert new.schema_version() == SCHEMA_VERSION + 1
        assert new.get("h1").id == "h1"
        cols = [r[0] for r in new.query("SELECT name FROM pragma_table_info('handoffs')")]
        assert "region" in cols
        new.close()

    def test_version_3_file_gains_the_dead_letter_index(self, db: Path) -> None:
        """A file written at schema 3 opens at 4 with its rows, and dead letters use the index."""
        store = SQLiteStore(db)
        make_outbox_row(store, "h1", "dead", error="boom")
        store.close()
        conn = _raw(db)
        conn.execute("DROP INDEX outbox_dead")
        conn.execute("PRAGMA user_version = 3")
        conn.close()
        again = SQLiteStore(db)
        again.setup()
        assert again.schema_version() == SCHEMA_VERSION == 4
        (dead,) = again.outbox(state="dead")
        assert (dead.notification.handoff_id, dead.last_error) == ("h1", "boom")
        indexes = [r[0] for r in again.query("SELECT name FROM sqlite_master WHERE type='index'")]
        assert "outbox_dead" in indexes
        again.close()

    def test_failed_migration_leaves_the_old_version(
        self, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A migration step that fails rolls back whole; the version stays."""
        SQLiteStore(db).setup()
        step = ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL")
        monkeypatch.setattr(sqlite_module, "MIGRATIONS", [*sqlite_module.MIGRATIONS, step])
        with pytest.raises(StoreError, match="setup"):
            SQLiteStore(db).setup()
        conn = _raw(db)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert (
            conn.execute("SELECT count(*) FROM sqlite_master WHERE name='half'").fetchone()[0] == 0
        )


class TestQueryPlans:
    def test_due_claim_uses_the_partial_index(self, db: Path, store: SQLiteStore) -> None:
        """EXPLAIN QUERY PLAN of the due claim searches handoffs_due, never scans the table."""
        store.insert_many(
            [
                make_handoff(f"h{i}", next_due_at=None if i % 3 else T0 + timedelta(seconds=i))
                for i in range(3000)
            ]
        )
        _raw(db).execute("ANALYZE")
        plan = store.query("EXPLAIN QUERY PLAN " + CLAIM_DUE_SQL, ("w", 0, 0, 0, 10))
        details = [str(row[-1]) for row in plan]
        assert any("USING INDEX handoffs_due" in d for d in details), details
        assert not any(d.startswith("SCAN handoffs") for d in details), details

    def test_outbox_claim_uses_its_partial_index(self, store: SQLiteStore) -> None:
        """The outbox claim searches the pending-rows index."""
        plan = store.query("EXPLAIN QUERY PLAN " + sqlite_module._CLAIM_OUTBOX, ("t", 0, 0, 0, 10))
        assert any("USING INDEX outbox_due" in str(row[-1]) for row in plan), plan

    def test_summary_reads_only_indexes(self, db: Path, store: SQLiteStore) -> None:
        """Every summary statement is answered from an index, never a table scan."""
        store.insert_many([make_handoff(f"h{i}") for i in range(200)])
        _raw(db).execute("ANALYZE")
        for sql in sqlite_module.SUMMARY_SQL:
            plan = [str(row[-1]) for row in store.query("EXPLAIN QUERY PLAN " + sql, {"now": 0})]
            assert all("INDEX" in d for d in plan), (sql, plan)

    def test_dead_letters_are_listed_from_their_index(self, store: SQLiteStore) -> None:
        """`outbox(state="dead")` writes the state as a literal, so outbox_dead applies."""
        seen: list[str] = []
        conn = store._conn()
        conn.set_trace_callback(seen.append)
        try:
            store.outbox(state="dead")
        finally:
            conn.set_trace_callback(None)
        (sql,) = [s for s in seen if s.startswith("SELECT")]
        plan = [str(row[-1]) for row in store.query("EXPLAIN QUERY PLAN " + sql)]
        assert any("USING INDEX outbox_dead" in d for d in plan), plan


class TestStorage:
    def test_times_are_integer_microseconds(self, db: Path, store: SQLiteStore) -> None:
        """Datetimes are stored as INTEGER µs since the epoch, UTC, and keep microseconds."""
        at = datetime(2026, 3, 2, 14, 0, 0, 123457, tzinfo=UTC)
        store.insert(make_handoff("h1", started_at=at, next_due_at=at + timedelta(microseconds=1)))
        row = (
            _raw(db)
            .execute("SELECT started_at, typeof(started_at), next_due_at FROM handoffs")
            .fetchone()
        )
        assert row[1] == "integer"
        assert (
            row[0] == int((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**6 + 123457
        )
        assert row[2] == row[0] + 1
        got = store.get("h1")
        assert got.started_at == at
        assert got.started_at.tzinfo is UTC

    def test_times_before_the_epoch_round_trip(self, store: SQLiteStore) -> None:
        """Old history (before 1970) is stored and read back exactly."""
        at = datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)
        store.insert(make_handoff("moon", started_at=at, next_due_at=None, ingested_at=at))
        assert store.get("moon").started_at == at

    def test_attributes_must_be_json(self, store: SQLiteStore) -> None:
        """An attribute JSON cannot hold is refused, naming it; nothing is written."""
        h = make_handoff("h1", attributes={"ok": 1, "when": datetime(2026, 1, 1, tzinfo=UTC)})
        with pytest.raises(ValidationError, match=r"attributes\['when'\]") as e:
            store.insert(h)
        assert e.value.field == "attributes.when"
        with pytest.raises(UnknownHandoffError):
            store.get("h1")

    def test_trace_details_that_json_cannot_hold_are_kept_as_text(self, store: SQLiteStore) -> None:
        """A trace line is never lost to its detail: odd values become text."""
        at = datetime(2026, 1, 1, tzinfo=UTC)
        store.add_traces([make_trace("h1", detail={"at": at, "tags": ("a",)})])
        (t,) = store.traces("h1")
        assert dict(t.detail) == {"at": at.isoformat(), "tags": ["a"]}

    def test_insert_many_names_the_duplicate(self, store: SQLiteStore) -> None:
        """insert_many names the id that exists, or that repeats within the batch."""
        store.insert(make_handoff("taken"))
        with pytest.raises(DuplicateHandoffError, match="'taken'"):
            store.insert_many([make_handoff("a"), make_handoff("taken")])
        with pytest.raises(DuplicateHandoffError, match="'twice'"):
            store.insert_many([make_handoff("twice"), make_handoff("twice")])
        assert store.count() == 1

    def test_iter_handoffs_pages_through_equal_start_times(self, store: SQLiteStore) -> None:
        """Paging keeps every row once, in (started_at, id) order, across page bounds."""
        ids = [f"h{i:05d}" for i in range(2500)]
        store.insert_many([make_handoff(i) for i in reversed(ids)])
        assert [h.id for h in store.iter_handoffs()] == ids
        assert [h.id for h in store.iter_handoffs(since=T0, until=T0)] == []

    def test_release_only_drops_the_workers_own_lease(self, store: SQLiteStore) -> None:
        """Another worker's release leaves the lease in place."""
        store.insert(make_handoff("h1", next_due_at=T0))
        store.claim_due(T0, 10, "w1", 300)
        store.release("h1", "w2")
        assert store.claim_due(T0, 10, "w2", 300) == []
        store.release("h1", "w1")
        assert [h.id for h in store.claim_due(T0, 10, "w2", 300)] == ["h1"]

    def test_query_is_read_only(self, store: SQLiteStore) -> None:
        """query() runs reads and refuses writes."""
        store.insert(make_handoff("h1"))
        assert store.query("SELECT id FROM handoffs WHERE owner = ?", ("alice",)) == [("h1",)]
        with pytest.raises(StoreError, match="query failed"):
            store.query("DELETE FROM handoffs")
        assert store.count() == 1

    def test_a_file_that_is_not_a_database_raises_store_error(self, db: Path) -> None:
        """Opening a file that is not SQLite raises StoreError naming the path."""
        db.write_bytes(b"not a database, just text" * 100)
        with pytest.raises(StoreError, match=r"slakit\.db"):
            SQLiteStore(db).setup()

    def test_closed_store_refuses_work(self, store: SQLiteStore) -> None:
        """A closed store raises StoreError naming itself."""
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.get("h1")

    def test_a_steps_payload_is_stored_once_in_compact_form(
        self, db: Path, store: SQLiteStore
    ) -> None:
        """The engine's payload is kept as the record's row and read back as its mapping.

        Both notifications of the 2x step hold the same text; what notifiers get
        is the record as the step left it (breached, reassigned), attributes too.
        """
        clock = ManualClock(T0)
        engine = Engine(store=store, policies=[Policy.default(basis="wall")], clock=clock)
        engine.start("a", owner="alice", backup_owner="bob", region="EMEA", score=0.5)
        engine.check(T0 + timedelta(minutes=61))
        texts = [r[0] for r in _raw(db).execute("SELECT payload FROM outbox WHERE stage = 1")]
        assert len(texts) == 2
        assert texts[0] == texts[1]
        assert texts[0].startswith('{"handoff@":[')
        after = store.get("a")
        for row in store.outbox("a", state="pending"):
            payload = dict(row.notification.payload)
            if row.notification.stage == 1:
                assert payload == {"handoff": after.to_dict(), "step": "2x", "stage": 1, "link": ""}
                assert payload["handoff"]["breached"] is True
                assert payload["handoff"]["owner"] == "bob"
                assert payload["handoff"]["attributes"] == {"region": "EMEA", "score": 0.5}

    def test_payloads_written_as_plain_json_still_read(self, db: Path, store: SQLiteStore) -> None:
        """Rows from before the compact form (or from other writers) read as they are."""
        _with_outbox(store)
        _raw(db).execute("UPDATE outbox SET payload = ?", ('{"handoff":{"id":"h1"},"step":"1x"}',))
        (row,) = store.outbox()
        assert dict(row.notification.payload) == {"handoff": {"id": "h1"}, "step": "1x"}

    @settings(max_examples=400, deadline=None)
    @given(
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(),
                st.text(max_size=8),
                st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.datetimes(timezones=st.just(UTC)),
            ),
            max_size=5,
        )
    )
    def test_trace_detail_text_is_the_encoders(self, detail: dict[str, Any]) -> None:
        """The direct encoding of small trace details gives the JSON encoder's exact text."""
        expected = sqlite_module._lenient_json(detail) if detail else "{}"
        assert sqlite_module._detail_json(detail) == expected
        assert sqlite_module._python_detail_json(detail) == expected
        assert sqlite_module._detail_json(MappingProxyType(detail)) == expected

    @settings(max_examples=500, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.integers(min_value=2**63 - 2, max_value=2**80) | st.integers(max_value=-(2**63)),
                st.floats(),
                st.text(max_size=12),
                st.text(st.characters(max_codepoint=0x60), max_size=8),
                st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
            ),
            max_size=35,
        ).map(tuple)
    )
    def test_row_text_is_the_encoders(self, row: tuple[Any, ...]) -> None:
        """A compact payload's row is encoded as the strict JSON encoder would: escapes,
        flags, numbers past 64 bits, NaN and lone surrogates (these two through the
        json module) included; the compiled encoder gives the same text."""
        expected = sqlite_module._strict_json(row)
        assert sqlite_module._row_json(row) == expected
        assert sqlite_module._python_row_json(row) == expected
        assert sqlite_module._row_json(list(row)) == expected
        if _time.ACCELERATED:
            from slakit import _crecords

            try:
                assert _crecords.row_json(row) == expected
            except (TypeError, ValueError):
                assert any(
                    (type(v) is float and not math.isfinite(v))
                    or (type(v) is str and any(0xD800 <= ord(c) <= 0xDFFF for c in v))
                    for v in row
                )

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
            max_size=31,
        ).map(tuple),
        st.text(max_size=6),
        st.integers(min_value=0, max_value=2**70),
        st.text(max_size=20),
    )
    def test_compact_payload_text_is_the_pythons(
        self, row: tuple[Any, ...], step: str, stage: int, link: str
    ) -> None:
        """The compiled compact payload is the Python code's text, which expands back."""
        h = make_handoff("h1")
        payload = StepPayload(h, step, stage, link)
        expected = sqlite_module._python_compact_payload(payload, row)
        assert sqlite_module._compact_payload(payload, row) == expected
        data = json.loads(expected)
        assert (data["step"], data["stage"], data["link"]) == (step, stage, link)

    def test_row_encoding_without_the_c_accelerator(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import json.encoder

        monkeypatch.setattr(json.encoder, "c_make_encoder", None)
        encode = sqlite_module._row_encoder()
        assert encode is sqlite_module._strict_json
        assert encode(("a", 1, None, 2.5)) == '["a",1,null,2.5]'


def _with_outbox(store: SQLiteStore) -> tuple[Any, ...]:
    h = store.insert(make_handoff("h1"))
    n = make_notification("h1")
    assert store.apply_step(attrs.evolve(_first_step(h), notifications=(n,)))
    return (n,)


def _first_step(h: Handoff) -> StepApplication:
    return StepApplication(
        handoff=attrs.evolve(h, stage=1, next_due_at=h.started_at + timedelta(hours=1)),
        expected_version=h.version,
        expected_stage=0,
        escalations=(
            Escalation(
                handoff_id=h.id,
                stage=0,
                step="1x",
                applied_at=T0 + timedelta(minutes=30),
                outcome="applied",
                actions=("notify:owner",),
            ),
        ),
        notifications=(make_notification(h.id),),
        traces=(make_trace(h.id, rule="step:1x"),),
    )


class TestApplySteps:
    def test_each_step_stands_alone_in_one_commit(self, store: SQLiteStore) -> None:
        """A batch writes every winning step whole and nothing of a losing one."""
        hs = [store.insert(make_handoff(f"h{i}")) for i in range(4)]
        stale = _first_step(hs[1])
        store.update(attrs.evolve(hs[1], owner="carol"), hs[1].version)
        done = store.apply_step(_first_step(hs[3]))
        assert done is True
        flags = store.apply_steps(
            [_first_step(hs[0]), stale, _first_step(hs[2]), _first_step(hs[3])]
        )
        assert flags == [True, False, True, False]
        assert [e.handoff_id for e in store.escalations()] == ["h0", "h2", "h3"]
        assert [i.notification.handoff_id for i in store.outbox()] == ["h3", "h0", "h2"]
        assert store.traces("h1") == []
        assert len(store.traces("h3")) == 1
        assert store.get("h1").stage == 0

    def test_unknown_handoff_writes_nothing(self, store: SQLiteStore) -> None:
        """A batch naming a missing handoff raises and writes none of its steps."""
        h = store.insert(make_handoff("h1"))
        with pytest.raises(UnknownHandoffError, match="ghost"):
            store.apply_steps([_first_step(h), _first_step(make_handoff("ghost"))])
        assert store.escalations() == []
        assert store.get("h1").stage == 0


def _next_step(h: Handoff) -> StepApplication:
    """The step at ``h``'s stage, planned on ``h``: it changes the owner and moves on."""
    k = h.stage
    return StepApplication(
        handoff=attrs.evolve(
            h,
            stage=k + 1,
            owner=f"o{k + 1}",
            breached=k >= 1,
            next_due_at=h.started_at + timedelta(minutes=30 * (k + 2)),
            version=h.version + 1,
        ),
        expected_version=h.version,
        expected_stage=k,
        escalations=(
            Escalation(
                handoff_id=h.id,
                stage=k,
                step=f"{k + 1}x",
                applied_at=T0 + timedelta(hours=3),
                outcome="applied",
                actions=("notify:owner",),
            ),
        ),
        notifications=(make_notification(h.id, stage=k),),
        traces=(make_trace(h.id, rule=f"step:{k + 1}x"),),
    )


def _chain(h: Handoff, n: int) -> list[StepApplication]:
    """``n`` steps of ``h`` in a row, each planned on the state the one before leaves."""
    apps = []
    for _ in range(n):
        apps.append(_next_step(h))
        h = apps[-1].handoff
    return apps


def _stored(store: SQLiteStore, ids: list[str]) -> tuple[Any, ...]:
    """Everything a batch of steps can write, for comparing two stores."""
    return (
        [store.get(i) for i in ids],
        store.escalations(),
        sorted((i.notification.idempotency_key, i.state) for i in store.outbox()),
        [(t.handoff_id, t.rule) for i in ids for t in store.traces(i)],
    )


class TestStepsInARow:
    def _updates(self, store: SQLiteStore) -> list[str]:
        seen: list[str] = []
        store._conn().set_trace_callback(
            lambda sql: seen.append(sql) if sql.startswith("UPDATE handoffs") else None
        )
        return seen

    def test_a_handoffs_steps_in_a_row_are_one_update(self, store: SQLiteStore) -> None:
        """Three steps of h1 planned one on the other, then one of h2: two updates,
        the row as the last step leaves it, every step's rows written."""
        h1, h2 = store.insert(make_handoff("h1")), store.insert(make_handoff("h2"))
        apps = [*_chain(h1, 3), _next_step(h2)]
        updates = self._updates(store)
        assert store.apply_steps(apps) == [True] * 4
        assert len(updates) == 2
        assert store.get("h1") == apps[2].handoff
        assert store.get("h1").version == h1.version + 3
        assert [(e.handoff_id, e.stage) for e in store.escalations()] == [
            ("h1", 0),
            ("h1", 1),
            ("h1", 2),
            ("h2", 0),
        ]
        assert len(store.outbox()) == 4

    def test_a_run_whose_first_step_lost_is_tried_step_by_step(self, store: SQLiteStore) -> None:
        """Another writer applied h1's first step: the run's one update misses, and
        the steps one by one give what they would alone (the second one still fits)."""
        h1 = store.insert(make_handoff("h1"))
        first, second = _chain(h1, 2)
        assert store.apply_step(first)
        assert store.apply_steps([first, second]) == [False, True]
        assert store.get("h1") == second.handoff
        assert [e.stage for e in store.escalations()] == [0, 1]

    def test_a_run_after_another_writers_change_writes_nothing(self, store: SQLiteStore) -> None:
        h1 = store.insert(make_handoff("h1"))
        apps = _chain(h1, 2)
        moved = store.update(attrs.evolve(h1, owner="carol"), h1.version)
        assert store.apply_steps(apps) == [False, False]
        assert store.get("h1") == moved
        assert store.escalations() == []
        assert store.outbox() == []
        assert store.traces("h1") == []

    def test_a_step_that_moves_started_at_is_written_whole(self, store: SQLiteStore) -> None:
        h1 = store.insert(make_handoff("h1"))
        first = _next_step(h1)
        moved = attrs.evolve(
            first, handoff=attrs.evolve(first.handoff, started_at=T0 - timedelta(hours=1))
        )
        second = _next_step(moved.handoff)
        updates = self._updates(store)
        assert store.apply_steps([moved, second]) == [True, True]
        assert store.get("h1") == second.handoff
        # The run's guarded update missed; then one by one: the first step's
        # guarded update missed and its full one ran, and the second's ran.
        assert len(updates) == 4

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(1, 3),
                st.sampled_from(["none", "first-step", "other-change", "missing"]),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_batches_write_what_steps_one_by_one_write(self, plan: list[tuple[int, str]]) -> None:
        """Whatever other writers did first, ``apply_steps`` on chains of steps gives the
        flags and the rows that ``apply_step`` one application at a time gives."""
        batched, single = SQLiteStore(":memory:"), SQLiteStore(":memory:")
        ids = [f"h{i}" for i in range(len(plan))]
        apps: list[StepApplication] = []
        for hid, (n, other) in zip(ids, plan, strict=True):
            chain = None
            made = make_handoff(hid)
            for s_ in (batched, single):
                if other == "missing":
                    chain = _chain(made, n)
                    continue
                h = s_.insert(made)
                chain = _chain(h, n)
                if other == "first-step":
                    assert s_.apply_step(chain[0])
                elif other == "other-change":
                    s_.update(attrs.evolve(h, owner="carol"), h.version)
            assert chain is not None
            apps.extend(chain)
        if any(other == "missing" for _n, other in plan):
            for s_ in (batched, single):
                with pytest.raises(UnknownHandoffError):
                    s_.apply_steps(apps) if s_ is batched else [s_.apply_step(a) for a in apps]
            return
        assert batched.apply_steps(apps) == [single.apply_step(a) for a in apps]
        assert _stored(batched, ids) == _stored(single, ids)


class TestAttributesRoundTrip:
    def test_starting_again_with_json_shaped_attributes_is_idempotent(self, tmp_path: Path) -> None:
        """Attributes read back as JSON (a tuple as a list, a number key as text); the
        same start given again is still the same content, not a conflict."""
        store = SQLiteStore(tmp_path / "a.db")
        policies = [Policy.default(basis="wall")]
        engine = Engine(store=store, policies=policies, clock=ManualClock(T0))
        first = engine.start("q", owner="a", pair=(1, 2), by_code={1: "x"})
        assert dict(engine.get("q").attributes) == {"pair": [1, 2], "by_code": {"1": "x"}}
        assert engine.start("q", owner="a", pair=(1, 2), by_code={1: "x"}).id == first.id
        with pytest.raises(DuplicateHandoffError) as other:
            engine.start("q", owner="a", pair=(1, 3), by_code={1: "x"})
        assert "attributes.pair: stored [1, 2], given (1, 3)" in str(other.value)
        with pytest.raises(DuplicateHandoffError) as extra:
            engine.start("q", owner="a", pair=(1, 2), by_code={1: "x"}, more=1)
        assert "attributes.more: stored (none), given 1" in str(extra.value)


class TestMultiRowInsert:
    """``_insert_rows``: many rows per INSERT statement, in order, all or nothing."""

    @staticmethod
    def _conn() -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, a TEXT NOT NULL UNIQUE, b INT)")
        return conn

    @given(n=st.integers(0, 1100), limit=st.sampled_from([999, 32766, 7, 3, 2]))
    @settings(max_examples=60, deadline=None)
    def test_rows_land_in_order(self, n: int, limit: int) -> None:
        conn = self._conn()
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        single = "INSERT INTO t (a, b) VALUES (?, ?)"
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        rows = [(f"r{i}", i) for i in range(n)]
        sqlite_module._insert_rows(conn, single, rows)
        conn.set_trace_callback(None)
        assert conn.execute("SELECT a, b FROM t ORDER BY seq").fetchall() == rows
        if n > 1 and limit >= 4:
            # Few statements, whatever the count: chunks are powers of two up to the cap.
            rows_cap = min(sqlite_module._PARAMS_PER_INSERT, limit) // 2
            cap = 1 << (rows_cap.bit_length() - 1)
            assert len(statements) <= n // cap + cap.bit_length()
            assert all(s.count("(") - 1 <= cap for s in statements)

    def test_a_failing_row_fails_its_statement_whole(self) -> None:
        conn = self._conn()
        conn.execute("INSERT INTO t (a, b) VALUES ('taken', 0)")
        rows = [("x1", 1), ("taken", 2), ("x3", 3), ("x4", 4)]
        with pytest.raises(sqlite3.IntegrityError):
            sqlite_module._insert_rows(conn, "INSERT INTO t (a, b) VALUES (?, ?)", rows)
        assert conn.execute("SELECT a FROM t").fetchall() == [("taken",)]


class TestOptions:
    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("busy_timeout", -1),
            ("busy_timeout", "5s"),
            ("journal_mode", "wall"),
            ("synchronous", "sometimes"),
            ("lock_retries", True),
            ("wal_autocheckpoint", 1.5),
        ],
    )
    def test_bad_option_names_the_field(self, option: str, value: Any) -> None:
        """A bad store option raises ConfigError naming store.<option>."""
        with pytest.raises(ConfigError, match=f"store.{option}") as e:
            SQLiteStore(":memory:", **{option: value})
        assert e.value.field == f"store.{option}"

    def test_config_builds_a_sqlite_store(self, tmp_path: Path) -> None:
        """[store] adapter = "sqlite" builds this store with its options, path relative
        to the config file."""
        (tmp_path / "slakit.toml").write_text(
            '[store]\nadapter = "sqlite"\npath = "data.db"\nbusy_timeout = 250\n'
            "[policies.default]\nbasis = 'wall'\n"
        )
        engine = Engine.from_config(tmp_path / "slakit.toml")
        assert isinstance(engine.store, SQLiteStore)
        assert engine.store.busy_timeout == 250
        assert Path(engine.store.path) == tmp_path / "data.db"
        engine.close()

    def test_other_journal_modes_work(self, db: Path) -> None:
        """journal_mode = DELETE is honoured."""
        s = SQLiteStore(db, journal_mode="delete")
        s.insert(make_handoff("h1"))
        assert _raw(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        s.close()


class TestLocking:
    def test_persistent_lock_raises_store_error(self, db: Path, store: SQLiteStore) -> None:
        """A write lock held past every retry gives a StoreError that says so."""
        impatient = SQLiteStore(db, busy_timeout=20, lock_retries=2)
        holder = _raw(db)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked after 3 attempts"):
                impatient.insert(make_handoff("h1"))
        finally:
            holder.execute("ROLLBACK")
        impatient.insert(make_handoff("h1"))
        assert store.get("h1").id == "h1"
        impatient.close()

    def test_a_lock_released_meanwhile_is_retried(self, db: Path, store: SQLiteStore) -> None:
        """A writer that finds the database locked waits and succeeds once it is free."""
        impatient = SQLiteStore(db, busy_timeout=10, lock_retries=8)
        impatient.setup()
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.1, lambda: holder.execute("ROLLBACK"))
        timer.start()
        t = time.monotonic()
        impatient.insert(make_handoff("h1"))
        assert time.monotonic() - t >= 0.05
        timer.join()
        assert store.get("h1").id == "h1"
        impatient.close()

    def test_threads_share_one_store(self, store: SQLiteStore) -> None:
        """Engines in several threads on one store apply every step once."""
        engine = Engine(
            store=store,
            policies=[Policy.default(basis="wall")],
            clock=ManualClock(T0),
            batch_size=7,
        )
        engine.start_many(
            [
                {"id": f"h{i}", "owner": "a", "backup_owner": "b", "started_at": T0}
                for i in range(60)
            ]
        )
        errors: list[BaseException] = []

        def run() -> None:
            try:
                engine.check(T0 + timedelta(hours=2))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.escalations()) == 120
        assert len(store.outbox()) == 180


class TestEngineOnSQLite:
    def test_start_check_deliver_respond(self, store: SQLiteStore) -> None:
        """The engine runs end to end on SQLite; a response before the 2x claim cancels it."""
        clock = ManualClock(T0)
        engine = Engine(store=store, policies=[Policy.default(basis="wall")], clock=clock)
        engine.start("a", owner="alice", backup_owner="bob")
        engine.start("b", owner="carol", backup_owner="dave")
        assert engine.check(T0 + timedelta(minutes=31)).count == 2
        engine.respond("a", at=T0 + timedelta(minutes=40), by="alice")
        with capture_notifications() as sent:
            engine.deliver(T0 + timedelta(minutes=41))
            assert engine.check(T0 + timedelta(minutes=61)).count == 1
            engine.deliver(T0 + timedelta(minutes=62))
        assert [(n.handoff_id, n.stage, n.recipient) for n in sent] == [
            ("a", 0, "alice"),
            ("b", 0, "carol"),
            ("b", 1, "dave"),
            ("b", 1, "carol"),
        ]
        assert store.get("a").stopped_at == T0 + timedelta(minutes=40)
        assert store.get("b").breached is True
        assert store.next_wakeup() is None


def _hit_rate_fixture(store: SQLiteStore) -> list[Handoff]:
    clock = ManualClock(T0)
    engine = Engine(store=store, policies=[Policy.default(basis="wall")], clock=clock)
    rows: list[Handoff] = []
    for i in range(40):
        hid = f"h{i}"
        engine.start(
            hid,
            owner="alice",
            started_at=T0 + timedelta(minutes=i),
            channel=("web", "phone", None)[i % 3],
            segment="ICP" if i % 2 else None,
        )
        kind = i % 5
        if kind == 0:
            engine.respond(hid, at=T0 + timedelta(minutes=i + 10))
        elif kind == 1:
            engine.respond(hid, at=T0 + timedelta(minutes=i + 45))
        elif kind == 2:
            engine.cancel(hid, at=T0 + timedelta(minutes=i + 1))
        elif kind == 3:
            engine.pause(hid, at=T0 + timedelta(minutes=i + 5))
        rows.append(store.get(hid))
    return rows


class TestAggregateHitRate:
    def test_counts_agree_with_classify(self, store: SQLiteStore) -> None:
        """SQL counts per group equal slakit.metrics.classify on every handoff."""
        rows = _hit_rate_fixture(store)
        now = T0 + timedelta(minutes=55)
        since, until = T0 + timedelta(minutes=3), T0 + timedelta(minutes=33)
        got = store.aggregate_hit_rate(since=since, until=until, by=["channel", "segment"], now=now)
        assert got is not None
        expected: dict[tuple[Any, ...], dict[str, int]] = {}
        for h in rows:
            if not since <= h.started_at < until:
                continue
            slot = expected.setdefault(
                (h.channel, h.segment),
                {f"{b}_{o}": 0 for b in ("wall", "business") for o in ("met", "missed", "pending")}
                | {"excluded": 0},
            )
            for basis in ("wall", "business"):
                outcome = classify(h, basis, now)
                if outcome == "excluded":
                    continue
                slot[f"{basis}_{outcome}"] += 1
            if h.cancelled_at is not None:
                slot["excluded"] += 1
        assert {
            (g["channel"], g["segment"]): {
                k: v for k, v in g.items() if k not in ("channel", "segment")
            }
            for g in got
        } == expected
        assert sum(g["wall_missed"] for g in got) > 0
        assert sum(g["wall_pending"] for g in got) > 0

    def test_no_groups_and_booleans(self, store: SQLiteStore) -> None:
        """Without keys it gives one total; boolean columns come back as bools."""
        _hit_rate_fixture(store)
        now = T0 + timedelta(days=1)
        (total,) = store.aggregate_hit_rate(since=None, until=None, by=(), now=now) or []
        assert total["excluded"] == 8
        assert total["wall_met"] + total["wall_missed"] + total["wall_pending"] == 32
        groups = store.aggregate_hit_rate(
            since=None, until=None, by=["within_business_hours"], now=now
        )
        assert groups is not None
        assert {g["within_business_hours"] for g in groups} <= {True, False, None}

    def test_empty_window_and_unknown_keys(self, store: SQLiteStore) -> None:
        """An empty window gives no groups; keys that are not columns go to Python."""
        assert store.aggregate_hit_rate(since=T0, until=T0, by=(), now=T0) == []
        by_tier = store.aggregate_hit_rate(since=None, until=None, by=["attributes.tier"], now=T0)
        assert by_tier == []
        for key in ("id; DROP", 'attributes.a"b', "attributes.a\\b", "attributes."):
            assert store.aggregate_hit_rate(since=None, until=None, by=[key], now=T0) is None

    def test_hit_rate_uses_the_store(self, store: SQLiteStore) -> None:
        """slakit.hit_rate on this store is computed in SQL."""
        _hit_rate_fixture(store)
        report = slakit.hit_rate(store, by=("channel",), basis="wall", now=T0 + timedelta(days=1))
        assert report.computed_by == "store"

    @pytest.mark.parametrize(
        "key",
        ["backup_owner", "responded_by", "breached", "breach_reason", "stage", "cancel_reason"],
    )
    def test_every_groupable_column_agrees_with_python(self, store: SQLiteStore, key: str) -> None:
        """hit_rate groups by each column the SQL aggregate can, with the counts and
        labels Python gives over the same handoffs."""
        clock = ManualClock(T0)
        engine = Engine(store=store, policies=[Policy.default(basis="wall")], clock=clock)
        for i in range(12):
            hid = f"g{i}"
            engine.start(hid, owner="alice", backup_owner=("bob", None)[i % 2], started_at=T0)
            if i % 3 == 0:
                engine.respond(hid, at=T0 + timedelta(minutes=10), by=("ann", "raj")[i % 2])
            elif i % 3 == 1:
                engine.cancel(hid, at=T0 + timedelta(minutes=5), reason="spam")
        clock.set(T0 + timedelta(hours=2))
        engine.check()
        for hid in ("g2", "g5"):
            engine.tag_breach(hid, ("slow", "holiday")[hid == "g5"])
        now = T0 + timedelta(hours=3)
        sql = slakit.hit_rate(store, by=key, now=now)
        python = slakit.hit_rate(list(store.iter_handoffs()), by=key, now=now)
        assert sql.computed_by == "store"
        assert python.computed_by != "store"
        assert sql.to_dict()["groups"] == python.to_dict()["groups"]
        assert len(sql.groups) > 1


# -- binding None ------------------------------------------------------------------


def test_none_binds_as_null() -> None:
    conn = sqlite3.connect(":memory:")
    assert conn.execute("SELECT ? IS NULL, typeof(?)", (None, None)).fetchone() == (1, "null")
    key = (type(None), sqlite3.PrepareProtocol)
    if sys.version_info < (3, 12):
        # Before 3.12 the store registers the quick adapter for None at import.
        assert sqlite3.adapters[key] is sqlite_module._return_none
    else:
        assert key not in sqlite3.adapters


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the adapter is only for Python < 3.12")
def test_an_adapter_for_none_registered_elsewhere_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def theirs(value: None) -> str:
        return "null-ish"

    key = (type(None), sqlite3.PrepareProtocol)
    monkeypatch.setitem(sqlite3.adapters, key, theirs)
    sqlite_module._bind_none_quickly()
    assert sqlite3.adapters[key] is theirs


def test_a_removed_database_file_is_an_outage_not_an_empty_store(tmp_path: Path) -> None:
    """Connections opened before the file was deleted keep writing to the deleted file;
    the run loop's per-tick wake-up query says so instead of reporting nothing due."""
    from slakit.errors import StoreError

    path = tmp_path / "gone.db"
    store = SQLiteStore(path)
    store.setup()
    assert store.next_wakeup() is None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="removed or replaced"):
        store.next_wakeup()
    SQLiteStore(path).setup()  # another file under the same name
    with pytest.raises(StoreError, match="removed or replaced"):
        store.next_wakeup()
    store.close()
