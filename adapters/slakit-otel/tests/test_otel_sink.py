"""The otel trace sink on its own, read back through the SDK's in-memory exporter."""

from __future__ import annotations

import hashlib
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import trace

from otel_helpers import Collector, Spans, attributes
from slakit.errors import ConfigError
from slakit.records import TraceRecord
from slakit_otel import OTelTraceSink, otel_trace_id, parent_span_context, record_attributes

W3C = "4bf92f3577b34da6a3ce929d0e0e4736"
AT = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def line(**changes: Any) -> TraceRecord:
    values: dict[str, Any] = {
        "trace_id": W3C,
        "handoff_id": "lead-1",
        "policy": "speed-to-lead",
        "rule": "step:1x",
        "action": "notify:owner",
        "actor": "engine",
        "at": AT,
        "outcome": "ok",
        "detail": {"stage": 0, "due_at": "2026-03-02T14:30:00+00:00"},
    }
    values.update(changes)
    return TraceRecord(**values)


def nanos(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000


class TestOTelTraceId:
    def test_w3c_id_is_reused(self) -> None:
        """A valid W3C trace id becomes the OpenTelemetry trace id unchanged."""
        assert otel_trace_id(W3C) == int(W3C, 16)

    @pytest.mark.parametrize("value", ["lead-1-trace", W3C.upper(), "0" * 32, ""])
    def test_other_ids_are_hashed_stably(self, value: str) -> None:
        """Anything else is hashed into a stable, non-zero 128-bit id."""
        derived = otel_trace_id(value)
        assert derived == otel_trace_id(value)
        assert 0 < derived < 2**128
        expected = int.from_bytes(hashlib.sha256(f"slakit:{value}".encode()).digest()[:16], "big")
        assert derived == expected

    def test_parent_is_remote_sampled_and_per_handoff(self) -> None:
        """The parent context is remote and sampled; each handoff of a trace has its own."""
        a = parent_span_context(W3C, "lead-1")
        assert a.is_remote
        assert a.trace_flags.sampled
        assert a.trace_id == int(W3C, 16)
        assert a == parent_span_context(W3C, "lead-1")
        assert a.span_id != parent_span_context(W3C, "lead-2").span_id


class TestRecordAttributes:
    def test_fields_and_flattened_detail(self) -> None:
        """Line fields become slakit.<field>; detail keys slakit.detail.<key>, flattened."""
        record = line(
            detail={
                "stage": 1,
                "late_seconds": 2.5,
                "met": True,
                "from": {"owner": "alice", "team": {"name": "east"}},
                "tags": ["a", "b"],
                "mixed": [1, "x"],
                "when": datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
                "nothing": None,
            }
        )
        got = record_attributes(record)
        assert got["slakit.handoff_id"] == "lead-1"
        assert got["slakit.policy"] == "speed-to-lead"
        assert got["slakit.rule"] == "step:1x"
        assert got["slakit.action"] == "notify:owner"
        assert got["slakit.outcome"] == "ok"
        assert got["slakit.actor"] == "engine"
        assert got["slakit.trace_id"] == W3C
        assert got["slakit.at"] == AT.isoformat()
        assert got["slakit.detail.stage"] == 1
        assert got["slakit.detail.late_seconds"] == 2.5
        assert got["slakit.detail.met"] is True
        assert got["slakit.detail.from.owner"] == "alice"
        assert got["slakit.detail.from.team.name"] == "east"
        assert got["slakit.detail.tags"] == ("a", "b")
        assert got["slakit.detail.mixed"] == '[1, "x"]'
        assert got["slakit.detail.when"] == "2026-03-02T15:00:00+00:00"
        assert "slakit.detail.nothing" not in got

    def test_integers_past_64_bits_travel_as_text(self) -> None:
        """OTLP carries 64-bit integers; the encoder would drop a longer one."""
        got = record_attributes(line(detail={"big": 2**70, "low": -(2**63) - 1, "ok": 2**63 - 1}))
        assert got["slakit.detail.big"] == str(2**70)
        assert got["slakit.detail.low"] == str(-(2**63) - 1)
        assert got["slakit.detail.ok"] == 2**63 - 1

    def test_a_key_spelt_twice_keeps_the_later_value_and_says_so(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level("WARNING", logger="slakit_otel"):
            got = record_attributes(line(detail={"dotted.key": 1, "dotted": {"key": 2}}))
        assert got["slakit.detail.dotted.key"] == 2
        assert "slakit.detail.dotted.key is given twice" in caplog.text


class TestOTelTraceSink:
    def test_a_batch_becomes_one_span_with_an_event_per_line(self, spans: Spans) -> None:
        """One handoff's lines form one span in its trace, parented remotely, one event each."""
        sink = OTelTraceSink(tracer_provider=spans.provider)
        later = AT + timedelta(seconds=2)
        sink.emit(
            [
                line(action="mark_breached"),
                line(action="notify:owner", detail={"stage": 0}),
                line(action="notify:backup", at=later),
            ]
        )
        [span] = spans.finished()
        assert span.context is not None
        assert span.context.trace_id == int(W3C, 16)
        assert span.parent == parent_span_context(W3C, "lead-1")
        assert span.name == "slakit step:1x"
        assert span.kind == trace.SpanKind.INTERNAL
        assert (span.start_time, span.end_time) == (nanos(AT), nanos(later))
        assert [e.name for e in span.events] == ["mark_breached", "notify:owner", "notify:backup"]
        assert [e.timestamp for e in span.events] == [nanos(AT), nanos(AT), nanos(later)]
        assert [attributes(e)["slakit.action"] for e in span.events] == [
            "mark_breached",
            "notify:owner",
            "notify:backup",
        ]
        common = attributes(span)
        assert common["slakit.handoff_id"] == "lead-1"
        assert common["slakit.rule"] == "step:1x"
        assert "slakit.action" not in common  # differs between the lines
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "slakit"

    def test_each_handoff_gets_its_own_span_in_its_own_trace(self, spans: Spans) -> None:
        """A batch with two handoffs gives two spans, each in its handoff's trace."""
        other = "0af7651916cd43dd8448eb211c80319c"
        sink = OTelTraceSink(tracer_provider=spans.provider)
        sink.emit([line(), line(trace_id=other, handoff_id="lead-2"), line(action="x")])
        assert len(spans.in_trace(int(W3C, 16))) == 1
        assert len(spans.in_trace(int(other, 16))) == 1
        [first] = spans.in_trace(int(W3C, 16))
        assert len(first.events) == 2

    def test_non_w3c_trace_id_lands_in_a_derived_trace(self, spans: Spans) -> None:
        """A handoff whose trace id is not W3C lands in the derived trace, keeping its own id."""
        sink = OTelTraceSink(tracer_provider=spans.provider)
        sink.emit([line(trace_id="crm-req-77"), line(trace_id="crm-req-77", rule="deliver")])
        [span] = spans.in_trace(otel_trace_id("crm-req-77"))
        assert attributes(span)["slakit.trace_id"] == "crm-req-77"
        assert span.name == "slakit"  # the lines have different rules

    def test_dead_letter_marks_the_span_as_error(self, spans: Spans) -> None:
        """A dead-lettered delivery sets the span status to ERROR with the error text."""
        sink = OTelTraceSink(tracer_provider=spans.provider)
        sink.emit([line(actor="notifier:smtp", outcome="dead", detail={"error": "550 nope"})])
        [span] = spans.finished()
        assert span.status.status_code == trace.StatusCode.ERROR
        assert span.status.description is not None
        assert "550 nope" in span.status.description

    def test_a_bad_line_is_logged_and_the_rest_exported(
        self, spans: Spans, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A line that cannot be converted is logged and skipped; emit does not raise."""
        sink = OTelTraceSink(tracer_provider=spans.provider)
        bad = line(at="not a datetime")
        with caplog.at_level(logging.ERROR, logger="slakit_otel"):
            sink.emit([line(), bad, line(action="notify:backup")])
        [span] = spans.finished()
        assert [e.name for e in span.events] == ["notify:owner", "notify:backup"]
        assert "malformed trace line" in caplog.text

    def test_an_empty_batch_exports_nothing(self, spans: Spans) -> None:
        """No lines, no spans."""
        OTelTraceSink(tracer_provider=spans.provider).emit([])
        assert spans.finished() == []


class TestOTelTraceSinkConfig:
    def test_unknown_option_names_the_key(self) -> None:
        """An unknown key raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="'exporter'") as info:
            OTelTraceSink.from_config({"exporter": "otlp"})
        assert info.value.field == "exporter"

    def test_provider_and_endpoint_exclude_each_other(self, spans: Spans) -> None:
        """Passing a provider and an endpoint is a config error."""
        with pytest.raises(ConfigError, match="endpoint"):
            OTelTraceSink(tracer_provider=spans.provider, endpoint="http://127.0.0.1:4318")

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("service_name", ""),
            ("endpoint", 4318),
            ("headers", "x"),
            ("endpoint", "not a url"),
            ("endpoint", "otel-collector:4318"),
            ("endpoint", "ftp://otel-collector:4318/v1/traces"),
            ("endpoint", "http:///v1/traces"),
            ("endpoint", "http://otel collector:4318/v1/traces"),
            ("endpoint", "http://otel-collector:99999/v1/traces"),
        ],
    )
    def test_bad_values_name_field_and_value(self, key: str, value: Any) -> None:
        """A malformed option raises ConfigError naming the field and value."""
        with pytest.raises(ConfigError) as info:
            OTelTraceSink.from_config({key: value})
        assert key in str(info.value)
        assert repr(value) in str(info.value)

    @pytest.mark.parametrize(
        ("headers", "field"),
        [
            ({"a": 1}, "headers.a"),
            ({"x-api-key": None}, "headers.x-api-key"),
            ({"x-api-key": "k-123\r\nInjected: 1"}, "headers.x-api-key"),
            ({"x api key": "k-123"}, "headers.x api key"),
            ({5: "k-123"}, "headers.5"),
        ],
    )
    def test_a_header_that_cannot_be_sent_is_a_config_error(
        self, headers: dict[Any, Any], field: str
    ) -> None:
        """Each header name and value is checked when the sink is built; a value (an API
        key, often) is never echoed."""
        with pytest.raises(ConfigError) as info:
            OTelTraceSink.from_config(
                {"endpoint": "http://127.0.0.1:9/v1/traces", "headers": headers}
            )
        assert info.value.field == field
        assert field in str(info.value)
        assert "k-123" not in f"{info.value} {info.value.value}"

    @pytest.mark.parametrize("provider", ["my-provider", 5, object()])
    def test_a_tracer_provider_that_is_not_one_is_a_config_error(self, provider: Any) -> None:
        """Not an AttributeError from deep inside: a ConfigError naming the option."""
        with pytest.raises(ConfigError, match="tracer_provider") as info:
            OTelTraceSink(tracer_provider=provider)
        assert info.value.field == "tracer_provider"

    @pytest.mark.parametrize(
        "endpoint",
        [
            "http://otel-collector:4318/v1/traces",
            "HTTPS://otel.example.com/v1/traces",
            "http://otel_collector:4318",
            "http://[::1]:4318/v1/traces",
            "http://127.0.0.1:4318/v1/traces",
        ],
    )
    def test_http_endpoints_are_accepted(self, endpoint: str) -> None:
        """http(s) in any case, a host name or an IP literal; the scheme is kept lower-case."""
        sink = OTelTraceSink(endpoint=endpoint)
        try:
            assert sink.endpoint is not None
            assert sink.endpoint.startswith(("http://", "https://"))
            assert sink.endpoint.lower() == endpoint.lower()
        finally:
            sink.close()

    def test_endpoint_without_an_exporter_names_the_package(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no OTLP exporter importable, endpoint raises ConfigError naming the package."""
        for kind in ("http", "grpc"):
            monkeypatch.setitem(
                sys.modules, f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter", None
            )
        with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp") as info:
            OTelTraceSink(endpoint="http://127.0.0.1:9/v1/traces")
        assert info.value.field == "endpoint"


class TestOTelTraceSinkOverOTLP:
    def test_endpoint_exports_to_a_collector(self, otlp_collector: Collector) -> None:
        """With endpoint set the sink builds its own provider and posts OTLP/HTTP on close."""
        sink = OTelTraceSink.from_config(
            {
                "endpoint": otlp_collector.url,
                "service_name": "sla-checker",
                "headers": {"x-api-key": "k-123"},
            }
        )
        sink.emit([line(), line(action="notify:backup")])
        sink.close()
        assert otlp_collector.paths == ["/v1/traces"]
        assert otlp_collector.api_keys == ["k-123"]
        [resource_spans] = otlp_collector.request().resource_spans
        service = {
            a.key: a.value.string_value
            for a in resource_spans.resource.attributes
            if a.key == "service.name"
        }
        assert service == {"service.name": "sla-checker"}
        [scope_spans] = resource_spans.scope_spans
        assert scope_spans.scope.name == "slakit"
        [span] = scope_spans.spans
        assert span.trace_id.hex() == W3C
        assert span.name == "slakit step:1x"
        assert [e.name for e in span.events] == ["notify:owner", "notify:backup"]
