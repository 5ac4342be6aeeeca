"""The notion sink inside an engine: found by name, one page per stored line, a full queue held."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import pytest

import slakit
from notion_fake import DATABASE_ID, TOKEN, FakeNotion
from slakit.errors import ConfigError
from slakit.plugins import Plugins
from slakit_notion.sink import NotionTraceSink

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def config(notion: FakeNotion, **sink: Any) -> dict[str, Any]:
    table = {
        "adapter": "notion",
        "database_id": DATABASE_ID,
        "token": TOKEN,
        "base_url": notion.url,
        "rate": 1000,
        **sink,
    }
    return {
        "store": {"adapter": "memory"},
        "policies": {"speed-to-lead": {"basis": "wall", "sla_minutes": 30}},
        "trace_sinks": [table],
    }


def autoloading() -> Plugins:
    return Plugins(slakit.get_plugin_manager(autoload=True))


def text(prop: Any) -> str:
    [part] = prop["title"] if "title" in prop else prop["rich_text"]
    content: str = part["text"]["content"]
    return content


class TestNotionPlugin:
    def test_the_entry_point_is_installed(self) -> None:
        """The distribution declares ``notion`` in the ``slakit`` entry-point group."""
        [ep] = [ep for ep in entry_points(group="slakit") if ep.name == "notion"]
        assert ep.value == "slakit_notion.plugin"

    def test_found_by_name_from_config(self, notion: FakeNotion) -> None:
        """``adapter = "notion"`` builds a NotionTraceSink with the table's options."""
        engine = slakit.Engine.from_config(config(notion, rate=2), plugins=autoloading())
        [sink] = engine.trace_sinks
        assert isinstance(sink, NotionTraceSink)
        assert (sink.name, sink.rate, sink.base_url) == ("notion", 2.0, notion.url)
        engine.close()

    def test_an_unknown_option_is_a_config_error(self, notion: FakeNotion) -> None:
        """A misspelled key fails when the engine is built."""
        with pytest.raises(ConfigError, match="notion"):
            slakit.Engine.from_config(config(notion, ratee=2), plugins=autoloading())

    def test_a_bad_option_is_a_config_error_naming_it(self, notion: FakeNotion) -> None:
        """The sink's own check surfaces through from_config."""
        with pytest.raises(ConfigError, match=r"trace_sinks\.notion\.rate must be a number > 0"):
            slakit.Engine.from_config(config(notion, rate=-1), plugins=autoloading())

    def test_the_plugin_module_does_not_import_httpx(self) -> None:
        """Scanning plugins stays cheap: httpx is imported only when a sink is built."""
        code = (
            "import sys, slakit\n"
            "from slakit.plugins import Plugins\n"
            "p = Plugins(slakit.get_plugin_manager(autoload=True))\n"
            "assert 'notion' in p.trace_sinks()\n"
            "print('httpx' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == "False"


class TestNotionInEngine:
    def test_every_trace_line_becomes_a_page(self, notion: FakeNotion) -> None:
        """Start, a step past the SLA and its delivery: one page per stored line, in order."""
        clock = slakit.ManualClock(T0)
        engine = slakit.Engine.from_config(config(notion), plugins=autoloading(), clock=clock)
        h = engine.start("lead-1", owner="dana")
        clock.advance(minutes=31)
        assert len(engine.check().applied) == 1
        engine.deliver()
        stored = engine.store.traces()
        engine.close()

        assert len(stored) == 3
        assert len(notion.pages) == len(stored)
        for page, trace in zip(notion.pages, stored, strict=True):
            assert page["parent"] == {"database_id": DATABASE_ID}
            props = page["properties"]
            assert text(props["Name"]) == f"lead-1 {trace.action}"
            assert text(props["Trace ID"]) == h.trace_id
            assert text(props["Handoff"]) == "lead-1"
            assert text(props["Policy"]) == "speed-to-lead"
            assert text(props["Rule"]) == trace.rule
            assert text(props["Action"]) == trace.action
            assert text(props["Actor"]) == trace.actor
            assert props["At"] == {"date": {"start": trace.at.isoformat()}}
            assert props["Outcome"] == {"select": {"name": trace.outcome}}
        start, step, sent = notion.pages
        assert text(start["properties"]["Name"]) == "lead-1 start"
        assert start["properties"]["At"]["date"]["start"] == "2026-03-02T09:00:00+00:00"
        assert text(start["properties"]["Detail"]).startswith('{"deadline_at":"2026-03-02T09:30')
        assert text(step["properties"]["Rule"]) == "step:1x"
        assert step["properties"]["At"]["date"]["start"] == "2026-03-02T09:31:00+00:00"
        assert '"late_seconds":60.0' in text(step["properties"]["Detail"])
        assert sent["properties"]["Outcome"] == {"select": {"name": "sent"}}
        for request in notion.requests:
            assert request.headers["authorization"] == f"Bearer {TOKEN}"
            assert request.headers["notion-version"] == "2022-06-28"

    def test_a_full_queue_is_held_by_the_engine_and_sent_later(
        self, notion: FakeNotion, caplog: pytest.LogCaptureFixture
    ) -> None:
        """emit raises on a full queue; the engine's backlog hands the lines over again, once."""
        clock = slakit.ManualClock(T0)
        engine = slakit.Engine.from_config(
            config(notion, queue_size=2), plugins=autoloading(), clock=clock
        )
        [sink] = engine.trace_sinks
        assert isinstance(sink, NotionTraceSink)
        notion.gate.clear()  # Notion stalls: nothing leaves the queue
        with caplog.at_level(logging.WARNING):
            engine.start("lead-1", owner="dana")
            engine.start("lead-2", owner="dana")
            engine.start("lead-3", owner="dana")  # the queue is full: held by the engine
            engine.start("lead-4", owner="dana")  # still full: held behind lead-3
        assert sink.pending == 2
        assert any("holding 1 line(s)" in r.getMessage() for r in caplog.records)
        assert any("still fails; 2 line(s) held" in r.getMessage() for r in caplog.records)

        notion.gate.set()
        assert sink.flush(5)
        with caplog.at_level(logging.WARNING):
            # The engine offers its held lines first: lead-3 and lead-4 fit, lead-5 is held.
            engine.start("lead-5", owner="dana")
            assert sink.flush(5)
            # The next emit (here the one close() makes) offers all three again: the two
            # already queued are skipped, so each line reaches Notion once.
            engine.close()
        messages = [r.getMessage() for r in caplog.records]
        assert any("still fails; 3 line(s) held" in m for m in messages)
        assert any("works again: 3 held line(s)" in m for m in messages)
        assert notion.titles() == [f"lead-{n} start" for n in range(1, 6)]
