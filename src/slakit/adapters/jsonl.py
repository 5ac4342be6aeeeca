"""The JSONL trace sink: one JSON object per line, appended to a file."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from slakit.abc import TraceSink
from slakit.errors import ConfigError
from slakit.records import TraceRecord

__all__ = ["JSONLTraceSink", "trace_line"]


# json.dumps builds an encoder per call when given options; one is enough.
_encode = json.JSONEncoder(sort_keys=True, default=str).encode


def trace_line(record: TraceRecord) -> str:
    """One trace line as the sink writes it: sorted-key JSON and a newline."""
    return _encode(record.to_dict()) + "\n"


class JSONLTraceSink(TraceSink):
    """Appends each trace line as JSON to ``path`` (created with its folder).

    :param path: the file; relative paths are relative to the config file.
    :param fsync: call ``fsync`` after each batch (slower, survives power loss).
    """

    def __init__(self, path: str | os.PathLike[str] = "slakit-trace.jsonl", fsync: bool = False):
        if not str(path):
            raise ConfigError("jsonl trace sink needs a path", field="path", value=path)
        self.name = "jsonl"
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()

    def emit(self, records: Iterable[TraceRecord]) -> None:
        """Append the lines; one write per batch."""
        lines = "".join(trace_line(r) for r in records)
        if not lines:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(lines)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
