"""The sink against a local fake Notion: pages, retries, drops, pacing, a full queue, close."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notion_fake import DATABASE_ID, TOKEN, Answer, FakeNotion, MakeSink, notion_error
from slakit.records import TraceRecord
from slakit_notion.sink import MAX_TEXT, NotionQueueFullError, NotionTraceSink, clip

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def line(n: int = 1, **changes: Any) -> TraceRecord:
    fields: dict[str, Any] = {
        "trace_id": "422b4c6b9c9e199913b612d0fed11e17",
        "handoff_id": f"lead-{n}",
        "policy": "speed-to-lead",
        "rule": "step:1x",
        "action": "notify:owner",
        "actor": "engine",
        "at": T0 + timedelta(minutes=n),
        "outcome": "ok",
        "detail": {"stage": 0, "late_seconds": 60.0},
        **changes,
    }
    return TraceRecord(**fields)


def text(page: Any, name: str) -> str:
    prop = page["properties"][name]
    [part] = prop["title"] if "title" in prop else prop["rich_text"]
    content: str = part["text"]["content"]
    return content


class TestPages:
    def test_one_page_per_line_with_every_property(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """Parent, headers and each property type are what Notion expects."""
        sink = make_sink()
        sink.emit([line(1, detail={"b": 1, "a": "é"})])
        assert sink.flush(5)
        [request] = notion.requests
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["notion-version"] == "2022-06-28"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("slakit-notion/")
        [page] = notion.pages
        assert page["parent"] == {"database_id": DATABASE_ID}
        props = page["properties"]
        assert set(props) == {
            "Name", "Trace ID", "Handoff", "Policy", "Rule", "Action", "Actor", "At",
            "Outcome", "Detail",
        }  # fmt: skip
        assert text(page, "Name") == "lead-1 notify:owner"
        assert text(page, "Trace ID") == "422b4c6b9c9e199913b612d0fed11e17"
        assert text(page, "Handoff") == "lead-1"
        assert (text(page, "Policy"), text(page, "Rule")) == ("speed-to-lead", "step:1x")
        assert (text(page, "Action"), text(page, "Actor")) == ("notify:owner", "engine")
        assert props["At"] == {"date": {"start": "2026-03-02T09:01:00+00:00"}}
        assert props["Outcome"] == {"select": {"name": "ok"}}
        assert text(page, "Detail") == '{"a":"é","b":1}'

    def test_properties_rename_and_leave_out(self, notion: FakeNotion, make_sink: MakeSink) -> None:
        """The mapping renames properties; a field mapped to "" is not sent."""
        sink = make_sink(properties={"title": "Event", "detail": "", "trace_id": "", "at": "When"})
        sink.emit([line(2)])
        assert sink.flush(5)
        [page] = notion.pages
        assert set(page["properties"]) == {
            "Event", "Handoff", "Policy", "Rule", "Action", "Actor", "When", "Outcome",
        }  # fmt: skip
        assert text(page, "Event") == "lead-2 notify:owner"
        assert page["properties"]["When"]["date"]["start"] == "2026-03-02T09:02:00+00:00"

    def test_long_text_is_cut_to_notions_limit(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """Text past 2000 characters is cut and ends with an ellipsis."""
        sink = make_sink()
        sink.emit([line(3, detail={"error": "x" * 5000}, actor="y" * 2000)])
        assert sink.flush(5)
        [page] = notion.pages
        detail = text(page, "Detail")
        assert len(detail) == MAX_TEXT
        assert detail.endswith("…")
        assert detail.startswith('{"error":"xxx')
        assert text(page, "Actor") == "y" * 2000  # exactly at the limit: kept whole

    def test_clip_counts_astral_characters_twice(self) -> None:
        """An emoji counts as two, as in Notion's JavaScript, and is never split."""
        assert clip("ab", 2) == "ab"
        assert clip("abc", 2) == "a…"
        assert clip("😀" * 1000) == "😀" * 1000
        cut = clip("😀" * 1001)
        assert cut == "😀" * 999 + "…"

    def test_lines_arrive_in_order(self, notion: FakeNotion, make_sink: MakeSink) -> None:
        """Several batches come out in the order they were emitted."""
        sink = make_sink()
        for n in range(1, 7, 2):
            sink.emit([line(n), line(n + 1)])
        assert sink.flush(5)
        assert notion.titles() == [f"lead-{n} notify:owner" for n in range(1, 7)]


class TestRetries:
    def test_a_429_waits_its_retry_after_then_delivers_once(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """Retry-After: 0.1 is honoured; the line is written once."""
        sink = make_sink()
        notion.script(notion_error(429, "rate_limited", "Rate limited.", retry_after="0.1"))
        sink.emit([line(1)])
        assert sink.flush(5)
        assert notion.statuses() == [429, 200]
        first, second = notion.requests
        assert second.at - first.at >= 0.09
        assert len(notion.pages) == 1

    def test_server_errors_are_retried_then_delivered_once(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """Two 500s, then success: one page."""
        sink = make_sink()
        notion.script(
            notion_error(500, "internal_server_error", "Unexpected error."),
            notion_error(503, "service_unavailable", "Notion is unavailable."),
        )
        sink.emit([line(1), line(2)])
        assert sink.flush(5)
        assert notion.statuses() == [500, 503, 200, 200]
        assert notion.titles() == ["lead-1 notify:owner", "lead-2 notify:owner"]

    def test_a_line_that_keeps_failing_is_dropped_with_the_resend_command(
        self, notion: FakeNotion, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After max_attempts the line is dropped and logged; the next one still goes."""
        sink = make_sink(max_attempts=3)
        notion.script(*[Answer(502)] * 3)
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.emit([line(1), line(2)])
            assert sink.flush(5)
        assert notion.statuses() == [502, 502, 502, 200]
        assert notion.titles() == ["lead-2 notify:owner"]
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        message = record.getMessage()
        assert "'lead-1'" in message
        assert "rule step:1x, action notify:owner, at 2026-03-02T09:01:00+00:00" in message
        assert "HTTP 502" in message
        assert "after 3 attempt(s)" in message
        assert (
            "slakit traces --emit --since 2026-03-02T09:01:00+00:00 "
            "--until 2026-03-02T09:01:00.000001+00:00" in message
        )

    def test_connection_errors_are_retried_then_dropped(
        self, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Nobody listening: max_attempts tries, then an ERROR; the worker lives on."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        sink = make_sink(base_url=f"http://127.0.0.1:{port}", max_attempts=2)
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.emit([line(1), line(2)])
            assert sink.flush(5)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2
        assert all("ConnectError" in m and "after 2 attempt(s)" in m for m in errors)


class TestRefused:
    def test_a_400_is_dropped_at_once_and_later_lines_go(
        self, notion: FakeNotion, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A validation error is not retried; its message is logged; the next line is written."""
        sink = make_sink()
        notion.script(
            notion_error(400, "validation_error", "Outcome is not a property that exists.")
        )
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.emit([line(1), line(2)])
            assert sink.flush(5)
        assert notion.statuses() == [400, 200]
        assert notion.titles() == ["lead-2 notify:owner"]
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        message = record.getMessage()
        assert "'lead-1'" in message
        assert "HTTP 400: validation_error: Outcome is not a property that exists." in message
        assert "(not retried)" in message
        assert "slakit traces --emit --since" in message

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    def test_a_redirect_is_dropped_at_once_not_followed(
        self,
        notion: FakeNotion,
        make_sink: MakeSink,
        caplog: pytest.LogCaptureFixture,
        status: int,
    ) -> None:
        """A 3xx is never followed (the token would go along) and no retry changes it:
        the line is dropped at once with the resend command, and the next one goes."""
        sink = make_sink()
        notion.script(Answer(status, {}, {"location": "http://127.0.0.1:9/elsewhere"}))
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.emit([line(1), line(2)])
            assert sink.flush(5)
        assert notion.statuses() == [status, 200]
        assert notion.titles() == ["lead-2 notify:owner"]
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert f"HTTP {status}" in record.getMessage()
        assert "a redirect, which is not followed (not retried)" in record.getMessage()
        assert "slakit traces --emit --since" in record.getMessage()

    def test_a_wrong_token_is_dropped_and_logged(
        self, notion: FakeNotion, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """401 from Notion: one request per line, each dropped with Notion's message."""
        sink = make_sink(token="ntn_wrong")
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.emit([line(1)])
            assert sink.flush(5)
        assert notion.statuses() == [401]
        assert notion.pages == []
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "HTTP 401: unauthorized: API token is invalid." in record.getMessage()


class TestPacing:
    def test_requests_keep_to_the_rate(self, notion: FakeNotion, make_sink: MakeSink) -> None:
        """rate = 20: ten lines take at least 9 intervals of 50 ms (checked at 2/3 of it)."""
        sink = make_sink(rate=20)
        sink.emit([line(n) for n in range(10)])
        assert sink.flush(10)
        times = [r.at for r in notion.requests]
        assert len(times) == 10
        assert times[-1] - times[0] >= 0.3  # theory: 0.45 s

    def test_emit_does_not_wait_for_notion(self, notion: FakeNotion, make_sink: MakeSink) -> None:
        """With Notion stalled, emit returns at once."""
        sink = make_sink()
        notion.gate.clear()
        started = time.monotonic()
        sink.emit([line(n) for n in range(5)])
        assert time.monotonic() - started < 0.5
        assert sink.pending == 5
        notion.gate.set()
        assert sink.flush(5)


class TestFullQueue:
    def test_a_full_queue_raises_and_takes_the_head_only_once(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """What fits is queued; offered again (as the engine does), those lines are skipped."""
        sink = make_sink(queue_size=2)
        notion.gate.clear()
        batch = [line(1), line(2), line(3)]
        with pytest.raises(NotionQueueFullError, match="queue full"):
            sink.emit(batch)
        assert sink.pending == 2
        notion.gate.set()
        assert sink.flush(5)
        sink.emit([*batch, line(4)])  # the engine's held lines first, then new ones
        assert sink.flush(5)
        assert notion.titles() == [f"lead-{n} notify:owner" for n in (1, 2, 3, 4)]

    def test_the_queued_head_is_skipped_after_the_engine_let_its_oldest_go(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """Past its held-lines cap the engine drops the oldest lines of a refused batch
        and offers the rest again: what is left of the queued head is still skipped, so
        no line reaches Notion twice."""
        sink = make_sink(queue_size=3)
        # Lines 1-5, the engine letting line 1 go (2 and 3 are skipped, 4 and 5 go);
        # then 6-10, letting 6, 7 and 8 go (nothing of the queued head is offered).
        for first, let_go in ((1, 1), (6, 3)):
            batch = [line(n) for n in range(first, first + 5)]
            notion.gate.clear()
            with pytest.raises(NotionQueueFullError):
                sink.emit(batch)  # the first three queued
            notion.gate.set()
            assert sink.flush(5)
            sink.emit(batch[let_go:])
            assert sink.flush(5)
            assert notion.titles()[first - 1 :] == [
                f"lead-{n} notify:owner" for n in range(first, first + 5)
            ]

    def test_other_records_are_not_skipped(self, notion: FakeNotion, make_sink: MakeSink) -> None:
        """Only the very objects already queued are skipped, not equal copies (a resend)."""
        sink = make_sink(queue_size=2)
        notion.gate.clear()
        with pytest.raises(NotionQueueFullError):
            sink.emit([line(1), line(2), line(3)])
        notion.gate.set()
        assert sink.flush(5)
        sink.emit([line(1), line(2)])
        assert sink.flush(5)
        assert notion.titles() == [f"lead-{n} notify:owner" for n in (1, 2, 1, 2)]


class TestClose:
    def test_close_flushes_and_is_harmless_twice(
        self, notion: FakeNotion, make_sink: MakeSink
    ) -> None:
        """close() waits for the queue; a second close does nothing; emit after it raises."""
        sink = make_sink(rate=50)
        sink.emit([line(n) for n in range(5)])
        sink.close()
        assert len(notion.pages) == 5
        sink.close()
        with pytest.raises(NotionQueueFullError, match="closed"):
            sink.emit([line(9)])

    def test_close_logs_what_it_could_not_send(
        self, notion: FakeNotion, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past flush_timeout the worker stops; the unsent lines' window is logged."""
        sink = make_sink(flush_timeout=0.2, timeout=0.5, max_attempts=50, backoff_base=0.05)
        notion.script(*[Answer(503)] * 100)
        sink.emit([line(1), line(2), line(3)])
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="slakit_notion"):
            sink.close()
        assert time.monotonic() - started < 2.0
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        message = record.getMessage()
        assert "closed with 3 line(s) unsent" in message
        assert (
            "slakit traces --emit --since 2026-03-02T09:01:00+00:00 "
            "--until 2026-03-02T09:03:00.000001+00:00" in message
        )
        assert notion.pages == []

    def test_a_sink_that_never_emitted_closes(self) -> None:
        """No line, no thread: close() only closes the client."""
        sink = NotionTraceSink(database_id=DATABASE_ID, token=TOKEN)
        sink.close()
        sink.close()
        assert sink.pending == 0


def test_the_detail_is_compact_json() -> None:
    """Detail JSON has no spaces and sorted keys (stable in Notion's column)."""
    from slakit_notion.sink import page_properties

    props = page_properties(line(1, detail={"z": [1, 2], "a": None}))
    assert json.loads(props["Detail"]["rich_text"][0]["text"]["content"]) == {
        "a": None,
        "z": [1, 2],
    }
    assert props["Detail"]["rich_text"][0]["text"]["content"] == '{"a":null,"z":[1,2]}'
