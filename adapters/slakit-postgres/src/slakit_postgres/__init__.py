"""slakit-postgres: a PostgreSQL record store for slakit.

Install it next to ``slakit`` and name it in config::

    [store]
    adapter = "postgres"
    dsn = "postgresql://slakit@db.internal/ops"   # or PG* environment variables

Many checker processes on many machines can share one database: due work is
claimed with ``FOR UPDATE SKIP LOCKED``, the database's ``now()`` is the clock
of record, and ``LISTEN/NOTIFY`` only wakes workers early.

The driver (psycopg) is imported on first use of :class:`PostgresStore`, so
loading the plugin costs nothing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_postgres.store import PostgresStore

try:
    __version__ = version("slakit-postgres")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["PostgresStore", "__version__"]


def __getattr__(name: str) -> Any:
    # Keep psycopg out of `import slakit_postgres` (and so out of plugin loading).
    if name == "PostgresStore":
        from slakit_postgres.store import PostgresStore

        globals()[name] = PostgresStore
        return PostgresStore
    raise AttributeError(f"module 'slakit_postgres' has no attribute {name!r}")
