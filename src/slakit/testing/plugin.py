"""The slakit pytest plugin (entry point ``pytest11``): fixtures for code that uses slakit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from slakit.clock import ManualClock
from slakit.engine import Engine
from slakit.policy import Policy


@pytest.fixture
def slakit_clock() -> ManualClock:
    """A :class:`~slakit.ManualClock` at Monday 2026-03-02 14:00 UTC."""
    return ManualClock(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))


@pytest.fixture
def slakit_engine(slakit_clock: ManualClock) -> Iterator[Engine]:
    """An engine on a memory store with the playbook's default policy (30 wall minutes)."""
    engine = Engine(policies=[Policy.default(basis="wall")], clock=slakit_clock)
    with engine:
        yield engine
