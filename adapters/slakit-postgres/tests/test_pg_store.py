"""The PostgreSQL store beyond the contract: schema, config, errors, plugin, wake-ups, reports."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slakit
from pg_support import find_server, require_server
from slakit.errors import (
    ConfigError,
    DuplicateHandoffError,
    SchemaVersionError,
    StoreUnavailableError,
    TransientNotifyError,
)
from slakit.handoff import Handoff
from slakit.plugins import Plugins, get_plugin_manager
from slakit.records import Escalation, Notification, StepApplication
from slakit.testing import capture_notifications
from slakit.testing.store_contract import (
    make_handoff,
    make_notification,
    make_outbox_row,
    make_trace,
)
from slakit_postgres import PostgresStore
from slakit_postgres.schema import LATEST_VERSION
from slakit_postgres.store import _PURGEABLE, HANDOFF_COLUMNS

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params or None)
        return cur.fetchall() if cur.description else []


def _terminate(dsn: str, application_name: str) -> list[tuple[Any, ...]]:
    """Have the server drop every connection opened under ``application_name``."""
    return _sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        application_name,
    )


@pytest.fixture
def new_store(
    pg_dsn: str, fresh_schema: Callable[[], str]
) -> Iterator[Callable[..., PostgresStore]]:
    """Makes stores on fresh schemas; closes them after the test."""
    made: list[PostgresStore] = []

    def make(schema: str | None = None, **kw: Any) -> PostgresStore:
        store = PostgresStore(pg_dsn, schema=schema or fresh_schema(), **kw)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


class TestSchema:
    def test_setup_creates_one_column_per_handoff_field(self, pg_store: PostgresStore) -> None:
        """The handoffs table has one column per Handoff field, plus the claim lease."""
        rows = _sql(
            pg_store.dsn,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'handoffs'",
            pg_store.schema,
        )
        assert {r[0] for r in rows} == {*HANDOFF_COLUMNS, "claimed_by", "claim_until"}
        assert set(HANDOFF_COLUMNS) == {a.name for a in attrs.fields(Handoff)}

    def test_setup_records_version_and_indexes(self, pg_store: PostgresStore) -> None:
        """The schema version is recorded; the due index is partial; rows are unique."""
        versions = _sql(pg_store.dsn, f"SELECT version FROM {pg_store.schema}.schema_version")
        assert sorted(versions) == [(v,) for v in range(1, LATEST_VERSION + 1)]
        (indexdef,) = _sql(
            pg_store.dsn,
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            pg_store.schema,
            "handoffs_next_due",
        )[0]
        assert "WHERE (next_due_at IS NOT NULL)" in indexdef
        constraints = {
            r[0]
            for r in _sql(
                pg_store.dsn,
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s",
                pg_store.schema,
            )
        }
        assert "UNIQUE (handoff_id, stage)" in constraints
        assert "UNIQUE (notifier, idempotency_key)" in constraints

    def test_timestamps_are_timestamptz(self, pg_store: PostgresStore) -> None:
        """Every *_at column is timestamptz."""
        rows = _sql(
            pg_store.dsn,
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND column_name LIKE '%%\\_at'",
            pg_store.schema,
        )
        assert rows
        assert {r[2] for r in rows} == {"timestamp with time zone"}

    def test_concurrent_setup_migrates_once(self, new_store: Callable[..., PostgresStore]) -> None:
        """Several workers setting up a new schema at once all succeed; it is migrated once."""
        schema = new_store().schema
        stores = [new_store(schema) for _ in range(6)]
        barrier = threading.Barrier(len(stores))
        errors: list[BaseException] = []

        def run(store: PostgresStore) -> None:
            barrier.wait()
            try:
                store.setup()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        count = _sql(stores[0].dsn, f"SELECT count(*) FROM {schema}.schema_version")
        assert count == [(LATEST_VERSION,)]  # each migration once

    def test_newer_schema_raises(self, new_store: Callable[..., PostgresStore]) -> None:
        """A schema migrated by a newer release raises SchemaVersionError naming both versions."""
        store = new_store()
        store.setup()
        _sql(
            store.dsn,
            f"INSERT INTO {store.schema}.schema_version (version, description) VALUES (99, 'x')",
        )
        again = new_store(store.schema)
        with pytest.raises(SchemaVersionError, match=rf"is 99, newer than {LATEST_VERSION}"):
            again.setup()

    def test_version_1_schema_migrates_forward_keeping_rows(
        self, new_store: Callable[..., PostgresStore]
    ) -> None:
        """A schema left at version 1 gains the dead-letter index; its rows stay."""
        old = new_store()
        old.setup()
        old.insert(make_handoff("kept"))
        _sql(old.dsn, f"DROP INDEX {old.schema}.outbox_dead")
        _sql(old.dsn, f"DELETE FROM {old.schema}.schema_version WHERE version > 1")
        again = new_store(old.schema)
        again.setup()
        assert again.get("kept").id == "kept"
        assert _sql(
            again.dsn,
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'outbox_dead'",
            again.schema,
        ) == [
            (
                f"CREATE INDEX outbox_dead ON {again.schema}.outbox USING btree (seq) "
                "WHERE (state = 'dead'::text)",
            )
        ]
        versions = _sql(again.dsn, f"SELECT max(version) FROM {again.schema}.schema_version")
        assert versions == [(LATEST_VERSION,)]

    def test_schemas_isolate(self, new_store: Callable[..., PostgresStore]) -> None:
        """Two stores on different schemas of one database do not see each other's rows."""
        a, b = new_store(), new_store()
        a.setup()
        b.setup()
        a.insert(make_handoff("only-in-a"))
        assert a.count() == 1
        assert b.count() == 0


class TestConfig:
    def test_unknown_option_names_it(self) -> None:
        """An unknown [store] option raises ConfigError naming the key."""
        with pytest.raises(ConfigError, match="'poolsize'"):
            PostgresStore.from_config({"dsn": "", "poolsize": 3})

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"schema": "bad-name"}, "store.schema"),
            ({"schema": "1abc"}, "store.schema"),
            ({"notify_channel": "a b"}, "store.notify_channel"),
            ({"min_size": 0}, "store.min_size"),
            ({"min_size": 4, "max_size": 2}, "store.max_size"),
            ({"connect_timeout": -1}, "store.connect_timeout"),
            ({"connect_timeout": float("inf")}, "store.connect_timeout"),
            ({"pool_timeout": float("nan")}, "store.pool_timeout"),
            ({"dsn": "host=x port"}, "store.dsn"),
            ({"application_name": 5}, "store.application_name"),
            ({"application_name": "a\nb"}, "store.application_name"),
        ],
    )
    def test_bad_values_raise(self, options: dict[str, Any], field: str) -> None:
        """A bad option value raises ConfigError naming the field."""
        with pytest.raises(ConfigError) as info:
            PostgresStore.from_config(options)
        assert info.value.field == field
        assert field in str(info.value)

    def test_a_malformed_dsn_is_named_without_its_password(self) -> None:
        """libpq quotes the whole string in its message; the error names the problem only."""
        with pytest.raises(ConfigError, match="not a valid PostgreSQL connection string") as info:
            PostgresStore.from_config({"dsn": "postgresql://u:hunter2@[x/db"})
        assert "hunter2" not in str(info.value)
        assert info.value.value == "<hidden>"

    def test_constructor_does_not_connect(self) -> None:
        """Building a store opens no connection; an unreachable server is found at setup."""
        PostgresStore("host=127.0.0.1 port=1")

    def test_pg_environment_variables(
        self, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, fresh_schema: Callable[[], str]
    ) -> None:
        """Without a dsn, libpq's PG* environment variables pick the server."""
        params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
        monkeypatch.setenv("PGHOST", str(params["host"]))
        monkeypatch.setenv("PGPORT", str(params["port"]))
        monkeypatch.setenv("PGDATABASE", str(params["dbname"]))
        if params.get("user"):
            monkeypatch.setenv("PGUSER", str(params["user"]))
        store = PostgresStore.from_config({"schema": fresh_schema()})
        try:
            store.setup()
            assert store.count() == 0
            assert store.target == f"{params['host']}:{params['port']}"
        finally:
            store.close()


class TestUnavailable:
    def test_unreachable_server_is_one_line_naming_host_and_port(self) -> None:
        """An unreachable server raises StoreUnavailableError with host:port, on one line."""
        store = PostgresStore("host=127.0.0.1 port=1 dbname=x", connect_timeout=2)
        with pytest.raises(StoreUnavailableError) as info:
            store.setup()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith("PostgreSQL at 127.0.0.1:1 is unavailable: ")
        assert info.value.value == "127.0.0.1:1"

    def test_closed_store_refuses(self, pg_dsn: str) -> None:
        """A closed store raises instead of reconnecting."""
        store = PostgresStore(pg_dsn)
        store.close()
        with pytest.raises(slakit.errors.StoreError, match="closed"):
            store.count()


class TestServerFixture:
    """The rule the conftest fixture applies when the test server is unreachable."""

    @pytest.fixture
    def unreachable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SLAKIT_TEST_PG_DSN", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")

    @pytest.mark.usefixtures("unreachable")
    def test_skips_with_reason_outside_ci(self) -> None:
        """Without CI, an unreachable server skips with a reason naming host and port."""
        with pytest.raises(pytest.skip.Exception, match=r"no PostgreSQL server reachable at 127"):
            require_server(ci=False)

    @pytest.mark.usefixtures("unreachable")
    def test_fails_under_ci(self) -> None:
        """With CI set, an unreachable server is a failure, not a skip."""
        with pytest.raises(pytest.fail.Exception, match="CI is set"):
            require_server(ci=True)

    def test_reachable_server_is_found(self) -> None:
        """The machine's server is found when it runs."""
        dsn, reason = find_server()
        assert dsn is not None, reason


class TestPlugin:
    def test_imports_stay_light(self) -> None:
        """Importing slakit or the plugin module does not import psycopg."""
        code = (
            "import sys, slakit, slakit_postgres, slakit_postgres.plugin\n"
            "from slakit.plugins import Plugins, get_plugin_manager\n"
            "assert 'postgres' in Plugins(get_plugin_manager(autoload=True)).stores()\n"
            "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "SLAKIT_DISABLE_PLUGIN_AUTOLOAD"}
        subprocess.run([sys.executable, "-c", code], check=True, env=env)

    def test_registered_by_entry_point(self, pg_dsn: str, fresh_schema: Callable[[], str]) -> None:
        """The entry point registers 'postgres'; its factory builds a PostgresStore."""
        plugins = Plugins(get_plugin_manager(autoload=True))
        store = plugins.make_store("postgres", dsn=pg_dsn, schema=fresh_schema())
        assert isinstance(store, PostgresStore)
        assert store.multi_process

    def test_engine_from_config(self, pg_dsn: str, fresh_schema: Callable[[], str]) -> None:
        """Engine.from_config with adapter 'postgres' runs start, check and deliver."""
        engine = slakit.Engine.from_config(
            {
                "store": {"adapter": "postgres", "dsn": pg_dsn, "schema": fresh_schema()},
                "policies": {"p": {"basis": "wall"}},
            },
            clock=slakit.ManualClock(T0),
            plugins=Plugins(get_plugin_manager(autoload=True)),
        )
        with engine, capture_notifications() as sent:
            engine.start("lead-1", owner="alice")
            assert engine.check(T0 + timedelta(minutes=31)).count == 1
            assert engine.deliver(T0 + timedelta(minutes=31)).sent == 1
        assert [n.recipient for n in sent] == ["alice"]
        assert isinstance(engine.store, PostgresStore)


class TestBulkInsert:
    def test_insert_many_round_trips_every_field(self, pg_store: PostgresStore) -> None:
        """Rows written by COPY come back equal, attributes and traces included."""
        rows = [
            make_handoff(
                f"b{i}",
                channel="web",
                attributes={"n": i, "tags": ["a", "b"], "nested": {"x": None}},
                within_business_hours=bool(i % 2),
                paused_seconds=1.5 * i,
                next_due_at=None if i == 3 else T0 + timedelta(minutes=i),
            )
            for i in range(20)
        ]
        traces = [make_trace(h.id, detail={"i": h.id}) for h in rows]
        assert pg_store.insert_many(rows, traces) == 20
        assert [pg_store.get(h.id) for h in rows] == rows
        assert pg_store.traces("b7") == [traces[7]]

    def test_insert_many_duplicate_names_the_id(self, pg_store: PostgresStore) -> None:
        """A duplicate id in a bulk insert is named in the error; nothing is written."""
        pg_store.insert(make_handoff("dup-7"))
        with pytest.raises(DuplicateHandoffError, match="'dup-7'"):
            pg_store.insert_many([make_handoff("new"), make_handoff("dup-7")])
        assert pg_store.count() == 1

    def test_iter_handoffs_pages_in_order(self, pg_store: PostgresStore) -> None:
        """iter_handoffs reads in pages and yields by started_at then id."""
        rows = [
            make_handoff(f"p{i:03d}", started_at=T0 + timedelta(seconds=i % 7)) for i in range(50)
        ]
        pg_store.insert_many(rows)
        got = [h.id for h in pg_store.iter_handoffs(page_size=8)]
        assert got == [h.id for h in sorted(rows, key=lambda h: (h.started_at, h.id))]


def _step(h: Handoff, notifications: tuple[Notification, ...] = ()) -> StepApplication:
    """Stage 0 → 1 of ``h`` with its escalation row and the given notifications."""
    return StepApplication(
        handoff=attrs.evolve(h, stage=1, next_due_at=h.started_at + timedelta(hours=1)),
        expected_version=h.version,
        expected_stage=0,
        escalations=(
            Escalation(handoff_id=h.id, stage=0, step="1x", applied_at=T0, outcome="applied"),
        ),
        notifications=notifications,
        traces=(make_trace(h.id, rule="step:1x"),),
    )


class TestApplySteps:
    def _app(self, h: Handoff) -> StepApplication:
        return _step(h, notifications=(make_notification(h.id),))

    def test_batch_writes_each_step_on_its_own_terms(self, pg_store: PostgresStore) -> None:
        """A batch applies the valid steps and refuses the others, each all-or-nothing."""
        hs = [pg_store.insert(make_handoff(f"b{i}")) for i in range(5)]
        pg_store.update(attrs.evolve(hs[1], owner="carol"), hs[1].version)  # b1 goes stale
        assert pg_store.apply_step(self._app(hs[2]))
        rewound = pg_store.get("b2")
        pg_store.update(attrs.evolve(rewound, stage=0), rewound.version)  # b2: escalation exists
        twice = make_notification("b3")
        apps = [
            self._app(hs[0]),
            self._app(hs[1]),
            self._app(pg_store.get("b2")),
            _step(hs[3], notifications=(twice, twice)),
            self._app(hs[4]),
        ]
        assert pg_store.apply_steps(apps) == [True, False, False, False, True]
        assert [(e.handoff_id, e.stage) for e in pg_store.escalations()] == [
            ("b0", 0),
            ("b2", 0),
            ("b4", 0),
        ]
        assert sorted(i.notification.handoff_id for i in pg_store.outbox()) == ["b0", "b2", "b4"]
        assert [h.stage for h in pg_store.iter_handoffs()] == [1, 0, 0, 0, 1]
        assert pg_store.get("b0").version == hs[0].version + 1

    def test_racing_batches_apply_each_step_once(self, pg_store: PostgresStore) -> None:
        """Threads racing with batches of the same steps apply each exactly once."""
        hs = [pg_store.insert(make_handoff(f"r{i}", next_due_at=T0)) for i in range(80)]
        apps = [self._app(h) for h in hs]
        wins: list[bool] = []

        def race() -> None:
            wins.extend(pg_store.apply_steps(apps))

        threads = [threading.Thread(target=race) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(wins) == 80
        assert len(pg_store.escalations()) == 80
        assert len(pg_store.outbox()) == 80

    def test_unique_clash_the_guards_cannot_see_falls_back(self, pg_store: PostgresStore) -> None:
        """A key written by a concurrent, uncommitted transaction fails only its own step."""
        hs = [pg_store.insert(make_handoff(f"c{i}")) for i in range(3)]
        taken = make_notification("c1")
        with psycopg.connect(pg_store.dsn) as other:
            other.execute(
                f"INSERT INTO {pg_store.schema}.outbox (notifier, idempotency_key, recipient,"
                " handoff_id, stage, step, action, subject, text, trace_id, policy, created_at)"
                " VALUES (%s, %s, 'x', 'elsewhere', 0, '1x', 'notify:owner', 's', 't', 't',"
                " 'p', now())".encode(),
                (taken.notifier, taken.idempotency_key),
            )
            timer = threading.Timer(0.5, other.commit)
            timer.start()
            try:
                results = pg_store.apply_steps([self._app(h) for h in hs])
            finally:
                timer.join()
        assert results == [True, False, True]
        assert [e.handoff_id for e in pg_store.escalations()] == ["c0", "c2"]

    def test_generic_plans_stay_inside_the_batch(self, pg_store: PostgresStore) -> None:
        """A batch plans its step statements once (generic plans), and only its own.

        The connection keeps ``force_custom_plan`` for every other statement
        (the claims choose their index by the table's size).
        """
        with pg_store._connection() as conn:
            for batch in range(8):  # past psycopg's prepare threshold
                hs = [pg_store.insert(make_handoff(f"g{batch}-{i}")) for i in range(3)]
                with conn.transaction():
                    assert pg_store._apply_batch(conn, [self._app(h) for h in hs]) == [True] * 3
                    assert conn.execute("SHOW plan_cache_mode").fetchone() == (
                        "force_generic_plan",
                    )
                assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
        assert len(pg_store.escalations()) == 24

    def test_unknown_handoff_raises(self, pg_store: PostgresStore) -> None:
        """A batch naming a handoff that does not exist raises UnknownHandoffError."""
        h = pg_store.insert(make_handoff("known"))
        with pytest.raises(slakit.errors.UnknownHandoffError, match="ghost"):
            pg_store.apply_steps([self._app(h), self._app(make_handoff("ghost"))])


class _Waker:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.calls = 0

    def wake(self) -> None:
        self.calls += 1
        self.event.set()


class TestListen:
    @pytest.fixture
    def listening(self, pg_store: PostgresStore) -> Iterator[_Waker]:
        waker, stop = _Waker(), threading.Event()
        thread = pg_store.listen(waker, stop, poll_interval=0.1)
        try:
            # The listener wakes once on connect; wait for it so later wakes are ours.
            assert waker.event.wait(5)
            waker.event.clear()
            yield waker
        finally:
            stop.set()
            thread.join(5)
            assert not thread.is_alive()

    def test_insert_wakes(self, pg_store: PostgresStore, listening: _Waker) -> None:
        """Inserting a handoff with a due time wakes listeners."""
        pg_store.insert(make_handoff("h1"))
        assert listening.event.wait(5)

    def test_due_moved_earlier_wakes_later_does_not(
        self, pg_store: PostgresStore, listening: _Waker
    ) -> None:
        """An update that moves next_due_at later sends nothing; earlier wakes listeners."""
        h = pg_store.insert(make_handoff("h1"))
        assert listening.event.wait(5)
        listening.event.clear()
        h = pg_store.update(attrs.evolve(h, next_due_at=T0 + timedelta(hours=5)), h.version)
        assert not listening.event.wait(0.5)
        pg_store.update(attrs.evolve(h, next_due_at=T0), h.version)
        assert listening.event.wait(5)

    def test_requeue_wakes_nothing_requeued_does_not(
        self, pg_store: PostgresStore, listening: _Waker
    ) -> None:
        """Requeued dead rows are due at once, so listeners wake; a no-op stays quiet."""
        item = make_outbox_row(pg_store, "h1", "dead", error="boom")
        time.sleep(0.3)
        listening.event.clear()
        assert pg_store.requeue_outbox([item], now=T0) == [True]
        assert listening.event.wait(5)
        listening.event.clear()
        assert pg_store.requeue_outbox([item], now=T0) == [False]
        assert not listening.event.wait(0.5)

    def test_callable_target(self, pg_store: PostgresStore) -> None:
        """A plain callable works as the target too."""
        woke, stop = threading.Event(), threading.Event()
        thread = pg_store.listen(woke.set, stop, poll_interval=0.1)
        assert woke.wait(5)
        stop.set()
        thread.join(5)

    def test_notify_wakes_a_sleeping_run_loop(
        self, pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """engine.run sleeping on a long interval applies a new due step within seconds."""
        schema = fresh_schema()
        policy = slakit.Policy.default(basis="wall")
        runner = slakit.Engine(PostgresStore(pg_dsn, schema=schema), policies=[policy])
        writer = slakit.Engine(PostgresStore(pg_dsn, schema=schema), policies=[policy])
        runner.setup()
        stop = threading.Event()
        listener = runner.store.listen(runner, stop, poll_interval=0.1)  # type: ignore[attr-defined]
        applied = threading.Event()

        def on_tick(check: slakit.CheckResult, _delivery: slakit.DeliveryResult) -> None:
            if check.count:
                applied.set()

        loop = threading.Thread(target=runner.run, kwargs={"interval": 60, "on_tick": on_tick})
        with capture_notifications():
            loop.start()
            try:
                time.sleep(0.5)  # let the loop go to sleep on its 60 s interval
                started = time.monotonic()
                writer.start(
                    "late-lead", owner="alice", started_at=datetime.now(UTC) - timedelta(minutes=31)
                )
                assert applied.wait(10)
                assert time.monotonic() - started < 10
                assert runner.store.escalations("late-lead")[0].stage == 0
            finally:
                runner.stop()
                loop.join(10)
                stop.set()
                listener.join(5)
                runner.close()
                writer.close()


class TestOutage:
    def test_run_loop_survives_its_connections_being_killed(
        self, pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """The server drops every connection of a running loop; the loop goes on after."""
        schema = fresh_schema()
        policy = slakit.Policy.default(basis="wall")
        name = f"slakit-outage-{schema}"
        runner = slakit.Engine(
            PostgresStore(pg_dsn, schema=schema, application_name=name), policies=[policy]
        )
        writer = slakit.Engine(PostgresStore(pg_dsn, schema=schema), policies=[policy])
        runner.setup()
        applied: list[int] = []
        loop = threading.Thread(
            target=runner.run,
            kwargs={"interval": 0.1, "on_tick": lambda c, d: applied.append(c.count)},
        )
        with capture_notifications():
            loop.start()
            try:
                deadline = time.monotonic() + 10
                while not applied and time.monotonic() < deadline:
                    time.sleep(0.05)
                killed = _terminate(pg_dsn, name)
                assert killed  # the loop's pooled connections were there, and are gone
                writer.start(
                    "after-outage", owner="a", started_at=datetime.now(UTC) - timedelta(minutes=31)
                )
                while sum(applied) == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert sum(applied) == 1
                assert loop.is_alive()
                assert [e.stage for e in writer.store.escalations("after-outage")] == [0]
            finally:
                runner.stop()
                loop.join(10)
                runner.close()
                writer.close()
        assert not loop.is_alive()


class TestDeadPooledConnections:
    def test_one_failure_clears_every_dead_connection(
        self, pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """After the server drops the pool's connections (a restart, a failover), the
        first statement fails and the pool is checked at once: the next one works,
        instead of each dead connection failing a statement of its own."""
        schema = fresh_schema()
        name = f"slakit-dead-{schema}"
        store = PostgresStore(pg_dsn, schema=schema, application_name=name, min_size=4, max_size=4)
        try:
            store.setup()
            # Four connections open and idle in the pool.
            threads = [threading.Thread(target=store.count) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            deadline = time.monotonic() + 10
            while store._open().get_stats().get("pool_available", 0) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            killed = _terminate(pg_dsn, name)
            assert len(killed) == 4
            failures = 0
            for _ in range(5):
                try:
                    assert store.count() == 0
                    break
                except slakit.errors.StoreUnavailableError:
                    failures += 1
            assert failures == 1
        finally:
            store.close()


def _stop(store: PostgresStore, hid: str) -> None:
    """Stop ``hid``'s clock at T0, so that a purge after T0 may take it."""
    h = store.get(hid)
    store.update(attrs.evolve(h, stopped_at=T0, next_due_at=None), h.version)


class TestRequeueAgainstPurge:
    def test_a_requeue_never_lands_on_a_handoff_a_purge_has_chosen(
        self, pg_store: PostgresStore, pg_dsn: str
    ) -> None:
        """A purge locks the handoffs it chose, then deletes their rows in the same
        statement. A requeue arriving in between waits for it and then finds nothing,
        instead of reporting a row put back in the queue that the purge deletes."""
        item = make_outbox_row(pg_store, "h1", "dead", error="boom")
        _stop(pg_store, "h1")
        before = T0 + timedelta(days=1)
        # The purge's two halves, held apart: choose and lock, then delete.
        purge = psycopg.connect(pg_dsn, options=f"-c search_path={pg_store.schema}")
        try:
            chosen = purge.execute(
                f"{_PURGEABLE} FOR UPDATE SKIP LOCKED", {"before": before, "limit": None}
            ).fetchall()
            assert chosen == [("h1",)]
            result: list[list[bool]] = []
            requeue = threading.Thread(
                target=lambda: result.append(pg_store.requeue_outbox([item], now=T0))
            )
            requeue.start()
            requeue.join(0.5)
            assert requeue.is_alive(), "the requeue went ahead of the purge holding its handoff"
            for table, column in (
                ("escalations", "handoff_id"),
                ("outbox", "handoff_id"),
                ("traces", "handoff_id"),
                ("handoffs", "id"),
            ):
                purge.execute(f"DELETE FROM {table} WHERE {column} = 'h1'")
            purge.commit()
            requeue.join(10)
        finally:
            purge.close()
        assert result == [[False]]
        assert pg_store.outbox("h1") == []
        assert pg_store.traces("h1") == []  # and no requeue line left behind

    def test_a_requeue_in_progress_makes_the_purge_skip_the_handoff(
        self, pg_store: PostgresStore, pg_dsn: str
    ) -> None:
        """The other order: while a requeue holds the handoff, a purge passes it over."""
        make_outbox_row(pg_store, "h1", "dead", error="boom")
        _stop(pg_store, "h1")
        holder = psycopg.connect(pg_dsn, options=f"-c search_path={pg_store.schema}")
        try:
            holder.execute("SELECT 1 FROM handoffs WHERE id = 'h1' FOR KEY SHARE")
            counts = pg_store.purge(T0 + timedelta(days=1))
            assert counts.handoffs == 0
        finally:
            holder.rollback()
            holder.close()
        assert pg_store.purge(T0 + timedelta(days=1)).handoffs == 1


class TestSkewedClock:
    def _engine(self, store: PostgresStore, now: datetime) -> slakit.Engine:
        return slakit.Engine(
            store, policies=[slakit.Policy.default(basis="wall")], clock=slakit.ManualClock(now)
        )

    def test_fast_clock_fires_nothing_early(self, pg_store: PostgresStore) -> None:
        """A worker whose clock runs 10 minutes fast fires only what the database says is due."""
        db_now = pg_store.database_now()
        fast = self._engine(pg_store, db_now + timedelta(minutes=10))
        fast.start("due", owner="a", started_at=db_now - timedelta(minutes=35))
        fast.start("soon", owner="a", started_at=db_now - timedelta(minutes=25))
        # 1x was due a minute ago; 2x is due in 4 minutes, inside the fast clock's lead.
        fast.start("chain", owner="a", sla_minutes=5, started_at=db_now - timedelta(minutes=6))
        with capture_notifications() as sent:
            result = fast.check(fast.clock.now())
            delivered = fast.deliver(fast.clock.now())
        checked_at = pg_store.database_now()
        assert sorted((a.handoff_id, a.stage) for a in result.applied) == [
            ("chain", 0),
            ("due", 0),
        ]
        assert all(a.due_at <= checked_at for a in result.applied)
        assert pg_store.get("soon").stage == 0
        assert pg_store.get("chain").stage == 1
        assert [(e.handoff_id, e.stage) for e in pg_store.escalations()] == [
            ("chain", 0),
            ("due", 0),
        ]
        assert delivered.sent == 2
        assert sorted(n.handoff_id for n in sent) == ["chain", "due"]

    def test_fast_clock_coalesces_nothing_early(self, pg_store: PostgresStore) -> None:
        """With coalesce, a fast worker still plans as of the database's clock."""
        db_now = pg_store.database_now()
        policy = slakit.Policy.from_config({"basis": "wall", "coalesce": True}, name="p")
        fast = slakit.Engine(
            pg_store, policies=[policy], clock=slakit.ManualClock(db_now + timedelta(minutes=10))
        )
        # 1x was due a minute ago; 2x is due in 4 minutes, inside the fast clock's lead.
        fast.start("chain", owner="a", sla_minutes=5, started_at=db_now - timedelta(minutes=6))
        with capture_notifications():
            result = fast.check(fast.clock.now())
        assert [(a.stage, a.outcome) for a in result.applied] == [(0, "applied")]
        assert pg_store.get("chain").stage == 1
        steps = [t for t in pg_store.traces("chain") if t.rule.startswith("step:")]
        assert steps
        assert all(t.at <= pg_store.database_now() for t in steps)

    def test_slow_clock_is_late_never_early(self, pg_store: PostgresStore) -> None:
        """A worker whose clock runs behind fires what is due at its own (earlier) time."""
        db_now = pg_store.database_now()
        slow = self._engine(pg_store, db_now - timedelta(minutes=10))
        slow.start("a", owner="a", started_at=db_now - timedelta(minutes=45))
        slow.start("b", owner="a", started_at=db_now - timedelta(minutes=35))
        with capture_notifications():
            result = slow.check(slow.clock.now())
        assert [(a.handoff_id, a.stage) for a in result.applied] == [("a", 0)]


class TestOutboxLeaseInRealTime:
    def test_expired_lease_is_reclaimed_and_late_completion_rejected(
        self, pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """A worker stuck in send loses its lease; another sends; the late ack is rejected."""
        schema = fresh_schema()
        entered, release = threading.Event(), threading.Event()
        sends: list[str] = []

        class Stuck(slakit.Notifier):
            name = "pager"

            def send(self, notification: slakit.Notification) -> None:
                entered.set()
                release.wait(10)
                sends.append(f"slow:{notification.idempotency_key}")

        class Quick(slakit.Notifier):
            name = "pager"

            def send(self, notification: slakit.Notification) -> None:
                sends.append(f"quick:{notification.idempotency_key}")

        policy = slakit.Policy.default(basis="wall")
        slow = slakit.Engine(
            PostgresStore(pg_dsn, schema=schema), [policy], [Stuck()], outbox_lease=1.0
        )
        quick = slakit.Engine(
            PostgresStore(pg_dsn, schema=schema), [policy], [Quick()], outbox_lease=1.0
        )
        try:
            slow.start("h1", owner="alice", started_at=datetime.now(UTC) - timedelta(minutes=31))
            assert slow.check().count == 1
            result: list[slakit.DeliveryResult] = []
            t = threading.Thread(target=lambda: result.append(slow.deliver()))
            t.start()
            assert entered.wait(5)
            assert quick.deliver().sent == 0  # lease still running
            time.sleep(1.2)
            assert quick.deliver().sent == 1  # lease ran out: reclaimed
            release.set()
            t.join(10)
            assert result[0].lost == 1
            assert result[0].sent == 0
            (row,) = quick.store.outbox()
            assert row.state == "sent"
            assert row.attempts == 1
            assert sorted(sends) == [
                "quick:h1:0:notify:owner:alice",
                "slow:h1:0:notify:owner:alice",
            ]
        finally:
            slow.close()
            quick.close()


# -- hit rate ------------------------------------------------------------

_DEADLINE = T0 + timedelta(hours=1)


@st.composite
def _handoffs(draw: st.DrawFn) -> list[Handoff]:
    out = []
    for i in range(draw(st.integers(0, 25))):
        start = T0 + timedelta(minutes=draw(st.integers(0, 600)))
        wall = start + timedelta(minutes=draw(st.sampled_from([15, 30, 60])))
        business = draw(st.one_of(st.none(), st.just(wall), st.just(wall + timedelta(hours=16))))
        fate = draw(st.sampled_from(["open", "stopped", "cancelled", "paused"]))
        stop_after = timedelta(minutes=draw(st.sampled_from([0, 15, 30, 45, 60, 900])))
        out.append(
            Handoff(
                id=f"r{i}",
                policy=draw(st.sampled_from(["a", "b"])),
                started_at=start,
                channel=draw(st.sampled_from([None, "web", "phone"])),
                within_business_hours=draw(st.sampled_from([None, True, False])),
                attributes={"tier": draw(st.sampled_from([1, 2, "gold", None]))},
                wall_deadline_at=wall,
                business_deadline_at=business,
                stopped_at=start + stop_after if fate == "stopped" else None,
                cancelled_at=start + stop_after if fate == "cancelled" else None,
                paused_at=start + stop_after if fate == "paused" else None,
                version=1,
            )
        )
    return out


class TestHitRateInSQL:
    def test_counts_follow_the_rules(self, pg_store: PostgresStore) -> None:
        """met, missed, pending and excluded per basis follow the docstring's rules."""
        d = _DEADLINE

        def h(hid: str, **kw: Any) -> Handoff:
            return Handoff(
                id=hid,
                policy="p",
                started_at=T0,
                wall_deadline_at=d,
                business_deadline_at=d + timedelta(hours=2),
                version=1,
                **kw,
            )

        pg_store.insert_many(
            [
                h("met", stopped_at=d),
                h("late-wall", stopped_at=d + timedelta(hours=1)),
                h("late-both", stopped_at=d + timedelta(hours=3)),
                h("open-past", channel="x"),
                h("paused-past", paused_at=T0 + timedelta(minutes=1)),
                h("cancelled", cancelled_at=T0 + timedelta(minutes=1)),
            ]
        )
        rows = pg_store.aggregate_hit_rate(
            since=None, until=None, by=(), now=d + timedelta(hours=1)
        )
        assert rows == [
            {
                "wall_met": 1,
                "wall_missed": 3,
                "wall_pending": 1,
                "business_met": 2,
                "business_missed": 1,
                "business_pending": 2,
                "excluded": 1,
            }
        ]

    def test_unsupported_key_defers_to_python(self, pg_store: PostgresStore) -> None:
        """A key that is not a column or attributes.NAME returns None."""
        assert pg_store.aggregate_hit_rate(since=None, until=None, by=["x"], now=T0) is None

    def test_a_percent_in_an_attribute_name_is_counted_in_python(
        self, pg_store: PostgresStore
    ) -> None:
        """psycopg reads % in a query as a placeholder, literals included: such a name
        defers to Python, and hit_rate groups it right."""
        for key in ("attributes.a%b", "attributes.a%(now)sb"):
            assert pg_store.aggregate_hit_rate(since=None, until=None, by=[key], now=T0) is None
        pg_store.insert(make_handoff("p1", attributes={"a%(now)sb": 1}))
        report = slakit.hit_rate(pg_store, by="attributes.a%(now)sb", now=T0)
        assert report.computed_by == "python"
        assert list(report.groups) == [(1,)]

    def test_empty_window_has_no_groups(self, pg_store: PostgresStore) -> None:
        """No handoffs in the window: no groups."""
        assert pg_store.aggregate_hit_rate(since=None, until=None, by=(), now=T0) == []

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        rows=_handoffs(),
        by=st.sampled_from(
            [(), ("channel",), ("policy", "within_business_hours"), ("attributes.tier",)]
        ),
        now_minutes=st.integers(0, 1200),
        window=st.sampled_from([(None, None), (0, 300), (120, None)]),
    )
    def test_matches_the_python_computation(
        self,
        pg_store: PostgresStore,
        rows: list[Handoff],
        by: tuple[str, ...],
        now_minutes: int,
        window: tuple[int | None, int | None],
    ) -> None:
        """slakit.hit_rate over the store (SQL) equals hit_rate over the same handoffs (Python)."""
        from slakit.metrics import hit_rate

        with psycopg.connect(pg_store.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {pg_store.schema}.handoffs".encode())
        pg_store.insert_many(rows)
        now = T0 + timedelta(minutes=now_minutes)
        since, until = (T0 + timedelta(minutes=m) if m is not None else None for m in window)
        kw: dict[str, Any] = {"since": since, "until": until, "by": by, "now": now}
        for basis in ("wall", "business"):
            in_sql = hit_rate(pg_store, basis=basis, **kw)
            in_python = hit_rate(rows, basis=basis, **kw)
            assert in_sql.computed_by == "store"
            assert in_sql.total == in_python.total
            assert in_sql.groups == in_python.groups


class TestNotifierErrorsOnPostgres:
    def test_an_error_with_nul_is_kept_and_retried(
        self, pg_dsn: str, fresh_schema: Callable[[], str]
    ) -> None:
        """PostgreSQL text refuses NUL; a peer's error holding one is stored spelt out,
        the attempt is counted, and the next row is still sent."""

        class Flaky(slakit.Notifier):
            name = "pager"

            def send(self, notification: slakit.Notification) -> None:
                if notification.handoff_id == "h1":
                    raise TransientNotifyError("upstream \x00 failed")

        engine = slakit.Engine(
            PostgresStore(pg_dsn, schema=fresh_schema()),
            [slakit.Policy.default(basis="wall")],
            [Flaky()],
            clock=slakit.ManualClock(T0),
        )
        try:
            engine.start("h1", owner="alice", started_at=T0 - timedelta(minutes=31))
            engine.start("h2", owner="bob", started_at=T0 - timedelta(minutes=31))
            assert engine.check().count == 2
            result = engine.deliver()
            assert (result.retried, result.sent) == (1, 1)
            failed = next(r for r in engine.store.outbox() if r.state == "pending")
            assert (failed.attempts, failed.last_error) == (1, "upstream \\x00 failed")
            trace = next(t for t in engine.store.traces("h1") if t.outcome == "retry")
            assert trace.detail["error"] == "upstream \\x00 failed"
        finally:
            engine.close()
