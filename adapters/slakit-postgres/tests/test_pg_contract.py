"""The PostgreSQL store passes the store contract suite unchanged."""

from __future__ import annotations

import pytest

from slakit.testing.store_contract import StoreContract
from slakit_postgres import PostgresStore

pytestmark = pytest.mark.postgres


class TestPostgresStoreContract(StoreContract):
    @pytest.fixture
    def store(self, pg_store: PostgresStore) -> PostgresStore:
        return pg_store
