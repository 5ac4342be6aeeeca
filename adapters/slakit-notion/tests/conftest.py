"""Fixtures: a local fake Notion API, and sinks pointed at it that are closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notion_fake import DATABASE_ID, TOKEN, FakeNotion, MakeSink
from slakit_notion.sink import NotionTraceSink


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    """A fake Notion on 127.0.0.1 that takes the test token."""
    fake = FakeNotion()
    with fake.running():
        yield fake


@pytest.fixture
def make_sink(notion: FakeNotion) -> Iterator[MakeSink]:
    """Build sinks for the fake (fast rate and backoff unless given); each is closed at the end."""
    made: list[NotionTraceSink] = []

    def make(**options: Any) -> NotionTraceSink:
        options = {
            "database_id": DATABASE_ID,
            "token": TOKEN,
            "base_url": notion.url,
            "rate": 1000,
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
            "timeout": 2,
            "flush_timeout": 5,
            **options,
        }
        sink = NotionTraceSink(**options)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()
