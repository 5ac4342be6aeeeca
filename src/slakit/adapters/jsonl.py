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
        """Append the lines; one write per batch.

        A file that does not end with a newline (a process killed in the middle
        of a write) gets one first, so the torn line stays a line of its own and
        the next ones are whole.
        """
        data = "".join(trace_line(r) for r in records).encode("utf-8")
        if not data:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
