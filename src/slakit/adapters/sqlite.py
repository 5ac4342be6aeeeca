"""The SQLite store: the embedded default, safe across threads and processes.

* WAL journal, one connection per thread (one shared, locked connection for
  ``":memory:"``), and every write in a ``BEGIN IMMEDIATE`` transaction, so a
  writer takes the write lock before it reads what it will change.
* Times are stored as INTEGER microseconds since the Unix epoch (UTC): exact,
  ordered, and cheap to index and compare in SQL.
* The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS`
  holds the forward steps, applied in order by :meth:`SQLiteStore.setup`.
* Exactly once: :meth:`SQLiteStore.apply_step` compares and sets the handoff's
  ``version`` and ``stage`` and inserts the ``UNIQUE(handoff_id, stage)``
  escalation rows and the outbox rows in the same transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import cache, partial
from itertools import chain
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from slakit import _time
from slakit._time import ensure_aware, from_us, to_us
from slakit.abc import RecordStore, paired_traces
from slakit.adapters._sql import (
    ESCALATION_COLUMNS,
    GROUPABLE_COLUMNS,
    NOTIFICATION_COLUMNS,
    OUTBOX_COLUMNS,
    TRACE_COLUMNS,
    attribute_name,
    check_batch_ids,
    escalation_from_row,
    escalation_row,
    hit_rate_groups,
    json_default,
    notification_row,
    outbox_from_row,
    trace_from_row,
    trace_row,
)
from slakit.errors import (
    ConcurrentUpdateError,
    ConfigError,
    DuplicateHandoffError,
    SchemaVersionError,
    StoreError,
    UnknownHandoffError,
)
from slakit.handoff import (
    _DATETIME_FIELDS,
    Handoff,
    _attributes_text,
    _from_values,
    _values_of,
    attributes_json,
)
from slakit.records import (
    Escalation,
    LazyPayload,
    Notification,
    OutboxItem,
    OutboxState,
    PurgeCounts,
    StepApplication,
    StepPayload,
    StoreSummary,
    TraceRecord,
)

__all__ = [
    "CLAIM_DUE_SQL",
    "HANDOFF_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteStore",
]

T = TypeVar("T")

_INF = float("inf")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MIN_SQLITE = (3, 35, 0)  # UPDATE … RETURNING
_JOURNAL_MODES = ("WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF")
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_PAGE = 1000


def _return_none(_: None) -> None:
    return None


def _bind_none_quickly() -> None:
    """Let ``sqlite3`` bind ``None`` without a failed attribute lookup.

    Before Python 3.12, ``sqlite3`` treats ``None`` as a value to adapt: with
    no adapter registered it looks ``__adapt__`` up on its protocol type, and
    the AttributeError that lookup formats and drops costs about 0.3 µs per
    NULL parameter (a handoff's row has a dozen). An adapter that returns
    ``None`` binds the same NULL through one dictionary hit. Nothing is
    registered if some other code already adapts ``None``; Python 3.12 and
    later look the name up without the error, so they are left alone.
    """
    if sys.version_info >= (3, 12):
        return
    adapters: dict[Any, Any] = getattr(sqlite3, "adapters", {})
    if (type(None), sqlite3.PrepareProtocol) not in adapters:
        sqlite3.register_adapter(type(None), _return_none)


_bind_none_quickly()

#: The handoff columns, in :class:`~slakit.handoff.Handoff` field order. The
#: table also has ``lease_owner`` and ``lease_until`` for claims.
HANDOFF_COLUMNS: tuple[str, ...] = (
    "id",
    "policy",
    "started_at",
    "owner",
    "backup_owner",
    "sla_minutes",
    "first_response_at",
    "responded_by",
    "completed_at",
    "cancelled_at",
    "cancel_reason",
    "breached",
    "breach_reason",
    "trace_id",
    "within_business_hours",
    "channel",
    "segment",
    "stage",
    "stopped_at",
    "next_due_at",
    "deadline_at",
    "wall_deadline_at",
    "business_deadline_at",
    "paused_at",
    "paused_seconds",
    "paused_business_seconds",
    "wall_elapsed_seconds",
    "business_elapsed_seconds",
    "ingested_at",
    "attributes",
    "version",
)

_STAGE = HANDOFF_COLUMNS.index("stage")

_V1: tuple[str, ...] = (
    """
    CREATE TABLE handoffs (
        id                       TEXT    NOT NULL PRIMARY KEY,
        policy                   TEXT    NOT NULL,
        started_at               INTEGER NOT NULL,
        owner                    TEXT,
        backup_owner             TEXT,
        sla_minutes              REAL,
        first_response_at        INTEGER,
        responded_by             TEXT,
        completed_at             INTEGER,
        cancelled_at             INTEGER,
        cancel_reason            TEXT,
        breached                 INTEGER NOT NULL DEFAULT 0,
        breach_reason            TEXT,
        trace_id                 TEXT    NOT NULL,
        within_business_hours    INTEGER,
        channel                  TEXT,
        segment                  TEXT,
        stage                    INTEGER NOT NULL DEFAULT 0,
        stopped_at               INTEGER,
        next_due_at              INTEGER,
        deadline_at              INTEGER,
        wall_deadline_at         INTEGER,
        business_deadline_at     INTEGER,
        paused_at                INTEGER,
        paused_seconds           REAL    NOT NULL DEFAULT 0,
        paused_business_seconds  REAL    NOT NULL DEFAULT 0,
        wall_elapsed_seconds     REAL,
        business_elapsed_seconds REAL,
        ingested_at              INTEGER,
        attributes               TEXT    NOT NULL DEFAULT '{}',
        version                  INTEGER NOT NULL,
        lease_owner              TEXT,
        lease_until              INTEGER
    )
    """,
    # Claims scan only the rows that have a timer, in due order.
    "CREATE INDEX handoffs_due ON handoffs (next_due_at) WHERE next_due_at IS NOT NULL",
    # Reports and iter_handoffs walk a started_at window.
    "CREATE INDEX handoffs_started ON handoffs (started_at, id)",
    """
    CREATE TABLE escalations (
        handoff_id TEXT    NOT NULL,
        stage      INTEGER NOT NULL,
        step       TEXT    NOT NULL,
        applied_at INTEGER NOT NULL,
        outcome    TEXT    NOT NULL,
        actions    TEXT    NOT NULL DEFAULT '[]',
        -- UNIQUE(handoff_id, stage) as the clustering key: one b-tree to write, not two.
        PRIMARY KEY (handoff_id, stage)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY,
        notifier        TEXT    NOT NULL,
        idempotency_key TEXT    NOT NULL,
        recipient       TEXT    NOT NULL,
        handoff_id      TEXT    NOT NULL,
        stage           INTEGER NOT NULL,
        step            TEXT    NOT NULL,
        action          TEXT    NOT NULL,
        subject         TEXT    NOT NULL,
        text            TEXT    NOT NULL,
        trace_id        TEXT    NOT NULL,
        policy          TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        payload         TEXT    NOT NULL DEFAULT '{}',
        state           TEXT    NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        lease_token     TEXT,
        lease_until     INTEGER,
        last_error      TEXT,
        UNIQUE (notifier, idempotency_key)
    )
    """,
    # Deliveries scan only pending rows, oldest due first (creation order on ties).
    "CREATE INDEX outbox_due ON outbox (next_attempt_at, seq) WHERE state = 'pending'",
    "CREATE INDEX outbox_handoff ON outbox (handoff_id)",
    """
    CREATE TABLE traces (
        seq        INTEGER PRIMARY KEY,
        trace_id   TEXT    NOT NULL,
        handoff_id TEXT    NOT NULL,
        policy     TEXT    NOT NULL,
        rule       TEXT    NOT NULL,
        action     TEXT    NOT NULL,
        actor      TEXT    NOT NULL,
        at         INTEGER NOT NULL,
        outcome    TEXT    NOT NULL,
        detail     TEXT    NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX traces_handoff ON traces (handoff_id)",
    "CREATE INDEX traces_at ON traces (at)",
)

#: Forward migrations: step ``i`` takes ``user_version`` from ``i`` to ``i + 1``.
#: Append new steps; never edit a released one.
# Version 2: cancelled handoffs by start, for the hit rate's exclusion list.
_V2: tuple[str, ...] = (
    "CREATE INDEX handoffs_cancelled ON handoffs (started_at, id) WHERE cancelled_at IS NOT NULL",
)

# Version 3: no DDL. Outbox rows may hold a step's payload in its compact form
# ({"handoff@": [the record's row], ...}, see _outbox_rows), which older code
# would hand to notifiers as it is; the version keeps older code off the file.
_V3: tuple[str, ...] = ()

# Version 4: dead letters by creation, for `slakit outbox --state dead`, requeues and
# the summary's count (rows enter it only when they die, so writes barely pay).
_V4: tuple[str, ...] = ("CREATE INDEX outbox_dead ON outbox (seq) WHERE state = 'dead'",)

MIGRATIONS: list[tuple[str, ...]] = [_V1, _V2, _V3, _V4]

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)

_COLS = ", ".join(HANDOFF_COLUMNS)
_INSERT_HANDOFF = (
    f"INSERT INTO handoffs ({_COLS}) VALUES ({', '.join('?' for _ in HANDOFF_COLUMNS)})"
)
# Every column but id; the lease goes with any write.
_SET_HANDOFF = ", ".join(f"{c} = ?" for c in HANDOFF_COLUMNS[1:])
_UPDATE_HANDOFF = (
    f"UPDATE handoffs SET {_SET_HANDOFF}, lease_owner = NULL, lease_until = NULL "
    "WHERE id = ? AND version = ?"
)
_APPLY_HANDOFF = _UPDATE_HANDOFF + " AND stage = ?"
# A step rarely moves started_at; leaving it out of SET spares the handoffs_started
# index a write. The guard makes the statement miss when it did move.
_STEP_SET = ", ".join(f"{c} = ?" for c in HANDOFF_COLUMNS[1:] if c != "started_at")
_APPLY_STEP = (
    f"UPDATE handoffs SET {_STEP_SET}, lease_owner = NULL, lease_until = NULL "
    "WHERE id = ? AND version = ? AND stage = ? AND started_at = ?"
)

#: The due-claim statement. Parameters: worker, lease_until, now, now, limit (µs).
CLAIM_DUE_SQL = (
    "UPDATE handoffs SET lease_owner = ?, lease_until = ? "
    "WHERE rowid IN ("
    "SELECT rowid FROM handoffs INDEXED BY handoffs_due "
    "WHERE next_due_at IS NOT NULL AND next_due_at <= ? "
    "AND (lease_until IS NULL OR lease_until <= ?) "
    "ORDER BY next_due_at LIMIT ?"
    f") RETURNING {_COLS}"
)

_HOLDS_LEASE = "SELECT 1 FROM handoffs WHERE id = ? AND lease_owner = ?"
_EXISTS = "SELECT 1 FROM handoffs WHERE id = ?"
_INSERT_ESCALATION = (
    "INSERT INTO escalations (handoff_id, stage, step, applied_at, outcome, actions) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (notifier, idempotency_key, recipient, handoff_id, stage, step, action, "
    "subject, text, trace_id, policy, created_at, payload, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CLAIM_OUTBOX = (
    "UPDATE outbox SET lease_token = ? || seq, lease_until = ? "
    "WHERE seq IN ("
    "SELECT seq FROM outbox INDEXED BY outbox_due "
    "WHERE state = 'pending' AND next_attempt_at <= ? "
    "AND (lease_until IS NULL OR lease_until <= ?) "
    "ORDER BY next_attempt_at, seq LIMIT ?"
    f") RETURNING seq, {OUTBOX_COLUMNS}"
)
_COMPLETE_OUTBOX = (
    # A pending row with no next attempt time keeps its old one: due at once. A
    # sent or dead row has none, as in the other stores.
    # Named parameters: sqlite3 takes numbered ones (?1) only from a mapping from Python
    # 3.14 on, and warns from 3.12.
    "UPDATE outbox SET state = :state, attempts = :attempts, "
    "next_attempt_at = CASE WHEN :state = 'pending' THEN coalesce(:next_at, next_attempt_at) END, "
    "last_error = :error, lease_token = NULL, lease_until = NULL "
    "WHERE notifier = :notifier AND idempotency_key = :key AND lease_token = :token "
    "AND state = 'pending'"
)
_RELEASE_OUTBOX = (
    "UPDATE outbox SET lease_token = NULL, lease_until = NULL "
    "WHERE notifier = ? AND idempotency_key = ? AND lease_token = ? AND state = 'pending'"
)
_REQUEUE_OUTBOX = (
    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, "
    "lease_token = NULL, lease_until = NULL "
    "WHERE notifier = ? AND idempotency_key = ? AND state = 'dead'"
)
# Handoffs that ended before :before with no pending notification, oldest start first.
_PURGEABLE = (
    "SELECT id FROM handoffs INDEXED BY handoffs_started "
    "WHERE started_at < :before AND coalesce(cancelled_at, stopped_at) < :before "
    "AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.handoff_id = handoffs.id "
    "AND state = 'pending') ORDER BY started_at, id LIMIT :limit"
)
_PURGE_COUNT = (
    f"WITH p AS ({_PURGEABLE}) SELECT (SELECT count(*) FROM p), "
    "(SELECT count(*) FROM escalations WHERE handoff_id IN p), "
    "(SELECT count(*) FROM outbox WHERE handoff_id IN p), "
    "(SELECT count(*) FROM traces WHERE handoff_id IN p)"
)
#: Each takes the ids to purge as one JSON array; children first, the handoffs last.
_PURGE_DELETES = tuple(
    f"DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each(:ids))"
    for table, column in (
        ("escalations", "handoff_id"),
        ("outbox", "handoff_id"),
        ("traces", "handoff_id"),
        ("handoffs", "id"),
    )
)
#: Outbox states, written into statements as literals so partial indexes apply.
_STATES = frozenset({OutboxState.PENDING, OutboxState.SENT, OutboxState.DEAD})
#: The summary's statements, each answered from an index (parameter: now, µs).
SUMMARY_SQL = (
    "SELECT count(*) FROM handoffs",
    "SELECT count(*) FROM handoffs WHERE next_due_at IS NOT NULL",
    "SELECT count(*), min(next_due_at) FROM handoffs "
    "WHERE next_due_at IS NOT NULL AND next_due_at <= :now",
    "SELECT min(next_due_at) FROM handoffs WHERE next_due_at IS NOT NULL AND next_due_at > :now",
    "SELECT count(*) FROM outbox WHERE state = 'pending'",
    "SELECT count(*), min(next_attempt_at) FROM outbox INDEXED BY outbox_due "
    "WHERE state = 'pending' AND next_attempt_at <= :now",
    "SELECT count(*) FROM outbox WHERE state = 'dead'",
)
_INSERT_TRACE = f"INSERT INTO traces ({TRACE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"

#: The most parameters one multi-row INSERT binds (rows × columns), below the
#: connection's own limit. Beyond a few dozen rows a statement saves little more
#: per row, and a bigger one costs more to compile the first time.
_PARAMS_PER_INSERT = 1024


@cache
def _insert_sql(single: str, rows: int) -> str:
    """``single`` (an ``INSERT … VALUES (?, …)`` of one row) for ``rows`` rows."""
    head, _, values = single.partition(" VALUES ")
    return f"{head} VALUES {', '.join([values] * rows)}"


def _insert_rows(conn: sqlite3.Connection, single: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (in order) with ``single``'s columns, many rows per statement.

    One statement per chunk rather than one per row as ``executemany`` runs
    them: a batch's rows cost one bind-and-step round instead of hundreds.
    Chunks are powers of two in size, so whatever the batch, a handful of
    distinct statements per table reach the connection's statement cache. A
    failing row fails its whole statement, as with ``executemany``.
    """
    n = len(rows)
    if n == 0:
        return
    width = len(rows[0])
    cap = min(_PARAMS_PER_INSERT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)) // width
    if n == 1 or cap < 2:
        conn.executemany(single, rows)
        return
    cap = 1 << (cap.bit_length() - 1)
    lo = 0
    while lo < n:
        size = min(cap, 1 << ((n - lo).bit_length() - 1))
        conn.execute(_insert_sql(single, size), list(chain.from_iterable(rows[lo : lo + size])))
        lo += size


def _lossy(value: Any, kinds: set[str]) -> bool:
    """Whether SQLite cannot label the group as Python does, so Python counts it.

    ``json_extract`` gives a float past 64 bits, so ``2**63`` and ``2**63 + 1``
    would fall into one group; and a group mixing a JSON float with an integer
    or a boolean (``0.0`` with ``0`` or ``false``) takes the label of whichever
    row SQLite saw first, where Python labels it by the first number it meets.
    """
    return (type(value) is float and "integer" in kinds) or (
        "real" in kinds and bool(kinds & {"integer", "true", "false"})
    )


class _Abort(Exception):
    """Roll the transaction back and return ``value`` from the write."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


# -- value conversion ----------------------------------------------------------


def _us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def _dt(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def _lenient(value: Any) -> Any:
    # Trace details and payloads are logs: a value JSON cannot hold is kept as text.
    try:
        return json_default(value)
    except TypeError:
        return str(value)


_strict_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_lenient_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_lenient).encode
# The encoder's own string quoting (what ensure_ascii=False uses).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _row_encoder() -> Callable[[Sequence[Any]], str]:
    """``_strict_json`` for a flat row of text, numbers and nulls, about a third faster.

    ``JSONEncoder.encode`` builds its C encoder on every call, with a table for
    spotting circular references; a row cannot hold one, so one encoder
    without it serves every call. The text is the same.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python implementation)
        return _strict_json
    chunks = make(None, None, _encode_str, None, ":", ",", False, False, True)
    join = "".join

    def encode(row: Sequence[Any]) -> str:
        return join(chunks(row, 0))

    return encode


_python_row_json = _row_encoder()
_row_json: Callable[[Sequence[Any]], str] = _python_row_json


def _python_detail_json(detail: Mapping[str, Any]) -> str:
    """``_lenient_json(dict(detail))``, built directly for the common small details.

    A trace detail is a few names with text, number, boolean or null values;
    anything else (NaN, nested values, other types) goes through the encoder.
    The result is the same text.
    """
    if not detail:
        return "{}"
    parts = []
    for key, value in detail.items():
        kind = type(value)
        if type(key) is not str:
            return _lenient_json(dict(detail))
        if kind is str:
            text = _encode_str(value)
        elif kind is int:
            text = int.__repr__(value)
        elif kind is float and -_INF < value < _INF:
            text = float.__repr__(value)
        elif value is None:
            text = "null"
        elif kind is bool:
            text = "true" if value else "false"
        else:
            return _lenient_json(dict(detail))
        parts.append(f"{_encode_str(key)}:{text}")
    return "{" + ",".join(parts) + "}"


_detail_json: Callable[[Mapping[str, Any]], str] = _python_detail_json

_ACTIONS_JSON: dict[tuple[str, ...], str] = {}


def _actions_json(actions: tuple[str, ...]) -> str:
    """An escalation's actions as JSON (a policy has a few steps; each is encoded once)."""
    if type(actions) is not tuple:
        return _strict_json(list(actions))
    text = _ACTIONS_JSON.get(actions)
    if text is None:
        text = _strict_json(list(actions))
        if len(_ACTIONS_JSON) < 1024:
            _ACTIONS_JSON[actions] = text
    return text


def _loads(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


def _attributes_json(h: Handoff) -> str:
    return attributes_json(h, "SQLite")


def _python_handoff_values(h: Handoff) -> tuple[Any, ...]:
    """The row for ``h`` in :data:`HANDOFF_COLUMNS` order."""
    (
        id_,
        policy,
        started_at,
        owner,
        backup_owner,
        sla_minutes,
        first_response_at,
        responded_by,
        completed_at,
        cancelled_at,
        cancel_reason,
        breached,
        breach_reason,
        trace_id,
        wbh,
        channel,
        segment,
        stage,
        stopped_at,
        next_due_at,
        deadline_at,
        wall_deadline_at,
        business_deadline_at,
        paused_at,
        paused_seconds,
        paused_business_seconds,
        wall_elapsed_seconds,
        business_elapsed_seconds,
        ingested_at,
        _attributes,
        version,
    ) = _values_of(h)
    return (
        id_,
        policy,
        to_us(started_at),
        owner,
        backup_owner,
        sla_minutes,
        None if first_response_at is None else to_us(first_response_at),
        responded_by,
        None if completed_at is None else to_us(completed_at),
        None if cancelled_at is None else to_us(cancelled_at),
        cancel_reason,
        1 if breached else 0,
        breach_reason,
        trace_id,
        None if wbh is None else (1 if wbh else 0),
        channel,
        segment,
        stage,
        None if stopped_at is None else to_us(stopped_at),
        None if next_due_at is None else to_us(next_due_at),
        None if deadline_at is None else to_us(deadline_at),
        None if wall_deadline_at is None else to_us(wall_deadline_at),
        None if business_deadline_at is None else to_us(business_deadline_at),
        None if paused_at is None else to_us(paused_at),
        paused_seconds,
        paused_business_seconds,
        wall_elapsed_seconds,
        business_elapsed_seconds,
        None if ingested_at is None else to_us(ingested_at),
        _attributes_json(h),
        version,
    )


def _python_handoff_from_row(r: Sequence[Any]) -> Handoff:
    """The handoff a row in :data:`HANDOFF_COLUMNS` order holds."""
    dt = from_us  # compiled when slakit._crecords is built (several times faster)
    wbh = r[14]
    # Rows were validated when written; rebuilding them skips the validators.
    return _from_values(
        (
            r[0],
            r[1],
            dt(r[2]),
            r[3],
            r[4],
            r[5],
            None if r[6] is None else dt(r[6]),
            r[7],
            None if r[8] is None else dt(r[8]),
            None if r[9] is None else dt(r[9]),
            r[10],
            bool(r[11]),
            r[12],
            r[13],
            None if wbh is None else bool(wbh),
            r[15],
            r[16],
            r[17],
            None if r[18] is None else dt(r[18]),
            None if r[19] is None else dt(r[19]),
            None if r[20] is None else dt(r[20]),
            None if r[21] is None else dt(r[21]),
            None if r[22] is None else dt(r[22]),
            None if r[23] is None else dt(r[23]),
            r[24],
            r[25],
            r[26],
            r[27],
            None if r[28] is None else dt(r[28]),
            _EMPTY if r[29] == "{}" else MappingProxyType(json.loads(r[29])),
            r[30],
        )
    )


def _attributes_from_text(text: str) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(text))


#: One code per column for slakit._crecords' row codec: d datetime, b flag,
#: B optional flag, j attributes, o as it is (see _crecords.c).
_ROW_KINDS = bytes(
    ord(
        "d"
        if name in _DATETIME_FIELDS
        else {"breached": "b", "within_business_hours": "B", "attributes": "j"}.get(name, "o")
    )
    for name in HANDOFF_COLUMNS
)

_handoff_values: Callable[[Handoff], tuple[Any, ...]] = _python_handoff_values
_handoff_from_row: Callable[[Sequence[Any]], Handoff] = _python_handoff_from_row
if _time.ACCELERATED:
    from slakit import _crecords

    _encode_row = _crecords.encode_row
    _decode_row = _crecords.decode_row

    def _compiled_handoff_values(h: Handoff) -> tuple[Any, ...]:
        try:
            return _encode_row(_values_of(h), _ROW_KINDS, _attributes_text)
        except (TypeError, ValueError, RecursionError):
            return _python_handoff_values(h)  # raises, naming the attribute

    def _compiled_handoff_from_row(r: Sequence[Any]) -> Handoff:
        return _from_values(_decode_row(r, _ROW_KINDS, _EMPTY, _attributes_from_text))

    _handoff_values = _compiled_handoff_values
    _handoff_from_row = _compiled_handoff_from_row


def _trace_values(t: TraceRecord) -> tuple[Any, ...]:
    return trace_row(t, to_us(t.at), _detail_json(t.detail))


def _python_trace_rows(traces: Sequence[TraceRecord]) -> list[tuple[Any, ...]]:
    # A step's plain actions share one detail object and one time; encode each once.
    encoded: dict[int, str] = {}
    last_at: datetime | None = None
    at_us = 0
    rows = []
    for t in traces:
        detail = t.detail
        key = id(detail)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = _detail_json(detail)
        if t.at is not last_at:
            last_at = t.at
            at_us = to_us(last_at)
        rows.append(trace_row(t, at_us, text))
    return rows


def _trace_from_row(r: Sequence[Any]) -> TraceRecord:
    return trace_from_row(r, from_us(r[6]), _loads(r[8]))


def _python_outbox_rows(
    notifications: Sequence[Notification],
    handoff: Handoff | None = None,
    handoff_row: tuple[Any, ...] = (),
) -> list[tuple[Any, ...]]:
    """Outbox rows; ``handoff_row`` is ``handoff``'s row if the caller has it."""
    # A step's notifications share one payload object; encode it once.
    encoded: dict[int, str] = {}
    rows = []
    for n in notifications:
        payload = n.payload
        key = id(payload)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = _payload_text(payload, handoff, handoff_row)
        rows.append(_outbox_values(n, text))
    return rows


def _payload_text(
    payload: Mapping[str, Any], handoff: Handoff | None, handoff_row: tuple[Any, ...]
) -> str:
    """A notification's payload as stored; ``handoff_row`` is ``handoff``'s row if known."""
    if type(payload) is StepPayload:
        row = handoff_row if payload.handoff is handoff else ()
        return _compact_payload(payload, row or _handoff_values(payload.handoff))
    return _lenient_json(dict(payload)) if payload else "{}"


def _python_escalation_rows(escalations: Sequence[Escalation]) -> list[tuple[Any, ...]]:
    return [escalation_row(e, to_us(e.applied_at), _actions_json(e.actions)) for e in escalations]


_trace_rows: Callable[[Sequence[TraceRecord]], list[tuple[Any, ...]]] = _python_trace_rows
_outbox_rows: Callable[..., list[tuple[Any, ...]]] = _python_outbox_rows
_escalation_rows: Callable[[Sequence[Escalation]], list[tuple[Any, ...]]] = _python_escalation_rows
if _time.ACCELERATED:
    # The same rows, each record's slots read and encoded in C (tests compare the two).

    def _spec(names: Sequence[str], columns: Sequence[tuple[str, str]]) -> bytes:
        """``Builder.rows``' spec: each column's slot position and encoding."""
        return bytes(b for name, kind in columns for b in (names.index(name), ord(kind)))

    def _rows_of(cls: type, columns: Sequence[tuple[str, str]]) -> tuple[Any, bytes]:
        names = tuple(a.name for a in attrs.fields(cls))
        return _crecords.Builder(cls, names).rows, _spec(names, columns)

    _c_trace_rows, _TRACE_SPEC = _rows_of(
        TraceRecord,
        [
            (c, "d" if c == "at" else "j" if c == "detail" else "o")
            for c in TRACE_COLUMNS.split(", ")
        ],
    )
    _c_outbox_rows, _OUTBOX_SPEC = _rows_of(
        Notification,
        [
            *(
                (c, "d" if c == "created_at" else "j" if c == "payload" else "o")
                for c in NOTIFICATION_COLUMNS
            ),
            ("created_at", "d"),  # the first attempt is due when the notification is created
        ],
    )
    _c_escalation_rows, _ESCALATION_SPEC = _rows_of(
        Escalation,
        [
            (c, "d" if c == "applied_at" else "j" if c == "actions" else "o")
            for c in ESCALATION_COLUMNS
        ],
    )
    _detail_json = partial(_crecords.detail_json, lambda d: _lenient_json(dict(d)))

    def _compiled_trace_rows(traces: Sequence[TraceRecord]) -> list[tuple[Any, ...]]:
        if type(traces) is not tuple and type(traces) is not list:
            traces = list(traces)
        try:
            rows: list[tuple[Any, ...]] = _c_trace_rows(traces, _TRACE_SPEC, _detail_json)
        except TypeError:  # not exactly TraceRecords: Python says what is wrong
            return _python_trace_rows(traces)
        return rows

    def _compiled_outbox_rows(
        notifications: Sequence[Notification],
        handoff: Handoff | None = None,
        handoff_row: tuple[Any, ...] = (),
    ) -> list[tuple[Any, ...]]:
        if not notifications:
            return []
        if type(notifications) is not tuple and type(notifications) is not list:
            notifications = list(notifications)
        try:
            rows: list[tuple[Any, ...]] = _c_outbox_rows(
                notifications,
                _OUTBOX_SPEC,
                partial(_payload_text, handoff=handoff, handoff_row=handoff_row),
            )
        except TypeError:
            return _python_outbox_rows(notifications, handoff, handoff_row)
        return rows

    def _compiled_escalation_rows(escalations: Sequence[Escalation]) -> list[tuple[Any, ...]]:
        if type(escalations) is not tuple and type(escalations) is not list:
            escalations = list(escalations)
        try:
            rows: list[tuple[Any, ...]] = _c_escalation_rows(
                escalations, _ESCALATION_SPEC, _actions_json
            )
        except TypeError:
            return _python_escalation_rows(escalations)
        return rows

    def _compiled_row_json(row: Sequence[Any]) -> str:
        if type(row) is tuple:
            try:
                return _crecords.row_json(row)
            except (TypeError, ValueError):  # not plain values: the json module says why
                pass
        return _python_row_json(row)

    _trace_rows = _compiled_trace_rows
    _outbox_rows = _compiled_outbox_rows
    _escalation_rows = _compiled_escalation_rows
    _row_json = _compiled_row_json


#: How a payload stored in its compact form begins.
_COMPACT = '{"handoff@":'


def _python_compact_payload(payload: StepPayload, row: tuple[Any, ...]) -> str:
    """A step's payload with the record as its row (``_payload`` expands it again).

    The row is what the step writes to ``handoffs`` anyway, so this costs one
    small array's encoding instead of the record's ``to_dict()`` and its JSON.
    """
    return (
        f"{_COMPACT}{_row_json(row)},"
        f'"step":{_encode_str(payload.step)},'
        f'"stage":{int(payload.stage)},'
        f'"link":{_encode_str(payload.link)}}}'
    )


_compact_payload: Callable[[StepPayload, tuple[Any, ...]], str] = _python_compact_payload
if _time.ACCELERATED:

    def _compiled_compact_payload(payload: StepPayload, row: tuple[Any, ...]) -> str:
        """The same text, written in C in one buffer."""
        if type(row) is tuple:
            try:
                return _crecords.compact_payload(row, payload.step, payload.stage, payload.link)
            except (TypeError, ValueError):  # not plain values: the Python code says why
                pass
        return _python_compact_payload(payload, row)

    _compact_payload = _compiled_compact_payload


class _StoredPayload(LazyPayload):
    """A payload as stored in the outbox, decoded when a notifier first reads it."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def _build(self) -> dict[str, Any]:
        text = self._text
        if not text.startswith(_COMPACT):
            plain: dict[str, Any] = _loads(text)
            return plain
        data = json.loads(text)
        row = data.pop("handoff@")
        return {"handoff": _handoff_from_row(row).to_dict(), **data}


def _payload(text: str) -> Mapping[str, Any]:
    """A stored payload as notifiers see it: the compact form expanded (on first read)."""
    return _EMPTY if text == "{}" else _StoredPayload(text)


def _outbox_values(n: Notification, payload_json: str) -> tuple[Any, ...]:
    created = to_us(n.created_at)
    # The first attempt is due when the notification is created.
    return (*notification_row(n, created, payload_json), created)


def _outbox_from_row(r: Sequence[Any]) -> OutboxItem:
    return outbox_from_row(
        r,
        created_at=from_us(r[12]),
        payload=_payload(r[13]),
        next_attempt_at=_dt(r[16]),
        lease_until=_dt(r[18]),
    )


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"store.{name} must be a whole number >= 0, got {value!r}",
            field=f"store.{name}",
            value=value,
        )
    return value


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).upper()
    if text not in allowed:
        raise ConfigError(
            f"store.{name} must be one of {', '.join(allowed)}, got {value!r}",
            field=f"store.{name}",
            value=value,
        )
    return text


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


class _PreparedStep:
    """A step application as statement parameters, built before the transaction opens."""

    __slots__ = ("escalations", "expected", "handoff_id", "outbox", "stage", "traces", "values")

    def __init__(self, application: StepApplication) -> None:
        h = application.handoff
        self.handoff_id = h.id
        self.expected = application.expected_version
        self.stage = application.expected_stage
        self.values = values = _handoff_values(h)
        self.escalations = _escalation_rows(application.escalations)
        self.outbox = _outbox_rows(application.notifications, h, values)
        self.traces = _trace_rows(application.traces)

    @property
    def step_params(self) -> tuple[Any, ...]:
        """:data:`_APPLY_STEP`'s parameters: every column but id and started_at."""
        return self.params_after(self)

    @property
    def full_params(self) -> tuple[Any, ...]:
        """:data:`_APPLY_HANDOFF`'s parameters, for a step that moved ``started_at``."""
        expected = self.expected
        return (*self.values[1:-1], expected + 1, self.handoff_id, expected, self.stage)

    def follows(self, before: _PreparedStep) -> bool:
        """Whether this step was planned on the state ``before`` leaves, with
        ``started_at`` unchanged between them: then one write of this step's
        values, guarded by ``before``'s expectations, does what the two
        compare-and-sets in a row would do when the first succeeds."""
        return (
            self.handoff_id == before.handoff_id
            and self.expected == before.expected + 1
            and self.stage == before.values[_STAGE]
            and self.values[2] == before.values[2]
        )

    def params_after(self, first: _PreparedStep) -> tuple[Any, ...]:
        """:data:`_APPLY_STEP`'s parameters for this step's values on ``first``'s
        expectations, for a run of steps of one handoff that each :meth:`follows`
        the one before."""
        values = self.values
        return (
            values[1],
            *values[3:-1],
            self.expected + 1,
            self.handoff_id,
            first.expected,
            first.stage,
            first.values[2],
        )

    def update(self, conn: sqlite3.Connection) -> bool:
        """The compare-and-set on the handoff alone; ``False`` when another writer won.

        :raises UnknownHandoffError: when the handoff does not exist.
        """
        if (
            conn.execute(_APPLY_STEP, self.step_params).rowcount != 1
            and conn.execute(_APPLY_HANDOFF, self.full_params).rowcount != 1
        ):
            if conn.execute(_EXISTS, (self.handoff_id,)).fetchone() is None:
                raise UnknownHandoffError(self.handoff_id)
            return False
        return True

    def write(self, conn: sqlite3.Connection) -> bool:
        """Write the step in the open transaction; ``False`` when another writer won.

        On ``False`` the caller rolls back what this may have written.
        """
        if not self.update(conn):
            return False
        try:
            conn.executemany(_INSERT_ESCALATION, self.escalations)
            if self.outbox:
                conn.executemany(_INSERT_OUTBOX, self.outbox)
        except sqlite3.IntegrityError:
            # Another writer already made this (handoff, stage) or notification happen.
            return False
        if self.traces:
            conn.executemany(_INSERT_TRACE, self.traces)
        return True


def _runs(steps: Sequence[_PreparedStep]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of ``steps``: a step alone, or steps of one
    handoff that each :meth:`~_PreparedStep.follows` the one before."""
    i, n = 0, len(steps)
    while i < n:
        j = i + 1
        while j < n and steps[j].follows(steps[j - 1]):
            j += 1
        yield i, j
        i = j


def _update_runs(conn: sqlite3.Connection, steps: Sequence[_PreparedStep]) -> list[bool]:
    """Every step's compare-and-set, in order; ``True`` for each that won.

    A run of steps of one handoff, each planned on the state the one before
    leaves (an engine catching up on several due steps), is written as one
    update of the last step's values guarded by the first one's expectations:
    the same row as the updates one after another, at the cost of one. When
    that misses, the run is tried step by step, as it would have been.
    """
    done: list[bool] = []
    for i, j in _runs(steps):
        if j == i + 1:
            done.append(steps[i].update(conn))
        elif conn.execute(_APPLY_STEP, steps[j - 1].params_after(steps[i])).rowcount == 1:
            done.extend([True] * (j - i))
        else:
            done.extend(step.update(conn) for step in steps[i:j])
    return done


# -- the store -----------------------------------------------------------------


class SQLiteStore(RecordStore):
    """Handoffs, escalations, outbox and trace rows in one SQLite database file.

    :param path: the database file (created if missing). ``":memory:"`` gives a
        private in-memory database behind one shared, locked connection (tests).
    :param busy_timeout: milliseconds a statement waits for another writer's lock.
    :param journal_mode: ``WAL`` (default; readers never block the writer) or
        another SQLite journal mode.
    :param synchronous: ``NORMAL`` (default; with WAL a commit survives a
        process crash, and the last commits may be lost on power failure) or
        ``FULL`` (every commit is fsynced).
    :param wal_autocheckpoint: WAL pages after which a commit checkpoints. A
        checkpoint costs two fsyncs, so the default (10000 pages, about 40 MB)
        is ten times SQLite's; the WAL is truncated back to 64 MiB afterwards.
    :param lock_retries: how many times a transaction that still finds the
        database locked after ``busy_timeout`` is retried, with backoff,
        before :class:`~slakit.errors.StoreError` is raised.
    :param cache_size_kib: page cache per connection, in KiB.
    :raises ConfigError: for an option out of range.
    """

    name = "sqlite"
    multi_process = True

    def __init__(
        self,
        path: str | os.PathLike[str] = "slakit.db",
        *,
        busy_timeout: int = 5000,
        journal_mode: str = "WAL",
        synchronous: str = "NORMAL",
        wal_autocheckpoint: int = 10000,
        lock_retries: int = 8,
        cache_size_kib: int = 16384,
    ) -> None:
        self.busy_timeout = _whole("busy_timeout", busy_timeout)
        self.journal_mode = _choice("journal_mode", journal_mode, _JOURNAL_MODES)
        self.synchronous = _choice("synchronous", synchronous, _SYNCHRONOUS)
        self.wal_autocheckpoint = _whole("wal_autocheckpoint", wal_autocheckpoint)
        self.lock_retries = _whole("lock_retries", lock_retries)
        self.cache_size_kib = _whole("cache_size_kib", cache_size_kib)
        self.path = str(path) if isinstance(path, str) else os.fspath(path)
        self.in_memory = self.path == ":memory:"
        self._local = threading.local()
        self._conns_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        # Connections inherited through fork() are never used or closed in the child.
        self._orphans: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        self._setup_lock = threading.Lock()
        self._file_id: tuple[int, int] | None = None
        self._give_up = threading.Event()
        self._ready = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- connections ----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Open and configure one connection (subclasses may wrap it, e.g. in tests)."""
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for the sqlite store; "
                f"it needs {'.'.join(map(str, _MIN_SQLITE))} or newer (UPDATE … RETURNING)",
                field="sqlite_version",
                value=sqlite3.sqlite_version,
            )
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout / 1000,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,
                cached_statements=256,
            )
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute(f"PRAGMA cache_size = -{self.cache_size_kib}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA wal_autocheckpoint = {self.wal_autocheckpoint}")
            conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open SQLite database {self.path!r}: {exc}", field="path", value=self.path
            ) from exc
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self!r} is closed", field="path", value=self.path)
        if self.in_memory:
            if self._shared is None:
                self._shared = self._connect()
            return self._shared
        pid = os.getpid()
        if pid != self._pid:
            with self._conns_lock:
                self._orphans.extend(self._conns)
                self._conns = []
                self._local = threading.local()
                self._pid = pid
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _guard(self) -> contextlib.AbstractContextManager[Any]:
        # One shared connection (":memory:") means one transaction at a time.
        return self._shared_lock if self.in_memory else contextlib.nullcontext()

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.setup()

    def stop_waiting(self, stop: bool = True) -> None:
        """Give up waiting for a lock (``stop=False`` waits again): while set, a
        retry raises :class:`StoreError` instead of waiting once more.

        :meth:`slakit.Engine.stop` calls it, so a ``slakit run`` told to stop
        while another process holds the database does not wait through every
        retry first (9 × 5 s by default); :meth:`slakit.Engine.run` clears it
        when it returns. A statement already waiting ends its ``busy_timeout``.
        """
        if stop:
            self._give_up.set()
        else:
            self._give_up.clear()

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, retrying with capped backoff while the database is locked."""
        delay = 0.005
        last: sqlite3.Error | None = None
        for _ in range(self.lock_retries + 1):
            if last is not None and self._give_up.is_set():
                raise StoreError(
                    f"sqlite store {self.path!r}: {what} stopped waiting for the lock "
                    "(the process is stopping)",
                    field="path",
                    value=self.path,
                ) from last
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreError(
                        f"sqlite store {self.path!r}: {what} failed: {exc}",
                        field="path",
                        value=self.path,
                    ) from exc
                last = exc
            except sqlite3.IntegrityError:
                raise  # the caller turns a broken constraint into its own error
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"sqlite store {self.path!r}: {what} failed: {exc}",
                    field="path",
                    value=self.path,
                ) from exc
            time.sleep(delay / 2 + random.uniform(0, delay / 2))
            delay = min(delay * 2, 1.0)
        raise StoreError(
            f"sqlite store {self.path!r}: {what} still found the database locked after "
            f"{self.lock_retries + 1} attempts with busy_timeout={self.busy_timeout} ms "
            f"({last}); another process holds a write transaction open",
            field="path",
            value=self.path,
        ) from last

    def _write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; commit unless it aborts."""
        self._ensure_ready()

        def attempt() -> T:
            with self._guard():
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except _Abort as abort:
                    conn.execute("ROLLBACK")
                    return abort.value  # type: ignore[no-any-return]
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result

        return self._retrying(what, attempt)

    def _read(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on this thread's connection (one snapshot per statement)."""
        self._ensure_ready()

        def attempt() -> T:
            with self._guard():
                return fn(self._conn())

        return self._retrying(what, attempt)

    # -- lifecycle ------------------------------------------------------

    def setup(self) -> None:
        """Switch to the journal mode and apply pending migrations. Idempotent.

        :raises SchemaVersionError: when the database's schema is newer than
            this code knows.
        :raises StoreError: when the file cannot be opened or stays locked.
        """
        with self._setup_lock:
            if self._ready:
                return
            self._retrying("setup", self._setup_once)
            self._file_id = self._current_file_id()
            self._ready = True

    def _current_file_id(self) -> tuple[int, int] | None:
        """The database file's (device, inode); ``None`` in memory or when it is gone."""
        if self.in_memory:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """:raises StoreError: when the file this store opened was removed or replaced.

        Open connections keep writing to the old file, where nothing else looks:
        a loop that went on would report "nothing due" for ever.
        """
        if self.in_memory or not self._ready:
            return
        if self._current_file_id() != self._file_id:
            raise StoreError(
                f"SQLite database {self.path!r} was removed or replaced while this process "
                "had it open; restart it to use the file now there",
                field="path",
                value=self.path,
            )

    def _setup_once(self) -> None:
        with self._guard():
            conn = self._conn()
            if not self.in_memory:
                current = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(current).upper() != self.journal_mode:
                    conn.execute(f"PRAGMA journal_mode = {self.journal_mode}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._migrate(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        known = len(MIGRATIONS)
        if version > known:
            raise SchemaVersionError(
                f"SQLite database {self.path!r} has schema version {version} "
                f"(PRAGMA user_version), newer than the {known} this slakit knows; "
                "upgrade slakit to open it",
                field="user_version",
                value=version,
            )
        for target in range(version, known):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
            # PRAGMA user_version is transactional: it lands with the step's DDL.
            conn.execute(f"PRAGMA user_version = {target + 1}")

    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version``."""
        return int(self._read("schema_version", _user_version))

    def close(self) -> None:
        """Close every connection this store opened. The store is unusable afterwards."""
        with self._conns_lock:
            conns = list(self._conns)
            self._conns = []
        if self._shared is not None:
            conns.append(self._shared)
            self._shared = None
        self._closed = True
        for i, conn in enumerate(conns):
            with contextlib.suppress(sqlite3.Error):
                if i == 0:
                    conn.execute("PRAGMA optimize")
                conn.close()

    # -- handoffs -------------------------------------------------------

    def insert(self, handoff: Handoff, traces: Sequence[TraceRecord] = ()) -> Handoff:
        row = _handoff_values(handoff)
        trace_rows = [_trace_values(t) for t in traces]

        def tx(conn: sqlite3.Connection) -> Handoff:
            try:
                conn.execute(_INSERT_HANDOFF, row)
            except sqlite3.IntegrityError as exc:
                raise self._integrity(exc, handoff.id) from None
            if trace_rows:
                conn.executemany(_INSERT_TRACE, trace_rows)
            return handoff

        return self._write("insert", tx)

    def insert_many(self, handoffs: Sequence[Handoff], traces: Sequence[TraceRecord] = ()) -> int:
        check_batch_ids(handoffs)
        rows = [_handoff_values(h) for h in handoffs]
        trace_rows = _trace_rows(traces)

        def tx(conn: sqlite3.Connection) -> int:
            _insert_rows(conn, _INSERT_HANDOFF, rows)
            _insert_rows(conn, _INSERT_TRACE, trace_rows)
            return len(rows)

        try:
            return self._write("insert_many", tx)
        except sqlite3.IntegrityError as exc:
            # Rolled back by now, so what exists is what was there before the batch.
            ids = [r[0] for r in rows]
            existing = self._read("insert_many", partial(_first_existing, ids))
            raise self._integrity(exc, existing) from None

    def _integrity(self, exc: sqlite3.IntegrityError, handoff_id: str | None) -> Exception:
        if "handoffs.id" in str(exc) or "PRIMARY KEY" in str(exc):
            return DuplicateHandoffError(
                f"handoff id {handoff_id!r} already exists", field="id", value=handoff_id
            )
        return StoreError(
            f"sqlite store {self.path!r}: handoff {handoff_id!r} rejected: {exc}",
            field="id",
            value=handoff_id,
        )

    def get(self, handoff_id: str) -> Handoff:
        row = self._read(
            "get",
            lambda conn: conn.execute(
                f"SELECT {_COLS} FROM handoffs WHERE id = ?", (handoff_id,)
            ).fetchone(),
        )
        if row is None:
            raise UnknownHandoffError(handoff_id)
        return _handoff_from_row(row)

    def get_many(self, handoff_ids: Iterable[str]) -> dict[str, Handoff]:
        ids = list(dict.fromkeys(handoff_ids))

        def q(conn: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            for lo in range(0, len(ids), 500):
                chunk = ids[lo : lo + 500]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT {_COLS} FROM handoffs WHERE id IN ({marks})"
                rows.extend(conn.execute(sql, chunk).fetchall())
            return rows

        return {r[0]: _handoff_from_row(r) for r in self._read("get_many", q)} if ids else {}

    def update(
        self, handoff: Handoff, expected_version: int, traces: Sequence[TraceRecord] = ()
    ) -> Handoff:
        values = _handoff_values(handoff)
        params = (*values[1:-1], expected_version + 1, handoff.id, expected_version)
        trace_rows = [_trace_values(t) for t in traces]

        def tx(conn: sqlite3.Connection) -> None:
            if conn.execute(_UPDATE_HANDOFF, params).rowcount != 1:
                found = conn.execute(
                    "SELECT version FROM handoffs WHERE id = ?", (handoff.id,)
                ).fetchone()
                if found is None:
                    raise UnknownHandoffError(handoff.id)
                raise ConcurrentUpdateError(
                    f"handoff {handoff.id!r} changed: expected version {expected_version}, "
                    f"found {found[0]}",
                    field="version",
                    value=expected_version,
                )
            if trace_rows:
                conn.executemany(_INSERT_TRACE, trace_rows)

        self._write("update", tx)
        return attrs.evolve(handoff, version=expected_version + 1)

    def claim_due(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[Handoff]:
        now_us = to_us(now)
        params = (worker, now_us + round(lease_seconds * 1_000_000), now_us, now_us, limit)

        def tx(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(CLAIM_DUE_SQL, params).fetchall()

        rows = self._write("claim_due", tx)
        rows.sort(key=lambda r: (r[19], r[0]))
        return [_handoff_from_row(r) for r in rows]

    def apply_step(self, application: StepApplication) -> bool:
        step = _PreparedStep(application)

        def tx(conn: sqlite3.Connection) -> bool:
            if not step.write(conn):
                raise _Abort(False)
            return True

        return self._write("apply_step", tx)

    def apply_steps(self, applications: Sequence[StepApplication]) -> list[bool]:
        """Commit many steps in one transaction, each on its own terms.

        Each application is written whole or not at all, exactly as by
        :meth:`apply_step` (a savepoint per step), and all of them commit
        together: one write lock and one commit for the batch. Not part of
        :class:`~slakit.abc.RecordStore`; it is here for an engine that plans
        a batch of due steps before writing them.

        :returns: one flag per application, ``True`` when written.
        :raises UnknownHandoffError: when one names a missing handoff; then
            nothing of the batch is written.
        """
        steps = [_PreparedStep(a) for a in applications]

        def one_by_one(conn: sqlite3.Connection) -> list[bool]:
            done: list[bool] = []
            for step in steps:
                conn.execute("SAVEPOINT step")
                ok = step.write(conn)
                if not ok:
                    conn.execute("ROLLBACK TO step")
                conn.execute("RELEASE step")
                done.append(ok)
            return done

        def tx(conn: sqlite3.Connection) -> list[bool]:
            # Fast path: every compare-and-set, then each table's rows for the
            # steps that won in one executemany. A conflicting row (another
            # writer made a stage happen) undoes the lot, and the batch is
            # redone step by step, each under its own savepoint.
            conn.execute("SAVEPOINT batch")
            done = _update_runs(conn, steps)
            won = [step for step, ok in zip(steps, done, strict=True) if ok]
            try:
                _insert_rows(conn, _INSERT_ESCALATION, [r for st in won for r in st.escalations])
                _insert_rows(conn, _INSERT_OUTBOX, [r for st in won for r in st.outbox])
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                return one_by_one(conn)
            _insert_rows(conn, _INSERT_TRACE, [r for st in won for r in st.traces])
            conn.execute("RELEASE batch")
            return done

        return self._write("apply_steps", tx)

    def release(self, handoff_id: str, worker: str) -> None:
        # Only this worker can make the lease its own, so a lease not held now
        # needs no write transaction (a step or update already released it).
        held = self._read(
            "release",
            partial(_fetch, _HOLDS_LEASE, (handoff_id, worker)),
        )
        if not held:
            return

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE handoffs SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (handoff_id, worker),
            )

        self._write("release", tx)

    def iter_handoffs(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        policy: str | None = None,
    ) -> Iterator[Handoff]:
        # Keyset pages: no statement (and no lock) stays open between yields.
        where = ["(started_at, id) > (?, ?)"]
        fixed: list[Any] = []
        if since is not None:
            where.append("started_at >= ?")
            fixed.append(to_us(ensure_aware("since", since)))
        if until is not None:
            where.append("started_at < ?")
            fixed.append(to_us(ensure_aware("until", until)))
        if policy is not None:
            where.append("policy = ?")
            fixed.append(policy)
        sql = (
            f"SELECT {_COLS} FROM handoffs WHERE {' AND '.join(where)} "
            f"ORDER BY started_at, id LIMIT {_PAGE}"
        )
        # Ids are never empty, so (started_at, id) > (t, "") means started_at >= t:
        # the first page starts its index range at `since`, not at the beginning.
        after: tuple[int, str] = (
            -(2**63) if since is None else to_us(ensure_aware("since", since)),
            "",
        )
        while True:
            rows = self._read("iter_handoffs", partial(_fetch, sql, (*after, *fixed)))
            for r in rows:
                yield _handoff_from_row(r)
            if len(rows) < _PAGE:
                return
            after = (rows[-1][2], rows[-1][0])

    def count(self) -> int:
        return int(
            self._read(
                "count", lambda conn: conn.execute("SELECT count(*) FROM handoffs").fetchone()[0]
            )
        )

    def next_wakeup(self) -> datetime | None:
        self._check_file()  # once per tick of a run loop

        def q(conn: sqlite3.Connection) -> list[int | None]:
            due = conn.execute(
                "SELECT min(next_due_at) FROM handoffs WHERE next_due_at IS NOT NULL"
            ).fetchone()[0]
            retry = conn.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'"
            ).fetchone()[0]
            return [due, retry]

        found = [v for v in self._read("next_wakeup", q) if v is not None]
        return _dt(min(found)) if found else None

    # -- escalations ----------------------------------------------------

    def escalations(self, handoff_id: str | None = None) -> list[Escalation]:
        sql = "SELECT handoff_id, stage, step, applied_at, outcome, actions FROM escalations"
        params: tuple[Any, ...] = ()
        if handoff_id is not None:
            sql += " WHERE handoff_id = ?"
            params = (handoff_id,)
        sql += " ORDER BY handoff_id, stage"
        rows = self._read("escalations", lambda conn: conn.execute(sql, params).fetchall())
        return [escalation_from_row(r, from_us(r[3]), json.loads(r[5])) for r in rows]

    # -- outbox ---------------------------------------------------------

    def claim_outbox(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[OutboxItem]:
        now_us = to_us(now)
        token = f"{worker}:{uuid.uuid4().hex}:"
        params = (token, now_us + round(lease_seconds * 1_000_000), now_us, now_us, limit)

        def tx(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(_CLAIM_OUTBOX, params).fetchall()

        rows = self._write("claim_outbox", tx)
        rows.sort(key=lambda r: (r[16], r[0]))
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
        n = item.notification
        params = {
            "state": state,
            "attempts": attempts,
            "next_at": _us(next_attempt_at),
            "error": error,
            "notifier": n.notifier,
            "key": n.idempotency_key,
            "token": item.lease_token,
        }
        trace_rows = [_trace_values(t) for t in traces]

        def tx(conn: sqlite3.Connection) -> bool:
            if conn.execute(_COMPLETE_OUTBOX, params).rowcount != 1:
                raise _Abort(False)
            if trace_rows:
                conn.executemany(_INSERT_TRACE, trace_rows)
            return True

        return self._write("complete_outbox", tx)

    def release_outbox(self, items: Sequence[OutboxItem]) -> int:
        params = [
            (i.notification.notifier, i.notification.idempotency_key, i.lease_token)
            for i in items
            if i.lease_token is not None
        ]
        if not params:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            return int(conn.executemany(_RELEASE_OUTBOX, params).rowcount)

        return self._write("release_outbox", tx)

    def requeue_outbox(
        self,
        items: Sequence[OutboxItem],
        *,
        now: datetime,
        traces: Sequence[TraceRecord] = (),
    ) -> list[bool]:
        due = to_us(ensure_aware("now", now))
        lines = [None if t is None else _trace_values(t) for t in paired_traces(items, traces)]
        keys = [(i.notification.notifier, i.notification.idempotency_key) for i in items]
        if not keys:
            return []

        def tx(conn: sqlite3.Connection) -> list[bool]:
            done: list[bool] = []
            for (notifier, key), line in zip(keys, lines, strict=True):
                ok = conn.execute(_REQUEUE_OUTBOX, (due, notifier, key)).rowcount == 1
                if ok and line is not None:
                    conn.execute(_INSERT_TRACE, line)
                done.append(ok)
            return done

        return self._write("requeue_outbox", tx)

    def outbox(self, handoff_id: str | None = None, state: str | None = None) -> list[OutboxItem]:
        where: list[str] = []
        params: list[Any] = []
        if handoff_id is not None:
            where.append("handoff_id = ?")
            params.append(handoff_id)
        if state in _STATES:
            where.append(f"state = '{state}'")  # a literal, so the partial indexes apply
        elif state is not None:
            where.append("state = ?")
            params.append(state)
        sql = f"SELECT seq, {OUTBOX_COLUMNS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        rows = self._read("outbox", lambda conn: conn.execute(sql, params).fetchall())
        return [_outbox_from_row(r) for r in rows]

    def summary(self, now: datetime) -> StoreSummary:
        at = {"now": to_us(ensure_aware("now", now))}

        def q(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [conn.execute(sql, at).fetchone() for sql in SUMMARY_SQL]

        (
            (handoffs,),
            (timers,),
            (due, oldest),
            (upcoming,),
            (pending,),
            (outbox_due, oldest_outbox),
            (dead,),
        ) = self._read("summary", q)
        return StoreSummary(
            now=now,
            handoffs=handoffs,
            timers=timers,
            due=due,
            oldest_due_at=_dt(oldest),
            next_due_at=_dt(upcoming),
            outbox_pending=pending,
            outbox_due=outbox_due,
            oldest_outbox_due_at=_dt(oldest_outbox),
            outbox_dead=dead,
        )

    def purge(
        self, before: datetime, *, limit: int | None = None, dry_run: bool = False
    ) -> PurgeCounts:
        params = {
            "before": to_us(ensure_aware("before", before)),
            "limit": -1 if limit is None else limit,
        }
        if dry_run:
            row = self._read("purge", lambda conn: conn.execute(_PURGE_COUNT, params).fetchone())
            return PurgeCounts(handoffs=row[0], escalations=row[1], outbox=row[2], traces=row[3])

        def tx(conn: sqlite3.Connection) -> PurgeCounts:
            ids = [r[0] for r in conn.execute(_PURGEABLE, params)]
            if not ids:
                return PurgeCounts()
            arg = {"ids": _strict_json(ids)}
            esc, out, tr, hand = (conn.execute(sql, arg).rowcount for sql in _PURGE_DELETES)
            return PurgeCounts(handoffs=hand, escalations=esc, outbox=out, traces=tr)

        return self._write("purge", tx)

    def outbox_window(self, *, since: datetime, until: datetime) -> list[OutboxItem]:
        params = (to_us(ensure_aware("since", since)), to_us(ensure_aware("until", until)))
        sql = (
            f"SELECT seq, {OUTBOX_COLUMNS} FROM outbox "
            "WHERE created_at >= ? AND created_at < ? ORDER BY seq"
        )
        rows = self._read("outbox_window", lambda conn: conn.execute(sql, params).fetchall())
        return [_outbox_from_row(r) for r in rows]

    # -- traces ---------------------------------------------------------

    def add_traces(self, traces: Sequence[TraceRecord]) -> None:
        rows = [_trace_values(t) for t in traces]
        if not rows:
            return

        def tx(conn: sqlite3.Connection) -> None:
            _insert_rows(conn, _INSERT_TRACE, rows)

        self._write("add_traces", tx)

    def traces(
        self,
        handoff_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[TraceRecord]:
        where: list[str] = []
        params: list[Any] = []
        if handoff_id is not None:
            where.append("handoff_id = ?")
            params.append(handoff_id)
        if since is not None:
            where.append("at >= ?")
            params.append(to_us(ensure_aware("since", since)))
        if until is not None:
            where.append("at < ?")
            params.append(to_us(ensure_aware("until", until)))
        sql = f"SELECT {TRACE_COLUMNS} FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        rows = self._read("traces", lambda conn: conn.execute(sql, params).fetchall())
        return [_trace_from_row(r) for r in rows]

    # -- reports --------------------------------------------------------

    def excluded_ids(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[str]:
        """Cancelled handoffs started in ``[since, until)``, from a partial index."""
        sql = "SELECT id FROM handoffs INDEXED BY handoffs_cancelled WHERE cancelled_at IS NOT NULL"
        params: list[Any] = []
        if since is not None:
            sql += " AND started_at >= ?"
            params.append(to_us(ensure_aware("since", since)))
        if until is not None:
            sql += " AND started_at < ?"
            params.append(to_us(ensure_aware("until", until)))
        sql += " ORDER BY started_at, id"
        rows = self._read("excluded_ids", partial(_fetch, sql, tuple(params)))
        return [r[0] for r in rows]

    def aggregate_hit_rate(
        self,
        *,
        since: datetime | None,
        until: datetime | None,
        by: Sequence[str],
        now: datetime,
    ) -> list[dict[str, Any]] | None:
        """Hit-rate counts per group, computed with one ``GROUP BY`` in SQL.

        A handoff belongs to the window by ``started_at``. Cancelled ones are
        ``excluded``. On each basis it is ``met`` when its clock stopped at or
        before that basis's deadline, ``missed`` when it stopped later or is
        still running (not stopped, cancelled or paused) with ``now`` past the
        deadline, and ``pending`` otherwise. Groups come sorted by the ``by``
        keys; an empty window gives no groups.

        ``attributes.NAME`` groups on the JSON value with ``json_extract``:
        text, numbers and null as they are, ``true``/``false`` as booleans. A
        group holding a JSON object or array (which Python keys by its sorted
        JSON text) sends the whole report back to Python.

        :param by: handoff columns (``channel``, ``segment``, ``policy``, ``owner``…)
            or ``attributes.NAME``.
        :returns: ``None`` (let Python do it) when ``by`` names anything else, or
            an attribute holds an object or array.
        """
        keys = list(by)
        params: dict[str, Any] = {"now": to_us(now)}
        exprs: list[str] = []
        attrs_at: list[int] = []  # positions of attributes.NAME keys
        for i, key in enumerate(keys):
            if key in GROUPABLE_COLUMNS:
                exprs.append(key)
                continue
            name = attribute_name(key)
            if name is None or '"' in name or "\\" in name or not name.isprintable():
                # JSON paths quote names their own way; such names are counted in Python.
                return None
            params[f"path{i}"] = f'$."{name}"'
            exprs.append(f"json_extract(attributes, :path{i})")
            attrs_at.append(i)
        where: list[str] = []
        if since is not None:
            where.append("started_at >= :since")
            params["since"] = to_us(ensure_aware("since", since))
        if until is not None:
            where.append("started_at < :until")
            params["until"] = to_us(ensure_aware("until", until))
        live = "cancelled_at IS NULL"
        # Per handoff: live (not cancelled), then met and missed on each basis.
        flags = [live]
        for basis in ("wall", "business"):
            d = f"{basis}_deadline_at"
            flags.append(f"{live} AND stopped_at <= {d}")
            flags.append(
                f"{live} AND (stopped_at > {d} OR "
                f"(stopped_at IS NULL AND :now > {d} AND (paused_at IS NULL OR paused_at > {d})))"
            )
        if len(keys) >= 2:
            return self._counted_hit_rate(keys, exprs, attrs_at, flags, where, params)
        counts = [f"sum({flags[0]})", f"sum(NOT ({live}))", *(f"sum({f})" for f in flags[1:])]
        # Per attribute key, the JSON types seen in the group (to restore booleans
        # and to spot objects and arrays).
        types = [f"group_concat(DISTINCT json_type(attributes, :path{i}))" for i in attrs_at]
        sql = f"SELECT {', '.join([*exprs, *counts, *types])} FROM handoffs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if keys:
            groups = ", ".join(str(n) for n in range(1, len(keys) + 1))
            sql += f" GROUP BY {groups} ORDER BY {groups}"
        rows = self._read("aggregate_hit_rate", partial(_fetch, sql, params))
        if attrs_at:
            width = len(keys) + len(counts)
            fixed = []
            for r in rows:
                values = list(r[:width])
                for i, seen in zip(attrs_at, r[width:], strict=True):
                    kinds = set(seen.split(",")) if seen else set()
                    if kinds & {"object", "array"} or _lossy(values[i], kinds):
                        return None
                    if values[i] is not None and kinds and kinds <= {"true", "false"}:
                        values[i] = bool(values[i])
                fixed.append(values)
            rows = fixed
        return hit_rate_groups(keys, rows)

    def _counted_hit_rate(
        self,
        keys: list[str],
        exprs: list[str],
        attrs_at: list[int],
        flags: list[str],
        where: list[str],
        params: dict[str, Any],
    ) -> list[dict[str, Any]] | None:
        """:meth:`aggregate_hit_rate` for two or more keys: SQLite scans, Python counts.

        SQLite has no hash aggregate: a ``GROUP BY`` of two columns sorts every
        row (1.4 s over a million handoffs on a 2-core machine). Here each row
        is reduced in SQL to its key values and a five-bit outcome mask, and
        Python counts the distinct tuples (a few hundred) as they stream by:
        0.85 s on the same data. One key stays with ``GROUP BY``, which is
        faster for it (0.6-0.8 s).
        """
        mask = " | ".join(f"(coalesce({f}, 0) << {i})" for i, f in enumerate(flags))
        types = [f"json_type(attributes, :path{i})" for i in attrs_at]
        sql = f"SELECT {', '.join([*exprs, *types, mask])} FROM handoffs"
        if where:
            sql += " WHERE " + " AND ".join(where)

        def count(conn: sqlite3.Connection) -> Counter[tuple[Any, ...]]:
            return Counter(conn.execute(sql, params))

        seen = self._read("aggregate_hit_rate", count)
        width = len(keys)
        sums: dict[tuple[Any, ...], list[int]] = {}
        kinds: dict[tuple[Any, ...], list[set[str]]] = {}
        for row, n in seen.items():
            key, m = row[:width], row[-1]
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = [0] * 6
                kinds[key] = [set() for _ in attrs_at]
            if m & 1:
                acc[0] += n
            else:
                acc[1] += n  # cancelled: excluded
            for bit in range(1, 5):
                if m >> bit & 1:
                    acc[bit + 1] += n
            for j, kind in enumerate(row[width:-1]):
                if kind is not None:
                    kinds[key][j].add(kind)
        rows = []
        for key, acc in sorted(sums.items(), key=lambda item: _sql_order(item[0])):
            values = list(key)
            for j, i in enumerate(attrs_at):
                seen_kinds = kinds[key][j]
                if seen_kinds & {"object", "array"} or _lossy(values[i], seen_kinds):
                    return None
                if values[i] is not None and seen_kinds and seen_kinds <= {"true", "false"}:
                    values[i] = bool(values[i])
            rows.append([*values, *acc])
        return hit_rate_groups(keys, rows)

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run a read-only SQL statement (for reports) and return its rows.

        Times in every table are INTEGER microseconds since the Unix epoch, UTC.

        :raises StoreError: when the statement fails or tries to write.
        """

        def q(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            conn.execute("PRAGMA query_only = ON")
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise
                raise StoreError(
                    f"sqlite store {self.path!r}: query failed: {exc}", field="sql", value=sql
                ) from exc
            finally:
                conn.execute("PRAGMA query_only = OFF")

        return self._read("query", q)


def _sql_order(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """A sort key putting values in SQLite's order: NULL, numbers, text, blobs."""
    out: list[tuple[int, Any]] = []
    for v in key:
        if v is None:
            out.append((0, 0))
        elif isinstance(v, int | float):
            out.append((1, v))
        elif isinstance(v, str):
            out.append((2, v))
        else:
            out.append((3, v))
    return tuple(out)


def _fetch(
    sql: str, params: Sequence[Any] | Mapping[str, Any], conn: sqlite3.Connection
) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _first_existing(ids: Sequence[str], conn: sqlite3.Connection) -> str | None:
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        row = conn.execute(
            f"SELECT id FROM handoffs WHERE id IN ({marks}) LIMIT 1", chunk
        ).fetchone()
        if row is not None:
            return str(row[0])
    return None
