"""The in-memory store passes the store contract suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slakit.adapters.memory import MemoryStore
from slakit.testing.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        s = MemoryStore()
        s.setup()
        yield s
        s.close()
