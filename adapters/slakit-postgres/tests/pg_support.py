"""Finding the test PostgreSQL server, and throwaway databases and schemas on it."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: Override the server the tests use (a libpq DSN or URI; its database must exist).
DSN_ENV = "SLAKIT_TEST_PG_DSN"
DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test connect_timeout=3"

TABLES = ("handoffs", "escalations", "outbox", "traces")


def describe(dsn: str) -> str:
    """``host:port`` of a DSN, for messages."""
    params = conninfo_to_dict(dsn)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def find_server(dsn: str | None = None) -> tuple[str | None, str]:
    """A DSN that connects, or ``None`` and the reason.

    Without an explicit user, the OS user is tried first, then ``postgres``
    (the two roles a trust-auth development server usually has).
    """
    dsn = dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN
    candidates = [dsn]
    if "user" not in conninfo_to_dict(dsn) and not os.environ.get("PGUSER"):
        candidates.append(make_conninfo(dsn, user="postgres"))
    reason = ""
    for candidate in candidates:
        try:
            with psycopg.connect(candidate, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return candidate, ""
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None, reason


def unreachable_message(dsn: str | None, reason: str, ci: bool) -> str:
    """Why the PostgreSQL tests cannot run; says what to do about it."""
    where = describe(dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN)
    if ci:
        return (
            f"PostgreSQL at {where} is unreachable ({reason}); CI is set, so the "
            f"slakit-postgres tests fail instead of skipping"
        )
    return (
        f"no PostgreSQL server reachable at {where} ({reason}); start one or set "
        f"{DSN_ENV} to run the slakit-postgres tests"
    )


def require_server(ci: bool | None = None) -> str:
    """The DSN of a reachable server; otherwise skip, or fail when ``ci`` (default: ``$CI`` set)."""
    if ci is None:
        ci = bool(os.environ.get("CI"))
    dsn, reason = find_server()
    if dsn is None:
        message = unreachable_message(dsn, reason, ci)
        if ci:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return dsn


def create_database(admin_dsn: str) -> str:
    """Create a fresh database; returns its DSN."""
    name = f"slakit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin_dsn, dbname=name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop a database made by :func:`create_database`, disconnecting its sessions."""
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_schema_name(prefix: str = "t") -> str:
    """A schema name nobody else uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema and everything in it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def truncate(dsn: str, schema: str) -> None:
    """Empty every slakit table of ``schema``."""
    tables = ", ".join(f'"{schema}".{t}' for t in TABLES)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
