"""The JSONL trace sink: whole lines, also after a torn write."""

from __future__ import annotations

import json
from pathlib import Path

from slakit.adapters.jsonl import JSONLTraceSink, trace_line
from slakit.records import TraceRecord
from slakit.testing.store_contract import make_trace


def record(i: int) -> TraceRecord:
    return make_trace(f"h{i}")


def test_lines_are_appended_whole(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "ops.jsonl"
    sink = JSONLTraceSink(path, fsync=True)
    sink.emit([record(1), record(2)])
    sink.emit([])
    sink.emit([record(3)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["handoff_id"] for line in lines] == ["h1", "h2", "h3"]
    assert path.read_text(encoding="utf-8") == "".join(trace_line(record(i)) for i in (1, 2, 3))


def test_a_torn_last_line_stays_apart_from_the_next(tmp_path: Path) -> None:
    """A process killed mid-write leaves half a line; the next one starts on its own line
    instead of being glued to it, so only the torn line is lost to a reader."""
    path = tmp_path / "ops.jsonl"
    path.write_text(trace_line(record(1)) + trace_line(record(2))[:40], encoding="utf-8")
    JSONLTraceSink(path).emit([record(3)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["handoff_id"] == "h1"
    assert lines[1] == trace_line(record(2))[:40]
    assert json.loads(lines[2])["handoff_id"] == "h3"
