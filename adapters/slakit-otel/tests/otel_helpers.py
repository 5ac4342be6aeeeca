"""Helpers for reading what the otel sink exported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import attrs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slakit.abc import Notifier
from slakit.errors import PermanentNotifyError, TransientNotifyError
from slakit.records import Notification
from slakit.testing.peers import PeerRequestHandler, serve_http


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


class Collector:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1: keeps each POST and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.api_keys: list[str | None] = []
        collector = self

        class Handler(PeerRequestHandler):
            def do_POST(self) -> None:
                collector.bodies.append(self.read_body())
                collector.paths.append(self.path)
                collector.api_keys.append(self.headers.get("x-api-key"))
                self.reply(200, headers={"Content-Type": "application/x-protobuf"})

        self._running = ExitStack()
        self._served = self._running.enter_context(serve_http(Handler))

    @property
    def url(self) -> str:
        """The traces endpoint."""
        return f"{self._served.url}/v1/traces"

    def request(self) -> ExportTraceServiceRequest:
        """Every received export, merged into one request."""
        merged = ExportTraceServiceRequest()
        for body in self.bodies:
            merged.MergeFromString(body)
        return merged

    def stop(self) -> None:
        """Shut the server down."""
        self._running.close()
