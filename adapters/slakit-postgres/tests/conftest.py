"""Fixtures for the slakit-postgres tests: a real server, a fresh database per session.

The tests skip, with the reason, only when no server is reachable and the
environment variable ``CI`` is unset; under ``CI`` an unreachable server fails them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pg_support import (
    create_database,
    drop_database,
    drop_schema,
    new_schema_name,
    require_server,
    truncate,
)
from slakit_postgres import PostgresStore

#: The schema the per-test ``pg_store`` fixture uses inside the session database.
STORE_SCHEMA = "slakit"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running tests (multi-process, kill -9)")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server")


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """DSN of the test server's maintenance database (``test``)."""
    return require_server()


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a database created for this test session (one per xdist worker), dropped after."""
    dsn = create_database(pg_admin_dsn)
    try:
        store = PostgresStore(dsn, schema=STORE_SCHEMA)
        store.setup()
        store.close()
        yield dsn
    finally:
        drop_database(pg_admin_dsn, dsn)


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[PostgresStore]:
    """A set-up store on empty tables."""
    truncate(pg_dsn, STORE_SCHEMA)
    store = PostgresStore(pg_dsn, schema=STORE_SCHEMA, max_size=6)
    store.setup()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def fresh_schema(pg_dsn: str) -> Iterator[Callable[[], str]]:
    """Makes unique schema names; drops those schemas after the test."""
    made: list[str] = []

    def make() -> str:
        name = new_schema_name()
        made.append(name)
        return name

    yield make
    for name in made:
        drop_schema(pg_dsn, name)
