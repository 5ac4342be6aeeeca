"""Fixtures: an OpenTelemetry SDK tracer provider that keeps finished spans in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_helpers import Collector, Spans


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A provider (never the global one) whose finished spans land in an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Spans(provider, exporter)
    provider.shutdown()


@pytest.fixture
def otlp_collector() -> Iterator[Collector]:
    """An OTLP/HTTP receiver on a free local port."""
    collector = Collector()
    yield collector
    collector.stop()
