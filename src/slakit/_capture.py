"""Process-wide capture points used by :mod:`slakit.testing`.

The engine looks here before delivering a notification or emitting a trace
line; when a capture is active the notification goes to the capture instead
of the notifiers, and the trace line goes to the capture as well as the sinks.
"""

from __future__ import annotations

import threading
from typing import Any

lock = threading.Lock()
notification_captures: list[list[Any]] = []
trace_captures: list[list[Any]] = []


def capture_notification(item: Any) -> bool:
    """Hand ``item`` to the innermost active capture; ``False`` when none is active."""
    with lock:
        if not notification_captures:
            return False
        notification_captures[-1].append(item)
        return True


def capture_traces(items: list[Any]) -> None:
    """Copy trace lines into every active trace capture."""
    with lock:
        for cap in trace_captures:
            cap.extend(items)
