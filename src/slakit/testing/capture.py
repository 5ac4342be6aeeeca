"""Capture what engines deliver and trace, for tests (in the spirit of
``structlog.testing.capture_logs``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs

from slakit import _capture
from slakit.records import Notification, TraceRecord

__all__ = ["CapturedNotification", "capture_notifications", "capture_traces"]


@attrs.frozen
class CapturedNotification:
    """A notification an engine delivered while captured."""

    recipient: str
    handoff_id: str
    stage: int
    action: str
    idempotency_key: str
    text: str
    step: str
    notifier: str
    notification: Notification

    @classmethod
    def of(cls, n: Notification) -> CapturedNotification:
        """Wrap a :class:`~slakit.records.Notification`."""
        return cls(
            recipient=n.recipient,
            handoff_id=n.handoff_id,
            stage=n.stage,
            action=n.action,
            idempotency_key=n.idempotency_key,
            text=n.text,
            step=n.step,
            notifier=n.notifier,
            notification=n,
        )


class _Sink(list[CapturedNotification]):
    def append(self, item: object) -> None:
        if isinstance(item, Notification):
            item = CapturedNotification.of(item)
        assert isinstance(item, CapturedNotification)
        super().append(item)


@contextmanager
def capture_notifications() -> Iterator[list[CapturedNotification]]:
    """Within the block, every notification any engine delivers lands in the
    yielded list instead of going to its notifiers (the outbox row is marked
    sent and traced with actor ``capture``)."""
    sink = _Sink()
    with _capture.lock:
        _capture.notification_captures.append(sink)
    try:
        yield sink
    finally:
        with _capture.lock:
            _capture.notification_captures.remove(sink)


@contextmanager
def capture_traces() -> Iterator[list[TraceRecord]]:
    """Within the block, every trace line any engine emits is also appended to the yielded list."""
    sink: list[TraceRecord] = []
    with _capture.lock:
        _capture.trace_captures.append(sink)
    try:
        yield sink
    finally:
        with _capture.lock:
            _capture.trace_captures.remove(sink)
