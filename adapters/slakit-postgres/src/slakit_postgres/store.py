"""The PostgreSQL record store.

Time: the database's ``now()`` is the clock of record. Every "is it due yet?"
question (claiming due handoffs, claiming outbox rows) is asked against
``LEAST(now(), given_now)``: the earlier of the database's clock and the time
the engine passed in. A worker whose clock runs fast therefore fires nothing
early, while a caller that passes an earlier time (a backfill, a test, a
simulation in the past) still sees exactly the rows due at that time. Leases
are measured on the same effective clock. :meth:`PostgresStore.apply_step`
also refuses to apply a step to a row whose ``next_due_at`` is later than the
database's ``now()``, which stops a fast engine from running a *later* stage
of a handoff it legitimately claimed.

Writes are single statements (data-modifying CTEs) on autocommit connections,
so each write method is one transaction and one round trip; ``apply_steps``
pipelines a batch of step statements in one transaction, and bulk inserts use
``COPY`` inside one transaction. No lock is held across a call out of the store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from slakit._time import ensure_aware
from slakit.abc import RecordStore, paired_traces
from slakit.adapters import _sql
from slakit.adapters._sql import GROUPABLE_COLUMNS
from slakit.errors import (
    ConcurrentUpdateError,
    ConfigError,
    DuplicateHandoffError,
    StoreError,
    StoreUnavailableError,
    UnknownHandoffError,
)
from slakit.handoff import Handoff, attributes_json
from slakit.records import (
    Escalation,
    Notification,
    OutboxItem,
    PurgeCounts,
    StepApplication,
    StoreSummary,
    TraceRecord,
)
from slakit_postgres.schema import LATEST_VERSION, migrate, validate_name

__all__ = ["GROUPABLE_COLUMNS", "HANDOFF_COLUMNS", "PostgresStore", "SupportsWake"]

log = logging.getLogger("slakit.postgres")

#: Handoff columns, in :class:`~slakit.handoff.Handoff` field order (one column per field).
HANDOFF_COLUMNS: tuple[str, ...] = tuple(a.name for a in attrs.fields(Handoff))

#: Seconds between two "outbox rows written" notifications from one store.
OUTBOX_NOTIFY_INTERVAL = 1.0

_OPTIONS = (
    "dsn",
    "schema",
    "min_size",
    "max_size",
    "notify_channel",
    "connect_timeout",
    "pool_timeout",
    "application_name",
)

_COLS = ", ".join(HANDOFF_COLUMNS)
_H_COLS = ", ".join(f"h.{c}" for c in HANDOFF_COLUMNS)
_VALUES = ", ".join(f"%({c})s" for c in HANDOFF_COLUMNS)
_SET = ", ".join(f"{c} = %({c})s" for c in HANDOFF_COLUMNS if c not in ("id", "version"))

_O_COLS = ", ".join("o." + c.strip() for c in _sql.OUTBOX_COLUMNS.split(","))

# Inserts the trace rows in the jsonb array %(_traces)s, in order, once per row of {src}.
_TRACES_FROM = """
    INSERT INTO traces (trace_id, handoff_id, policy, rule, action, actor, at, outcome, detail)
    SELECT t->>'trace_id', t->>'handoff_id', t->>'policy', t->>'rule', t->>'action',
           t->>'actor', (t->>'at')::timestamptz, t->>'outcome', coalesce(t->'detail', '{{}}')
    FROM {src} jsonb_array_elements(%(_traces)s::jsonb) WITH ORDINALITY AS x(t, ord)
    ORDER BY ord
"""

_INSERT = f"""
WITH ins AS (
    INSERT INTO handoffs ({_COLS}) VALUES ({_VALUES})
    ON CONFLICT (id) DO NOTHING
    RETURNING next_due_at
), tr AS ({_TRACES_FROM.format(src="ins CROSS JOIN LATERAL")}),
n AS (SELECT pg_notify(%(_chan)s, 'due') FROM ins WHERE next_due_at IS NOT NULL)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)
"""

_GET = f"SELECT {_COLS} FROM handoffs WHERE id = %s"
_GET_MANY = f"SELECT {_COLS} FROM handoffs WHERE id = ANY(%s::text[])"

# Compare-and-set on version; tells "moved earlier" apart so only that wakes listeners.
_UPDATE = f"""
WITH cur AS (SELECT id, version, next_due_at FROM handoffs WHERE id = %(id)s),
upd AS (
    UPDATE handoffs h SET {_SET}, version = %(_expected)s + 1,
        claimed_by = NULL, claim_until = NULL
    FROM cur
    WHERE h.id = cur.id AND h.version = %(_expected)s
    RETURNING h.next_due_at AS new_due, cur.next_due_at AS old_due
), tr AS ({_TRACES_FROM.format(src="upd CROSS JOIN LATERAL")}),
n AS (
    SELECT pg_notify(%(_chan)s, 'due') FROM upd
    WHERE new_due IS NOT NULL AND (old_due IS NULL OR new_due < old_due)
)
SELECT (SELECT version FROM cur), (SELECT count(*) FROM upd), (SELECT count(*) FROM n)
"""

# The due claim. MATERIALIZED keeps the locking subquery from being inlined,
# so LIMIT and SKIP LOCKED apply to it alone.
_CLAIM_DUE = f"""
WITH due AS MATERIALIZED (
    SELECT id FROM handoffs
    WHERE next_due_at <= LEAST(now(), %(now)s::timestamptz)
      AND (claim_until IS NULL OR claim_until <= LEAST(now(), %(now)s::timestamptz))
    ORDER BY next_due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE handoffs h
SET claimed_by = %(worker)s,
    claim_until = LEAST(now(), %(now)s::timestamptz) + make_interval(secs => %(lease)s)
FROM due WHERE h.id = due.id
RETURNING {_H_COLS}
"""

# One step in one statement: if the compare-and-set matches no row, every
# insert selects from an empty set and nothing is written. The NOT EXISTS guard
# sees an existing escalation, so a step that would violate its unique key is
# refused without an error (and a batch of steps can share one transaction).
# Outbox keys name the handoff and stage, so they clash only when the
# escalation does; the unique keys stay the backstop either way.
_APPLY = f"""
WITH upd AS (
    UPDATE handoffs SET {_SET}, version = %(_expected)s + 1,
        claimed_by = NULL, claim_until = NULL
    WHERE id = %(id)s AND version = %(_expected)s AND stage = %(_expected_stage)s
      AND next_due_at <= now()
      AND NOT EXISTS (SELECT 1 FROM escalations e
                      WHERE e.handoff_id = %(id)s AND e.stage = ANY(%(_stages)s::integer[]))
    RETURNING id
), esc AS (
    INSERT INTO escalations (handoff_id, stage, step, applied_at, outcome, actions)
    SELECT e->>'handoff_id', (e->>'stage')::integer, e->>'step',
           (e->>'applied_at')::timestamptz, e->>'outcome', e->'actions'
    FROM upd CROSS JOIN LATERAL jsonb_array_elements(%(_esc)s::jsonb) AS x(e)
    RETURNING 1
), ob AS (
    INSERT INTO outbox (notifier, idempotency_key, recipient, handoff_id, stage, step, action,
                        subject, text, trace_id, policy, created_at, payload, next_attempt_at)
    SELECT o->>'notifier', o->>'idempotency_key', o->>'recipient', o->>'handoff_id',
           (o->>'stage')::integer, o->>'step', o->>'action', o->>'subject', o->>'text',
           o->>'trace_id', o->>'policy', (o->>'created_at')::timestamptz, o->'payload',
           LEAST((o->>'created_at')::timestamptz, now())
    FROM upd CROSS JOIN LATERAL jsonb_array_elements(%(_outbox)s::jsonb) WITH ORDINALITY
         AS x(o, ord)
    ORDER BY ord
    RETURNING 1
), tr AS ({_TRACES_FROM.format(src="upd CROSS JOIN LATERAL")}),
n AS (SELECT pg_notify(%(_chan)s, 'outbox') FROM upd WHERE %(_notify)s)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM esc), (SELECT count(*) FROM ob),
       (SELECT count(*) FROM n)
"""

_CLAIM_OUTBOX = f"""
WITH c AS MATERIALIZED (
    SELECT seq FROM outbox
    WHERE state = 'pending'
      AND (next_attempt_at IS NULL OR next_attempt_at <= LEAST(now(), %(now)s::timestamptz))
      AND (lease_until IS NULL OR lease_until <= LEAST(now(), %(now)s::timestamptz))
    ORDER BY seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET lease_token = %(worker)s || ':' || gen_random_uuid()::text,
    lease_until = LEAST(now(), %(now)s::timestamptz) + make_interval(secs => %(lease)s)
FROM c WHERE o.seq = c.seq
RETURNING o.seq, {_O_COLS}
"""

# Fenced: only the holder of the current lease token may record the outcome.
_COMPLETE_OUTBOX = f"""
WITH upd AS (
    UPDATE outbox SET state = %(state)s, attempts = %(attempts)s,
        next_attempt_at = %(next_attempt_at)s, last_error = %(error)s,
        lease_token = NULL, lease_until = NULL
    WHERE notifier = %(notifier)s AND idempotency_key = %(key)s
      AND lease_token = %(token)s AND state = 'pending'
    RETURNING seq
), tr AS ({_TRACES_FROM.format(src="upd CROSS JOIN LATERAL")})
SELECT count(*) FROM upd
"""

# Hand back leased rows not sent under this claim, by token (fenced).
_RELEASE_OUTBOX = """
UPDATE outbox SET lease_token = NULL, lease_until = NULL
WHERE state = 'pending' AND (notifier, idempotency_key, lease_token) IN (
    SELECT * FROM unnest(%(notifiers)s::text[], %(keys)s::text[], %(tokens)s::text[]))
"""

# Put one dead row back in the queue, with its trace line (when given).
# The handoff is key-share locked first, so a purge (which locks it FOR UPDATE
# before deleting its rows) and a requeue never interleave: a purge in progress
# makes the requeue wait and then find nothing, and a requeue in progress makes
# the purge skip the handoff. Without it, a purge that had already chosen the
# handoff could delete the row just put back in the queue.
_REQUEUE_OUTBOX = f"""
WITH held AS (
    SELECT o.seq FROM outbox o JOIN handoffs h ON h.id = o.handoff_id
    WHERE o.notifier = %(notifier)s AND o.idempotency_key = %(key)s AND o.state = 'dead'
    FOR KEY SHARE OF h
), upd AS (
    UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %(now)s,
        lease_token = NULL, lease_until = NULL
    WHERE seq IN (SELECT seq FROM held) AND state = 'dead'
    RETURNING seq
), tr AS ({_TRACES_FROM.format(src="upd CROSS JOIN LATERAL")})
SELECT count(*) FROM upd
"""

_SUMMARY = """
SELECT
    (SELECT count(*) FROM handoffs),
    (SELECT count(*) FROM handoffs WHERE next_due_at IS NOT NULL),
    (SELECT count(*) FROM handoffs WHERE next_due_at <= %(now)s),
    (SELECT min(next_due_at) FROM handoffs WHERE next_due_at <= %(now)s),
    (SELECT min(next_due_at) FROM handoffs WHERE next_due_at > %(now)s),
    (SELECT count(*) FROM outbox WHERE state = 'pending'),
    (SELECT count(*) FROM outbox WHERE state = 'pending'
        AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)),
    (SELECT min(coalesce(next_attempt_at, created_at)) FROM outbox WHERE state = 'pending'
        AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)),
    (SELECT count(*) FROM outbox WHERE state = 'dead')
"""

# Handoffs that ended before the cutoff with no pending notification, oldest start first.
_PURGEABLE = """
    SELECT id FROM handoffs h
    WHERE started_at < %(before)s AND coalesce(cancelled_at, stopped_at) < %(before)s
      AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.handoff_id = h.id AND o.state = 'pending')
    ORDER BY started_at, id LIMIT %(limit)s
"""
_PURGE_COUNT = f"""
WITH p AS ({_PURGEABLE})
SELECT (SELECT count(*) FROM p),
       (SELECT count(*) FROM escalations WHERE handoff_id IN (SELECT id FROM p)),
       (SELECT count(*) FROM outbox WHERE handoff_id IN (SELECT id FROM p)),
       (SELECT count(*) FROM traces WHERE handoff_id IN (SELECT id FROM p))
"""
# The handoffs are locked before their rows go: one another writer holds is skipped
# (SKIP LOCKED), and one updated meanwhile is checked again against the WHERE clause.
_PURGE = f"""
WITH p AS MATERIALIZED ({_PURGEABLE} FOR UPDATE SKIP LOCKED),
e AS (DELETE FROM escalations WHERE handoff_id IN (SELECT id FROM p) RETURNING 1),
o AS (DELETE FROM outbox WHERE handoff_id IN (SELECT id FROM p) RETURNING 1),
t AS (DELETE FROM traces WHERE handoff_id IN (SELECT id FROM p) RETURNING 1),
h AS (DELETE FROM handoffs WHERE id IN (SELECT id FROM p) RETURNING 1)
SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM e), (SELECT count(*) FROM o),
       (SELECT count(*) FROM t)
"""

_ADD_TRACES = f"WITH tr AS ({_TRACES_FROM.format(src='')}) SELECT 1"

_NEXT_WAKEUP = """
SELECT LEAST(
    (SELECT min(GREATEST(next_due_at, coalesce(claim_until, next_due_at)))
     FROM (SELECT next_due_at, claim_until FROM handoffs
           WHERE next_due_at IS NOT NULL ORDER BY next_due_at LIMIT 256) d),
    (SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'))
"""

# In the order hit_rate_groups reads them.
_HIT_RATE_COUNTS = """
    count(*) FILTER (WHERE cancelled_at IS NULL) AS live,
    count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS excluded,
    count(*) FILTER (WHERE cancelled_at IS NULL AND stopped_at <= wall_deadline_at) AS wall_met,
    count(*) FILTER (WHERE cancelled_at IS NULL AND (stopped_at > wall_deadline_at
        OR (stopped_at IS NULL AND %(now)s::timestamptz > wall_deadline_at
            AND (paused_at IS NULL OR paused_at > wall_deadline_at))))
        AS wall_missed,
    count(*) FILTER (WHERE cancelled_at IS NULL AND stopped_at <= business_deadline_at)
        AS business_met,
    count(*) FILTER (WHERE cancelled_at IS NULL AND (stopped_at > business_deadline_at
        OR (stopped_at IS NULL AND %(now)s::timestamptz > business_deadline_at
            AND (paused_at IS NULL OR paused_at > business_deadline_at))))
        AS business_missed
"""


@runtime_checkable
class SupportsWake(Protocol):
    """Anything with a ``wake()`` method, such as :class:`slakit.Engine`."""

    def wake(self) -> None:
        """Wake a sleeping run loop."""
        ...


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return _sql.json_default(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_dumps)


def _check_quietly(pool: ConnectionPool[Any]) -> None:
    """``pool.check()``: replace the idle connections that no longer work."""
    try:
        pool.check()
    except Exception:  # a pool that cannot even check is reported by the next use
        log.debug("pool check failed", exc_info=True)


def _as_is(text: Any) -> Any:
    return text


def _attributes_param(h: Handoff) -> Jsonb:
    """``h.attributes`` as jsonb, checked before anything reaches the server (jsonb
    holds JSON data only; the same values every store takes)."""
    return Jsonb(attributes_json(h, "PostgreSQL"), dumps=_as_is)


def _traces_param(traces: Sequence[TraceRecord]) -> Jsonb:
    return _jsonb([t.to_dict() for t in traces])


def _handoff_params(h: Handoff) -> dict[str, Any]:
    params: dict[str, Any] = {c: getattr(h, c) for c in HANDOFF_COLUMNS}
    params["attributes"] = _attributes_param(h)
    return params


def _handoff_from_row(row: Mapping[str, Any]) -> Handoff:
    values = {c: row[c] for c in HANDOFF_COLUMNS}
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = value.astimezone(UTC)
    values["version"] = int(values["version"])
    values["attributes"] = values["attributes"] or {}
    return Handoff(**values)


def _notification_dict(n: Notification) -> dict[str, Any]:
    row = _sql.notification_row(n, n.created_at.astimezone(UTC).isoformat(), dict(n.payload))
    return dict(zip(_sql.NOTIFICATION_COLUMNS, row, strict=True))


def _escalation_dict(e: Escalation) -> dict[str, Any]:
    row = _sql.escalation_row(e, e.applied_at.astimezone(UTC).isoformat(), list(e.actions))
    return dict(zip(_sql.ESCALATION_COLUMNS, row, strict=True))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _outbox_from_row(r: Sequence[Any]) -> OutboxItem:
    return _sql.outbox_from_row(
        r,
        created_at=r[12].astimezone(UTC),
        payload=r[13] or {},
        next_attempt_at=_utc(r[16]),
        lease_until=_utc(r[18]),
    )


def _trace_from_row(r: Sequence[Any]) -> TraceRecord:
    return _sql.trace_from_row(r, r[6].astimezone(UTC), r[8] or {})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{field} must be a positive integer, got {value!r}", field=field, value=value
        )
    return value


def _positive_number(field: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < math.inf  # NaN and infinity too: a timeout must end
    ):
        raise ConfigError(
            f"{field} must be a positive, finite number of seconds, got {value!r}",
            field=field,
            value=value,
        )
    return float(value)


class PostgresStore(RecordStore):
    """Handoffs, escalations, the outbox and trace rows in PostgreSQL; safe across processes.

    The connection is opened on first use (normally :meth:`setup`, which the
    engine calls once); nothing connects in the constructor.

    :param dsn: a libpq connection string or ``postgresql://`` URI. Omitted or
        empty: libpq's ``PG*`` environment variables (``PGHOST``, ``PGPORT``,
        ``PGDATABASE``, ``PGUSER``, ``PGPASSWORD``…) decide.
    :param schema: the PostgreSQL schema holding the tables (created if missing).
        Separate schemas isolate deployments or tests in one database.
    :param min_size: connections the pool keeps open.
    :param max_size: the most connections the pool opens.
    :param notify_channel: the ``LISTEN/NOTIFY`` channel that wakes workers.
    :param connect_timeout: seconds to wait for the server when connecting.
    :param pool_timeout: seconds to wait for a free pooled connection.
    :param application_name: shown in ``pg_stat_activity``.
    :raises ConfigError: for a bad option value.
    """

    name = "postgres"
    multi_process = True

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "slakit",
        min_size: int = 1,
        max_size: int = 4,
        notify_channel: str = "slakit_due",
        connect_timeout: float = 5.0,
        pool_timeout: float = 30.0,
        application_name: str = "slakit",
    ) -> None:
        if dsn is not None and not isinstance(dsn, str):
            raise ConfigError(
                f"store.dsn must be a connection string, got {dsn!r}", field="store.dsn", value=dsn
            )
        self.dsn = dsn or ""
        try:
            conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as exc:
            # libpq quotes the whole string, password included: name the problem only.
            reason = (
                _first_line(exc).replace(self.dsn, "<the dsn>") if self.dsn else _first_line(exc)
            )
            raise ConfigError(
                f"store.dsn is not a valid PostgreSQL connection string: {reason}",
                field="store.dsn",
                value="<hidden>",
            ) from None
        self.schema = validate_name("store.schema", schema)
        self.notify_channel = validate_name("store.notify_channel", notify_channel)
        self.min_size = _positive_int("store.min_size", min_size)
        self.max_size = _positive_int("store.max_size", max_size)
        if self.max_size < self.min_size:
            raise ConfigError(
                f"store.max_size must be >= min_size ({self.min_size}), got {max_size!r}",
                field="store.max_size",
                value=max_size,
            )
        self.connect_timeout = _positive_number("store.connect_timeout", connect_timeout)
        self.pool_timeout = _positive_number("store.pool_timeout", pool_timeout)
        if not isinstance(application_name, str) or not application_name.isprintable():
            raise ConfigError(
                f"store.application_name must be one line of text, got {application_name!r}",
                field="store.application_name",
                value=application_name,
            )
        self.application_name = application_name
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._schema_version: int | None = None
        # Ids whose lease this store's own apply_step just cleared: the engine
        # releases them again right after, and that round trip can be skipped.
        self._unleased: set[str] = set()
        self._last_outbox_notify = -OUTBOX_NOTIFY_INTERVAL

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> PostgresStore:
        """Build a store from the ``[store]`` table (without ``adapter``).

        :raises ConfigError: for an unknown key or a bad value.
        """
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"store: unknown option {unknown[0]!r} for adapter 'postgres' "
                f"(allowed: {', '.join(_OPTIONS)})",
                field=f"store.{unknown[0]}",
                value=unknown[0],
            )
        return cls(**dict(options))

    def __repr__(self) -> str:
        return f"PostgresStore({self.target!r}, schema={self.schema!r})"

    # -- connections ----------------------------------------------------

    @property
    def target(self) -> str:
        """``host:port`` the store connects to (from the DSN, else ``PGHOST``/``PGPORT``)."""
        params = conninfo_to_dict(self.dsn)
        host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        return f"{host.split(',')[0]}:{port.split(',')[0]}"

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "application_name": self.application_name,
        }

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"PostgreSQL at {self.target} is unavailable: {_first_line(exc)}",
            field="dsn",
            value=self.target,
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET TIME ZONE 'UTC'")
        # Statements are prepared after a few runs; a generic plan made while a
        # table was small (a sequential scan of the outbox, say) would stay
        # until the next ANALYZE. Planning each execution keeps the indexes in use.
        conn.execute("SET plan_cache_mode = force_custom_plan")

    def _open(self) -> ConnectionPool[Any]:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed.is_set():
                raise StoreError(f"{self!r} is closed", field="store", value=self.schema)
            if self._pool is None:
                # A direct probe gives the real reason (refused, auth, no database)
                # in one line, where a pool would only time out.
                try:
                    probe = psycopg.connect(self.dsn, **self._connect_kwargs())
                except psycopg.Error as exc:
                    raise self._unavailable(exc) from None
                probe.close()
                pool = ConnectionPool(
                    self.dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    kwargs=self._connect_kwargs(),
                    configure=self._configure,
                    timeout=self.pool_timeout,
                    name=f"slakit-{self.schema}",
                    open=False,
                )
                pool.open()
                self._pool = pool
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._open()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._unavailable(exc) from None
        except psycopg.OperationalError as exc:
            state = exc.sqlstate or ""
            if not state or state.startswith(("08", "57P")):
                # The connection is gone (a restart, a failover, a terminated
                # backend), and so, probably, are the pool's idle ones: test them
                # all now, so that only this statement fails, not one per connection.
                _check_quietly(pool)
                raise self._unavailable(exc) from None
            raise StoreError(
                f"PostgreSQL error {state}: {_first_line(exc)}", field="sqlstate", value=state
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"PostgreSQL error {exc.sqlstate}: {_first_line(exc)}",
                field="sqlstate",
                value=exc.sqlstate,
            ) from exc

    def setup(self) -> None:
        """Create the schema or migrate it forward (serialised by an advisory lock).

        :raises StoreUnavailableError: when the server cannot be reached.
        :raises SchemaVersionError: when the schema is newer than this code.
        """
        with self._connection() as conn:
            self._schema_version = migrate(conn, self.schema)

    @property
    def schema_version(self) -> int:
        """The schema version found by :meth:`setup` (:data:`LATEST_VERSION` after it)."""
        return self._schema_version if self._schema_version is not None else LATEST_VERSION

    def close(self) -> None:
        """Close the pool and stop listener threads; the store is unusable afterwards."""
        self._closed.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def effective_now(self, now: datetime) -> datetime:
        """The earlier of ``now`` and the database's clock: a fast worker never runs ahead."""
        return min(now, self.database_now())

    def database_now(self) -> datetime:
        """The database's clock (``now()`` of a fresh transaction), in UTC."""
        with self._connection() as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value.astimezone(UTC)

    # -- handoffs -------------------------------------------------------

    def insert(self, handoff: Handoff, traces: Sequence[TraceRecord] = ()) -> Handoff:
        params = _handoff_params(handoff)
        params["_traces"] = _traces_param(traces)
        params["_chan"] = self.notify_channel
        with self._connection() as conn:
            row = conn.execute(_INSERT, params).fetchone()
        if row is None or row[0] == 0:
            raise DuplicateHandoffError(
                f"handoff id {handoff.id!r} already exists", field="id", value=handoff.id
            )
        return handoff

    def insert_many(self, handoffs: Sequence[Handoff], traces: Sequence[TraceRecord] = ()) -> int:
        _sql.check_batch_ids(handoffs)
        if not handoffs:
            if traces:
                self.add_traces(traces)
            return 0
        with self._connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(f"COPY handoffs ({_COLS}) FROM STDIN") as copy:
                        for h in handoffs:
                            copy.write_row(
                                [
                                    _attributes_param(h) if c == "attributes" else getattr(h, c)
                                    for c in HANDOFF_COLUMNS
                                ]
                            )
                    if traces:
                        with cur.copy(f"COPY traces ({_sql.TRACE_COLUMNS}) FROM STDIN") as copy:
                            for t in traces:
                                copy.write_row(_trace_values(t))
                    if any(h.next_due_at is not None for h in handoffs):
                        cur.execute("SELECT pg_notify(%s, 'due')", (self.notify_channel,))
            except pg_errors.UniqueViolation as exc:
                hid = _conflicting_id(exc)
                raise DuplicateHandoffError(
                    f"handoff id {hid!r} already exists", field="id", value=hid
                ) from None
        return len(handoffs)

    def get(self, handoff_id: str) -> Handoff:
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_GET, (handoff_id,)).fetchone()
        if row is None:
            raise UnknownHandoffError(handoff_id)
        return _handoff_from_row(row)

    def get_many(self, handoff_ids: Iterable[str]) -> dict[str, Handoff]:
        ids = list(dict.fromkeys(handoff_ids))
        if not ids:
            return {}
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_GET_MANY, (ids,)).fetchall()
        return {row["id"]: _handoff_from_row(row) for row in rows}

    def update(
        self, handoff: Handoff, expected_version: int, traces: Sequence[TraceRecord] = ()
    ) -> Handoff:
        params = _handoff_params(handoff)
        params["_expected"] = expected_version
        params["_traces"] = _traces_param(traces)
        params["_chan"] = self.notify_channel
        with self._connection() as conn:
            row = conn.execute(_UPDATE, params).fetchone()
        assert row is not None
        found_version, updated = row[0], row[1]
        if found_version is None:
            raise UnknownHandoffError(handoff.id)
        if updated == 0:
            raise ConcurrentUpdateError(
                f"handoff {handoff.id!r} changed: expected version {expected_version}, "
                f"found {found_version}",
                field="version",
                value=expected_version,
            )
        return attrs.evolve(handoff, version=expected_version + 1)

    def claim_due(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[Handoff]:
        """Claim up to ``limit`` handoffs due at ``LEAST(db now(), now)``, oldest due first.

        The lease runs until that same effective now plus ``lease_seconds``.
        """
        ensure_aware("now", now)
        params = {"now": now, "limit": limit, "worker": worker, "lease": float(lease_seconds)}
        with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_CLAIM_DUE, params).fetchall()
        claimed = [_handoff_from_row(r) for r in rows]
        if self._unleased:
            with self._lock:
                self._unleased.difference_update(h.id for h in claimed)
        claimed.sort(key=lambda h: (h.next_due_at or h.started_at, h.id))
        return claimed

    def apply_step(self, application: StepApplication) -> bool:
        """Commit one step in one statement; ``False`` when another writer won.

        Besides version and stage, the stored row's ``next_due_at`` must not be
        later than the database's ``now()``: the database clock decides
        whether a step is due, not the caller's.
        """
        with self._connection() as conn:
            applied = self._apply_step(conn, application)
        if applied:
            self._mark_unleased([application.handoff.id])
        return applied

    def apply_steps(self, applications: Sequence[StepApplication]) -> list[bool]:
        """Commit many steps in one transaction, each one all-or-nothing as in :meth:`apply_step`.

        The statements are pipelined (one round trip for the batch) and share
        one commit. Should a unique key still be hit (a race the guards could
        not see), the batch is rolled back and retried one step per transaction.
        """
        if len(applications) < 2:
            return [self.apply_step(a) for a in applications]
        results: list[bool] | None
        with self._connection() as conn:
            try:
                with conn.transaction():
                    results = self._apply_batch(conn, applications)
            except pg_errors.UniqueViolation:
                results = None
            if results is not None and not all(results):
                lost = [a.handoff.id for a, ok in zip(applications, results, strict=True) if not ok]
                rows = conn.execute("SELECT id FROM handoffs WHERE id = ANY(%s)", (lost,))
                missing = set(lost) - {r[0] for r in rows.fetchall()}
                if missing:
                    raise UnknownHandoffError(sorted(missing)[0])
        if results is None:
            return [self.apply_step(a) for a in applications]
        self._mark_unleased(
            [a.handoff.id for a, ok in zip(applications, results, strict=True) if ok]
        )
        return results

    def _step_params(self, application: StepApplication, notify: bool) -> dict[str, Any] | None:
        keys = [(n.notifier, n.idempotency_key) for n in application.notifications]
        if len(set(keys)) != len(keys):
            return None  # the step would clash with itself
        params = _handoff_params(application.handoff)
        params.update(
            _expected=application.expected_version,
            _expected_stage=application.expected_stage,
            _stages=[e.stage for e in application.escalations],
            _esc=_jsonb([_escalation_dict(e) for e in application.escalations]),
            _outbox=_jsonb([_notification_dict(n) for n in application.notifications]),
            _traces=_traces_param(application.traces),
            _chan=self.notify_channel,
            _notify=notify,
        )
        return params

    def _apply_step(self, conn: psycopg.Connection[Any], application: StepApplication) -> bool:
        notify = bool(application.notifications) and self._outbox_notify_due()
        params = self._step_params(application, notify)
        if params is None:
            return False
        try:
            row = conn.execute(_APPLY, params).fetchone()
        except pg_errors.UniqueViolation:
            return False
        assert row is not None
        if row[0] == 1:
            return True
        h = application.handoff
        if conn.execute("SELECT 1 FROM handoffs WHERE id = %s", (h.id,)).fetchone() is None:
            raise UnknownHandoffError(h.id)
        return False

    def _apply_batch(
        self, conn: psycopg.Connection[Any], applications: Sequence[StepApplication]
    ) -> list[bool]:
        """Run the step statements of a batch in the caller's transaction, pipelined."""
        notify = any(a.notifications for a in applications) and self._outbox_notify_due()
        cursors: list[psycopg.Cursor[Any] | None] = []
        # A step statement finds its rows by primary and unique keys only, so one
        # generic plan suits every step; custom plans (the connection's mode, for
        # the claims) would plan each step again: two thirds of the server's
        # CPU time for a batch.
        # LOCAL: the caller's transaction ends it.
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        with conn.pipeline():
            for app in applications:
                params = self._step_params(app, notify and bool(app.notifications))
                if params is None:
                    cursors.append(None)
                    continue
                notify = notify and not app.notifications  # once per batch is enough
                cur = conn.cursor()
                cur.execute(_APPLY, params)
                cursors.append(cur)
        results = []
        for done in cursors:
            row = done.fetchone() if done is not None else None
            results.append(row is not None and row[0] == 1)
        return results

    def _mark_unleased(self, ids: Sequence[str]) -> None:
        with self._lock:
            if len(self._unleased) > 10_000:
                self._unleased.clear()
            self._unleased.update(ids)

    def _outbox_notify_due(self) -> bool:
        # PostgreSQL serialises the commits of notifying transactions on one
        # global lock, so "outbox rows written" is announced at most once per
        # OUTBOX_NOTIFY_INTERVAL per store; the engine that wrote them delivers
        # them in the same tick anyway, and polling finds the rest.
        now = time.monotonic()
        if now - self._last_outbox_notify < OUTBOX_NOTIFY_INTERVAL:
            return False
        self._last_outbox_notify = now
        return True

    def release(self, handoff_id: str, worker: str) -> None:
        with self._lock:
            if handoff_id in self._unleased:
                self._unleased.discard(handoff_id)
                return
        with self._connection() as conn:
            conn.execute(
                "UPDATE handoffs SET claimed_by = NULL, claim_until = NULL "
                "WHERE id = %s AND claimed_by = %s",
                (handoff_id, worker),
            )

    def iter_handoffs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        policy: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[Handoff]:
        """Handoffs with ``since <= started_at < until``, by start then id.

        Read in keyset pages, so no connection or snapshot is held while the
        caller consumes the iterator.
        """
        after: tuple[datetime, str] | None = None
        while True:
            clauses: list[sql.Composable] = []
            params: list[Any] = []
            if since is not None:
                clauses.append(sql.SQL("started_at >= %s"))
                params.append(ensure_aware("since", since))
            if until is not None:
                clauses.append(sql.SQL("started_at < %s"))
                params.append(ensure_aware("until", until))
            if policy is not None:
                clauses.append(sql.SQL("policy = %s"))
                params.append(policy)
            if after is not None:
                clauses.append(sql.SQL("(started_at, id) > (%s, %s)"))
                params.extend(after)
            where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
            query = sql.SQL(
                "SELECT {cols} FROM handoffs WHERE {where} ORDER BY started_at, id LIMIT {n}"
            ).format(cols=sql.SQL(_COLS), where=where, n=sql.Literal(page_size))
            with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(query, params).fetchall()
            for row in rows:
                yield _handoff_from_row(row)
            if len(rows) < page_size:
                return
            last = rows[-1]
            after = (last["started_at"], last["id"])

    def count(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT count(*) FROM handoffs").fetchone()
        assert row is not None
        return int(row[0])

    def next_wakeup(self) -> datetime | None:
        """The earliest time work may be claimable: due handoffs or pending outbox rows.

        A due handoff under another worker's lease counts from the lease's end
        (looked up among the 256 earliest due), so idle workers do not spin on
        rows someone else holds.
        """
        with self._connection() as conn:
            row = conn.execute(_NEXT_WAKEUP).fetchone()
        return None if row is None or row[0] is None else _utc(row[0])

    # -- escalations ----------------------------------------------------

    def escalations(self, handoff_id: str | None = None) -> list[Escalation]:
        query = "SELECT handoff_id, stage, step, applied_at, outcome, actions FROM escalations"
        params: tuple[Any, ...] = ()
        if handoff_id is not None:
            query += " WHERE handoff_id = %s"
            params = (handoff_id,)
        query += " ORDER BY handoff_id, stage"
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_sql.escalation_from_row(r, r[3].astimezone(UTC), r[5] or ()) for r in rows]

    # -- outbox ---------------------------------------------------------

    def claim_outbox(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` pending rows due at ``LEAST(db now(), now)``, oldest first.

        Each row gets a fresh ``lease_token``; the lease runs until that same
        effective now plus ``lease_seconds``.
        """
        ensure_aware("now", now)
        params = {"now": now, "limit": limit, "worker": worker, "lease": float(lease_seconds)}
        with self._connection() as conn:
            rows = conn.execute(_CLAIM_OUTBOX, params).fetchall()
        rows.sort(key=lambda r: int(r[0]))
        return [_outbox_from_row(r) for r in rows]

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
        if item.lease_token is None:
            return False
        params = {
            "state": state,
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "error": error,
            "notifier": item.notification.notifier,
            "key": item.notification.idempotency_key,
            "token": item.lease_token,
            "_traces": _traces_param(traces),
        }
        with self._connection() as conn:
            row = conn.execute(_COMPLETE_OUTBOX, params).fetchone()
        return row is not None and row[0] == 1

    def release_outbox(self, items: Sequence[OutboxItem]) -> int:
        """Clear the leases of rows still held under their items' tokens, in one statement."""
        held = [i for i in items if i.lease_token is not None]
        if not held:
            return 0
        params = {
            "notifiers": [i.notification.notifier for i in held],
            "keys": [i.notification.idempotency_key for i in held],
            "tokens": [i.lease_token for i in held],
        }
        with self._connection() as conn:
            return conn.execute(_RELEASE_OUTBOX, params).rowcount

    def requeue_outbox(
        self,
        items: Sequence[OutboxItem],
        *,
        now: datetime,
        traces: Sequence[TraceRecord] = (),
    ) -> list[bool]:
        """Requeue dead rows, one statement each, in one transaction that wakes listeners."""
        ensure_aware("now", now)
        lines = paired_traces(items, traces)
        if not items:
            return []
        done: list[bool] = []
        with self._connection() as conn, conn.transaction():
            for item, line in zip(items, lines, strict=True):
                params = {
                    "now": now,
                    "notifier": item.notification.notifier,
                    "key": item.notification.idempotency_key,
                    "_traces": _traces_param([] if line is None else [line]),
                }
                row = conn.execute(_REQUEUE_OUTBOX, params).fetchone()
                done.append(row is not None and row[0] == 1)
            if any(done):  # wake sleeping workers at commit: rows are due now
                conn.execute("SELECT pg_notify(%s, 'outbox')", (self.notify_channel,))
        return done

    def outbox(self, handoff_id: str | None = None, state: str | None = None) -> list[OutboxItem]:
        clauses: list[str] = []
        params: list[Any] = []
        if handoff_id is not None:
            clauses.append("handoff_id = %s")
            params.append(handoff_id)
        if state is not None:
            clauses.append("state = %s")
            params.append(state)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT seq, {_sql.OUTBOX_COLUMNS} FROM outbox{where} ORDER BY seq"
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_outbox_from_row(r) for r in rows]

    def summary(self, now: datetime) -> StoreSummary:
        """Counts and oldest due times in one statement (one snapshot)."""
        ensure_aware("now", now)
        with self._connection() as conn:
            row = conn.execute(_SUMMARY, {"now": now}).fetchone()
        assert row is not None
        handoffs, timers, due, oldest, upcoming, pending, outbox_due, oldest_outbox, dead = row

        def utc(value: datetime | None) -> datetime | None:
            return None if value is None else value.astimezone(UTC)

        return StoreSummary(
            now=now,
            handoffs=int(handoffs),
            timers=int(timers),
            due=int(due),
            oldest_due_at=utc(oldest),
            next_due_at=utc(upcoming),
            outbox_pending=int(pending),
            outbox_due=int(outbox_due),
            oldest_outbox_due_at=utc(oldest_outbox),
            outbox_dead=int(dead),
        )

    def purge(
        self, before: datetime, *, limit: int | None = None, dry_run: bool = False
    ) -> PurgeCounts:
        """Purge in one statement: the handoffs are locked, then deleted with their rows."""
        params = {"before": ensure_aware("before", before), "limit": limit}
        with self._connection() as conn:
            row = conn.execute(_PURGE_COUNT if dry_run else _PURGE, params).fetchone()
        assert row is not None
        handoffs, escalations, outbox, traces = (int(v) for v in row)
        return PurgeCounts(handoffs=handoffs, escalations=escalations, outbox=outbox, traces=traces)

    def outbox_window(self, *, since: datetime, until: datetime) -> list[OutboxItem]:
        params = (ensure_aware("since", since), ensure_aware("until", until))
        query = (
            f"SELECT seq, {_sql.OUTBOX_COLUMNS} FROM outbox "
            "WHERE created_at >= %s AND created_at < %s ORDER BY seq"
        )
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_outbox_from_row(r) for r in rows]

    # -- traces ---------------------------------------------------------

    def add_traces(self, traces: Sequence[TraceRecord]) -> None:
        if not traces:
            return
        with self._connection() as conn:
            conn.execute(_ADD_TRACES, {"_traces": _traces_param(traces)})

    def traces(
        self,
        handoff_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TraceRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if handoff_id is not None:
            clauses.append("handoff_id = %s")
            params.append(handoff_id)
        if since is not None:
            clauses.append("at >= %s")
            params.append(ensure_aware("since", since))
        if until is not None:
            clauses.append("at < %s")
            params.append(ensure_aware("until", until))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT {_sql.TRACE_COLUMNS} FROM traces{where} ORDER BY seq"
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_trace_from_row(r) for r in rows]

    # -- reports --------------------------------------------------------

    def aggregate_hit_rate(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        by: Sequence[str],
        now: datetime,
    ) -> list[dict[str, Any]] | None:
        """Hit-rate counts per group, computed by one ``GROUP BY`` query.

        A handoff belongs to the window by ``started_at``. Cancelled ones are
        ``excluded``. On each basis a handoff is *met* when its stop event came
        at or before that basis's deadline, *missed* when it came later, or when
        it has not stopped, ``now`` is past the deadline and its clock is not
        paused (or was paused only after the deadline, which cannot un-miss
        it), and *pending* otherwise. Groups come sorted by the keys; an empty
        window gives no groups.

        :param by: columns from :data:`GROUPABLE_COLUMNS`, or ``attributes.NAME``
            (grouped on the jsonb value).
        :returns: ``None`` for any other key (then the caller computes in Python).
        """
        keys = list(by)
        exprs: list[sql.Composable] = []
        for i, key in enumerate(keys):
            name = _sql.attribute_name(key)
            if key in GROUPABLE_COLUMNS:
                expr: sql.Composable = sql.Identifier(key)
            elif name is not None and "\x00" not in name and "%" not in name:
                # Text cannot hold NUL, and psycopg would read a % in the literal as a
                # placeholder: for such a name Python counts.
                expr = sql.SQL("attributes -> {}").format(sql.Literal(name))
            else:
                return None
            exprs.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(f"k{i}")))
        ensure_aware("now", now)
        clauses: list[sql.Composable] = []
        params: dict[str, Any] = {"now": now}
        if since is not None:
            clauses.append(sql.SQL("started_at >= %(since)s"))
            params["since"] = ensure_aware("since", since)
        if until is not None:
            clauses.append(sql.SQL("started_at < %(until)s"))
            params["until"] = ensure_aware("until", until)
        where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
        select_keys = sql.SQL("{}, ").format(sql.SQL(", ").join(exprs)) if keys else sql.SQL("")
        group: sql.Composable = sql.SQL("")
        if keys:
            positions = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(keys)))
            group = sql.SQL(" GROUP BY {p} ORDER BY {p}").format(p=positions)
        query = sql.SQL("SELECT {keys}{counts} FROM handoffs WHERE {where}{group}").format(
            keys=select_keys, counts=sql.SQL(_HIT_RATE_COUNTS), where=where, group=group
        )
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return _sql.hit_rate_groups(keys, rows)

    def excluded_ids(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[str]:
        """Ids of the cancelled handoffs started in ``[since, until)``, by start time.

        Answered from a partial index on cancelled rows.
        """
        clauses = ["cancelled_at IS NOT NULL"]
        params: list[Any] = []
        if since is not None:
            clauses.append("started_at >= %s")
            params.append(ensure_aware("since", since))
        if until is not None:
            clauses.append("started_at < %s")
            params.append(ensure_aware("until", until))
        query = f"SELECT id FROM handoffs WHERE {' AND '.join(clauses)} ORDER BY started_at, id"
        with self._connection() as conn:
            return [r[0] for r in conn.execute(query, params).fetchall()]

    # -- wake-ups -------------------------------------------------------

    def listen(
        self,
        target: SupportsWake | Callable[[], object],
        stop: threading.Event,
        *,
        poll_interval: float = 1.0,
    ) -> threading.Thread:
        """Start a daemon thread that ``LISTEN``\\ s on :attr:`notify_channel`.

        On each notification (a handoff inserted or made due earlier, outbox
        rows written) it calls ``target.wake()`` (an :class:`slakit.Engine`)
        or ``target()``. It also calls it after every (re)connect, since
        notifications sent while it was not listening are lost. Polling stays
        the guarantee; this only shortens the wait.

        :param target: an engine, or any callable taking no arguments.
        :param stop: set it to end the thread (it exits within ``poll_interval``).
        :returns: the started thread.
        """
        wake = target.wake if isinstance(target, SupportsWake) else target
        thread = threading.Thread(
            target=self._listen_loop,
            args=(wake, stop, poll_interval),
            name=f"slakit-listen-{self.notify_channel}",
            daemon=True,
        )
        thread.start()
        return thread

    def _listen_loop(self, wake: Callable[[], object], stop: threading.Event, poll: float) -> None:
        backoff = 0.5
        received = threading.Event()

        def on_notify(notify: psycopg.Notify) -> None:
            if notify.channel == self.notify_channel:
                received.set()

        def call_wake() -> None:
            try:
                wake()
            except Exception:
                log.exception("listener wake-up callback failed")

        while not (stop.is_set() or self._closed.is_set()):
            try:
                with psycopg.connect(self.dsn, **self._connect_kwargs()) as conn:
                    conn.add_notify_handler(on_notify)
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.notify_channel)))
                    backoff = 0.5
                    call_wake()
                    while not (stop.is_set() or self._closed.is_set()):
                        ready, _, _ = select.select([conn.fileno()], [], [], poll)
                        if not ready:
                            continue
                        # A round trip makes psycopg read the queued notifications
                        # and hand them to on_notify (works on every psycopg 3).
                        conn.execute("SELECT 1")
                        if received.is_set():
                            received.clear()
                            call_wake()
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "LISTEN %s on %s failed (%s); retrying in %.1fs",
                    self.notify_channel,
                    self.target,
                    _first_line(exc),
                    backoff,
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)


def _trace_values(t: TraceRecord) -> tuple[Any, ...]:
    return _sql.trace_row(t, t.at, _jsonb(dict(t.detail)))


def _conflicting_id(exc: pg_errors.UniqueViolation) -> str:
    # "Key (id)=(lead-7) already exists."
    detail = exc.diag.message_detail or ""
    start, end = detail.find(")=("), detail.rfind(") already exists")
    if start != -1 and end != -1:
        return detail[start + 3 : end]
    return "<unknown>"
