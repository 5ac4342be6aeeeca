"""The SQLite store: the store contract suite, plus what only SQLite has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slakit.adapters.sqlite import SQLiteStore
from slakit.testing.store_contract import StoreContract


class TestSQLiteStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        s = SQLiteStore(tmp_path / "slakit.db")
        s.setup()
        yield s
        s.close()
