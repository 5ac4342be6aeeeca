"""Helpers for reading what the otel sink exported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slakit.abc import Notifier
from slakit.errors import PermanentNotifyError, TransientNotifyError
from slakit.records import Notification


@attrs.frozen
class Spans:
    """A tracer provider and the exporter that holds its finished spans."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def finished(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def in_trace(self, trace_id: int) -> list[ReadableSpan]:
        """Finished spans of one trace."""
        return [
            s for s in self.finished() if s.context is not None and s.context.trace_id == trace_id
        ]

    def events(self, trace_id: int) -> Iterator[tuple[ReadableSpan, Event]]:
        """Every event of every span of one trace, with its span."""
        for span in self.in_trace(trace_id):
            for event in span.events:
                yield span, event


def attributes(item: ReadableSpan | Event) -> dict[str, Any]:
    """The attributes of a span or event as a plain dict."""
    return dict(item.attributes or {})


class ScriptedNotifier(Notifier):
    """Raises the scripted errors on the first calls, then delivers (records) each send."""

    def __init__(self, errors: list[Exception]) -> None:
        self.name = "scripted"
        self.errors = list(errors)
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        """Raise the next scripted error, or keep the notification."""
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(notification)


def transient(text: str = "451 busy") -> TransientNotifyError:
    """A transient failure."""
    return TransientNotifyError(text)


def permanent(text: str = "550 no such user") -> PermanentNotifyError:
    """A permanent failure."""
    return PermanentNotifyError(text)
