"""The slakit plugin (entry point ``slakit``): registers the ``postgres`` store.

Nothing here imports psycopg; the factory does, when a store is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slakit.hookspecs import hookimpl

__all__ = ["make_store", "slakit_register_stores"]


def make_store(**options: Any) -> Any:
    """Build a :class:`~slakit_postgres.store.PostgresStore` from ``[store]`` options.

    :param options: the ``[store]`` table without ``adapter`` (``dsn``, ``schema``,
        ``min_size``, ``max_size``, ``notify_channel``, ``connect_timeout``).
    :raises ConfigError: for an unknown option or a bad value.
    """
    from slakit_postgres.store import PostgresStore

    return PostgresStore.from_config(options)


@hookimpl
def slakit_register_stores(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``postgres`` store factory."""
    register("postgres", make_store)
