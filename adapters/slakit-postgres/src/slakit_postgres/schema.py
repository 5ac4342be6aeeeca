"""The schema and its forward migrations.

Each migration is applied once, in order, inside one transaction that holds a
transaction-level advisory lock keyed on the schema name, so any number of
workers may call :func:`migrate` at the same moment: one migrates, the others
wait and then find nothing to do. The ``schema_version`` table records what
was applied; a database migrated by a newer release raises
:class:`~slakit.errors.SchemaVersionError` instead of being used blindly.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import attrs
import psycopg
from psycopg import sql

from slakit.errors import ConfigError, SchemaVersionError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "lock_key", "migrate", "validate_name"]

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_name(field: str, value: object) -> str:
    """Return ``value`` if it is a plain SQL identifier (letters, digits, ``_``; ≤ 63 chars).

    :raises ConfigError: naming ``field`` and the value otherwise.
    """
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{field} must be a plain identifier (letters, digits and '_', at most 63, "
            f"not starting with a digit), got {value!r}",
            field=field,
            value=value,
        )
    return value


@attrs.frozen
class Migration:
    """One forward step of the schema: a version, what it does, and its statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "handoffs, escalations, outbox and traces",
        (
            # One column per Handoff field, plus the claim lease.
            """
            CREATE TABLE handoffs (
                id                       text PRIMARY KEY,
                policy                   text NOT NULL,
                started_at               timestamptz NOT NULL,
                owner                    text,
                backup_owner             text,
                sla_minutes              double precision,
                first_response_at        timestamptz,
                responded_by             text,
                completed_at             timestamptz,
                cancelled_at             timestamptz,
                cancel_reason            text,
                breached                 boolean NOT NULL DEFAULT false,
                breach_reason            text,
                trace_id                 text NOT NULL,
                within_business_hours    boolean,
                channel                  text,
                segment                  text,
                stage                    integer NOT NULL DEFAULT 0,
                stopped_at               timestamptz,
                next_due_at              timestamptz,
                deadline_at              timestamptz,
                wall_deadline_at         timestamptz,
                business_deadline_at     timestamptz,
                paused_at                timestamptz,
                paused_seconds           double precision NOT NULL DEFAULT 0,
                paused_business_seconds  double precision NOT NULL DEFAULT 0,
                wall_elapsed_seconds     double precision,
                business_elapsed_seconds double precision,
                ingested_at              timestamptz,
                attributes               jsonb NOT NULL DEFAULT '{}'::jsonb,
                version                  bigint NOT NULL,
                claimed_by               text,
                claim_until              timestamptz
            ) WITH (fillfactor = 80)
            """,
            # Free space per page lets a claim (which touches no indexed column) be a
            # HOT update. Due work is found through this index alone: a claim costs
            # what is due, not what is open.
            "CREATE INDEX handoffs_next_due ON handoffs (next_due_at) "
            "WHERE next_due_at IS NOT NULL",
            "CREATE INDEX handoffs_started ON handoffs (started_at, id)",
            "CREATE INDEX handoffs_cancelled ON handoffs (started_at, id) "
            "WHERE cancelled_at IS NOT NULL",
            """
            CREATE TABLE escalations (
                handoff_id  text NOT NULL,
                stage       integer NOT NULL,
                step        text NOT NULL,
                applied_at  timestamptz NOT NULL,
                outcome     text NOT NULL,
                actions     jsonb NOT NULL DEFAULT '[]'::jsonb,
                CONSTRAINT escalations_once UNIQUE (handoff_id, stage)
            )
            """,
            """
            CREATE TABLE outbox (
                seq              bigserial PRIMARY KEY,
                notifier         text NOT NULL,
                idempotency_key  text NOT NULL,
                recipient        text NOT NULL,
                handoff_id       text NOT NULL,
                stage            integer NOT NULL,
                step             text NOT NULL,
                action           text NOT NULL,
                subject          text NOT NULL,
                text             text NOT NULL,
                trace_id         text NOT NULL,
                policy           text NOT NULL,
                created_at       timestamptz NOT NULL,
                payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
                state            text NOT NULL DEFAULT 'pending',
                attempts         integer NOT NULL DEFAULT 0,
                next_attempt_at  timestamptz,
                lease_token      text,
                lease_until      timestamptz,
                last_error       text,
                CONSTRAINT outbox_once UNIQUE (notifier, idempotency_key)
            ) WITH (fillfactor = 80)
            """,
            "CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending'",
            "CREATE INDEX outbox_handoff ON outbox (handoff_id, seq)",
            """
            CREATE TABLE traces (
                seq         bigserial PRIMARY KEY,
                trace_id    text NOT NULL,
                handoff_id  text NOT NULL,
                policy      text NOT NULL,
                rule        text NOT NULL,
                action      text NOT NULL,
                actor       text NOT NULL,
                at          timestamptz NOT NULL,
                outcome     text NOT NULL,
                detail      jsonb NOT NULL DEFAULT '{}'::jsonb
            )
            """,
            "CREATE INDEX traces_handoff ON traces (handoff_id, seq)",
            "CREATE INDEX traces_at ON traces (at)",
        ),
    ),
    Migration(
        2,
        "dead-lettered outbox rows by creation",
        ("CREATE INDEX outbox_dead ON outbox (seq) WHERE state = 'dead'",),
    ),
)

#: The newest schema version this release understands.
LATEST_VERSION = MIGRATIONS[-1].version


def lock_key(schema: str) -> int:
    """The advisory-lock key that serialises migrations of ``schema`` (a signed 64-bit int)."""
    digest = hashlib.sha256(f"slakit-postgres:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrate(conn: psycopg.Connection[Any], schema: str) -> int:
    """Create ``schema`` if needed and apply every migration it lacks.

    :param conn: an autocommit connection; the work runs in one transaction on it.
    :param schema: the schema name (a plain identifier).
    :returns: the schema version afterwards.
    :raises SchemaVersionError: when the schema is newer than :data:`LATEST_VERSION`.
    """
    name = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row is not None else 0
        if current > LATEST_VERSION:
            raise SchemaVersionError(
                f"schema_version of PostgreSQL schema {schema!r} is {current}, newer than "
                f"{LATEST_VERSION} that this slakit-postgres understands; upgrade slakit-postgres",
                field="schema_version",
                value=current,
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
            current = migration.version
    return current
