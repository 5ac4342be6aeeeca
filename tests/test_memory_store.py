"""The in-memory store, and a store with only the abstract methods, pass the store
contract suite."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest

from slakit.abc import RecordStore
from slakit.adapters.memory import MemoryStore
from slakit.handoff import Handoff
from slakit.records import Escalation, OutboxItem, StepApplication, TraceRecord
from slakit.testing.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        s = MemoryStore()
        s.setup()
        yield s
        s.close()


class MinimalStore(RecordStore):
    """A third-party store as the docs describe the least one: only the abstract
    methods, here kept in a MemoryStore; every other method is the base class's."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def insert(self, handoff: Handoff, traces: Sequence[TraceRecord] = ()) -> Handoff:
        return self._inner.insert(handoff, traces)

    def get(self, handoff_id: str) -> Handoff:
        return self._inner.get(handoff_id)

    def update(
        self, handoff: Handoff, expected_version: int, traces: Sequence[TraceRecord] = ()
    ) -> Handoff:
        return self._inner.update(handoff, expected_version, traces)

    def claim_due(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[Handoff]:
        return self._inner.claim_due(now, limit, worker, lease_seconds)

    def apply_step(self, application: StepApplication) -> bool:
        return self._inner.apply_step(application)

    def release(self, handoff_id: str, worker: str) -> None:
        self._inner.release(handoff_id, worker)

    def iter_handoffs(self, **kwargs: Any) -> Iterator[Handoff]:
        return self._inner.iter_handoffs(**kwargs)

    def next_wakeup(self) -> datetime | None:
        return self._inner.next_wakeup()

    def escalations(self, handoff_id: str | None = None) -> list[Escalation]:
        return self._inner.escalations(handoff_id)

    def claim_outbox(
        self, now: datetime, limit: int, worker: str, lease_seconds: float
    ) -> list[OutboxItem]:
        return self._inner.claim_outbox(now, limit, worker, lease_seconds)

    def complete_outbox(self, item: OutboxItem, **kwargs: Any) -> bool:
        return self._inner.complete_outbox(item, **kwargs)

    def outbox(self, handoff_id: str | None = None, state: str | None = None) -> list[OutboxItem]:
        return self._inner.outbox(handoff_id, state)

    def add_traces(self, traces: Sequence[TraceRecord]) -> None:
        self._inner.add_traces(traces)

    def traces(self, handoff_id: str | None = None, **kwargs: Any) -> list[TraceRecord]:
        return self._inner.traces(handoff_id, **kwargs)


class TestMinimalStore(StoreContract):
    """The base class's defaults keep the contract, all-or-nothing batches included."""

    @pytest.fixture
    def store(self) -> Iterator[RecordStore]:
        s = MinimalStore()
        s.setup()
        yield s
        s.close()
