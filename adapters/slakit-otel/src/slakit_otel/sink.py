"""The OpenTelemetry trace sink: slakit trace lines as span events in the handoff's trace.

Span model: each :meth:`OTelTraceSink.emit` call groups its lines by handoff,
and each group becomes one short ``INTERNAL`` span (``slakit <rule>``) with one
event per trace line. The span starts at the first line's ``at`` and ends at
the last one's, so simulated or backfilled time stays what it was. Its parent
is a remote span context built from the handoff's ``trace_id`` (reused as is
when it is a W3C trace id, otherwise hashed into one) and a parent span id
derived from the trace id and the handoff id, so every span of one handoff
sits under the same parent in the same trace.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from slakit.abc import TraceSink
from slakit.errors import ConfigError
from slakit.handoff import is_w3c_trace_id
from slakit.notify import is_host
from slakit.records import TraceRecord

__all__ = [
    "CONFIG_KEYS",
    "LINE_FIELDS",
    "OTelTraceSink",
    "otel_trace_id",
    "parent_span_context",
    "record_attributes",
]

log = logging.getLogger("slakit_otel")

#: The keys a ``[[trace_sinks]]`` table with ``adapter = "otel"`` may hold.
CONFIG_KEYS = ("service_name", "tracer_provider", "endpoint", "headers")
#: The trace-line fields that become ``slakit.<field>`` attributes.
LINE_FIELDS = ("handoff_id", "policy", "rule", "action", "outcome", "actor")
#: The instrumentation scope name of the spans.
SCOPE = "slakit"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 6

#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A header value a request can carry: visible ASCII, spaces and tabs.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def otel_trace_id(trace_id: str) -> int:
    """The OpenTelemetry trace id for a handoff's ``trace_id``.

    A W3C trace id (32 lowercase hex digits, not all zero) is used as is;
    anything else is hashed (SHA-256, first 16 bytes) into a stable one, so the
    same handoff always lands in the same trace.
    """
    if is_w3c_trace_id(trace_id):
        return int(trace_id, 16)
    value = int.from_bytes(hashlib.sha256(f"slakit:{trace_id}".encode()).digest()[:16], "big")
    return value or 1


def _parent_span_id(trace_id: str, handoff_id: str) -> int:
    digest = hashlib.sha256(f"slakit-parent:{trace_id}:{handoff_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def parent_span_context(trace_id: str, handoff_id: str) -> trace.SpanContext:
    """The remote, sampled span context the handoff's spans are parented on."""
    return trace.SpanContext(
        trace_id=otel_trace_id(trace_id),
        span_id=_parent_span_id(trace_id, handoff_id),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


def _nanos(at: datetime) -> int:
    # Integer arithmetic: a float timestamp loses the microseconds of present-day times.
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _flatten(prefix: str, value: Any, out: dict[str, AttributeValue], depth: int = 0) -> None:
    if value is None:
        return
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64_MIN <= value <= _INT64_MAX
    ):
        out[prefix] = str(value)  # OTLP carries 64-bit integers; a longer one goes as text
    elif isinstance(value, bool | str | int | float):
        if prefix in out:
            log.warning("otel trace sink: %s is given twice in one line; the later wins", prefix)
        out[prefix] = value
    elif isinstance(value, datetime):
        out[prefix] = value.isoformat()
    elif isinstance(value, Mapping) and depth < _MAX_DEPTH:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out, depth + 1)
    elif isinstance(value, list | tuple) and _homogeneous(value):
        out[prefix] = tuple(value)
    else:
        # OpenTelemetry attributes are flat primitives; anything else travels as JSON.
        out[prefix] = json.dumps(value, default=str, sort_keys=True)


def _homogeneous(items: Sequence[Any]) -> bool:
    if not items:
        return False
    kinds = {type(i) for i in items}
    return len(kinds) == 1 and kinds <= {str, bool, int, float}


def record_attributes(record: TraceRecord) -> dict[str, AttributeValue]:
    """The attributes of one trace line's span event.

    ``slakit.handoff_id``, ``slakit.policy``, ``slakit.rule``, ``slakit.action``,
    ``slakit.outcome``, ``slakit.actor``, ``slakit.at`` (ISO-8601) and
    ``slakit.trace_id`` (the handoff's own, which differs from the span's when it
    was not a W3C id), plus each detail key as ``slakit.detail.<key>`` (nested
    mappings joined with dots; values that are not flat become JSON text).
    """
    attrs: dict[str, AttributeValue] = {
        f"slakit.{name}": str(getattr(record, name)) for name in LINE_FIELDS
    }
    attrs["slakit.at"] = record.at.isoformat()
    attrs["slakit.trace_id"] = record.trace_id
    for key, value in record.detail.items():
        _flatten(f"slakit.detail.{key}", value, attrs)
    return attrs


def _check_endpoint(endpoint: Any) -> str:
    """``endpoint`` with its scheme in lower case, if it is an http(s) URL with a host.

    :raises ConfigError: naming the endpoint, for anything else.
    """
    problem = None
    if not isinstance(endpoint, str) or not endpoint:
        problem = "must be a URL"
    else:
        scheme, sep, rest = endpoint.partition("://")
        host = port_ok = None
        try:
            parts = urlsplit(endpoint)
            host = parts.hostname
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # a port that is not a number, or outside 0-65535
            pass
        if not sep or scheme.lower() not in ("http", "https"):
            problem = "must be an http:// or https:// URL"
        elif not host or not is_host(host):
            problem = "must be an http:// or https:// URL with a host name or an IP address"
        elif not port_ok:
            problem = "has a port that is not a number from 1 to 65535"
        else:
            # Schemes are case-insensitive: kept in lower case, as the exporters expect.
            return f"{scheme.lower()}://{rest}"
    raise ConfigError(
        f"otel trace sink endpoint {problem}, got {endpoint!r}",
        field="endpoint",
        value=endpoint,
    )


def _check_headers(headers: Any) -> dict[str, str] | None:
    """The OTLP request headers, each name an HTTP token and each value one line of ASCII.

    :raises ConfigError: naming the header; a value (an API key, often) is not echoed.
    """
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise ConfigError(
            f"otel trace sink headers must be a table of name = value, got {headers!r}",
            field="headers",
            value=headers,
        )
    out: dict[str, str] = {}
    for name, value in headers.items():
        field = f"headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                f"otel trace sink {field}: {name!r} is not a header name (letters, digits "
                "and !#$%&'*+-.^_`|~ only)",
                field=field,
                value=name,
            )
        if not isinstance(value, str):
            raise ConfigError(
                f"otel trace sink {field} must be a string, got a {type(value).__name__}",
                field=field,
                value=type(value).__name__,
            )
        if not _HEADER_VALUE.fullmatch(value):
            raise ConfigError(
                f"otel trace sink {field} must be one line of ASCII text",
                field=field,
                value="…",
            )
        out[name] = value
    return out


def _build_provider(
    service_name: str, endpoint: str, headers: Mapping[str, str] | None
) -> trace.TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter_cls: Any = None
    for module in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        try:
            exporter_cls = importlib.import_module(module).OTLPSpanExporter
            break
        except ImportError:
            continue
    if exporter_cls is None:
        raise ConfigError(
            f"otel trace sink endpoint {endpoint!r} needs an OTLP exporter: "
            "pip install 'slakit-otel[otlp]' (opentelemetry-exporter-otlp-proto-http)",
            field="endpoint",
            value=endpoint,
        )
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = exporter_cls(endpoint=endpoint, headers=dict(headers) if headers else None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class OTelTraceSink(TraceSink):
    """Sends trace lines to OpenTelemetry as span events (see the module docstring).

    :param tracer_provider: the provider to use (code only); default: the one
        built for ``endpoint``, else the global provider (set by the application
        or by OpenTelemetry's auto-configuration).
    :param service_name: ``service.name`` of the provider this sink builds for
        ``endpoint``; ignored (with a warning) when it uses another provider.
    :param endpoint: an OTLP endpoint, an http(s) URL (``http://collector:4318/v1/traces``); the
        sink then builds its own SDK provider with a batch processor. Needs
        ``opentelemetry-exporter-otlp-proto-http`` (or ``-grpc``) installed.
    :param headers: extra OTLP request headers for ``endpoint`` (e.g. an API key).
    :raises ConfigError: for a bad option, or ``endpoint`` without an exporter.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        service_name: str | None = None,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = "otel"
        if service_name is not None and (not isinstance(service_name, str) or not service_name):
            raise ConfigError(
                f"otel trace sink service_name must be a non-empty string, got {service_name!r}",
                field="service_name",
                value=service_name,
            )
        if endpoint is not None:
            endpoint = _check_endpoint(endpoint)
        headers = _check_headers(headers)
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            raise ConfigError(
                "otel trace sink tracer_provider must be an OpenTelemetry TracerProvider "
                f"(set it in code), got {type(tracer_provider).__name__}",
                field="tracer_provider",
                value=type(tracer_provider).__name__,
            )
        if tracer_provider is not None and endpoint is not None:
            raise ConfigError(
                "otel trace sink takes tracer_provider or endpoint, not both",
                field="endpoint",
                value=endpoint,
            )
        self._owned = False
        if tracer_provider is None and endpoint is not None:
            tracer_provider = _build_provider(service_name or "slakit", endpoint, headers)
            self._owned = True
        elif service_name is not None:
            log.warning(
                "otel trace sink: service_name %r is ignored without endpoint; "
                "the tracer provider's resource names the service",
                service_name,
            )
        self.service_name = service_name
        self.endpoint = endpoint
        self.tracer_provider = tracer_provider
        from slakit_otel import __version__

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer(SCOPE, __version__)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> OTelTraceSink:
        """Build from a ``[[trace_sinks]]`` table (without ``adapter`` and ``name``).

        :raises ConfigError: for an unknown key or a bad value.
        """
        unknown = sorted(set(options) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"otel trace sink: unknown option {unknown[0]!r} "
                f"(allowed: {', '.join(CONFIG_KEYS)})",
                field=unknown[0],
                value=options[unknown[0]],
            )
        return cls(**dict(options))

    def emit(self, records: Iterable[TraceRecord]) -> None:
        """One span per handoff in the batch, one event per line; bad lines are logged."""
        groups: dict[tuple[str, str], list[TraceRecord]] = {}
        for record in records:
            try:
                groups.setdefault((record.trace_id, record.handoff_id), []).append(record)
            except Exception:
                log.exception("otel trace sink: dropping malformed trace line %r", record)
        for (trace_id, handoff_id), lines in groups.items():
            try:
                self._span(trace_id, handoff_id, lines)
            except Exception:
                log.exception("otel trace sink: could not export the lines of %r", handoff_id)

    def _span(self, trace_id: str, handoff_id: str, lines: list[TraceRecord]) -> None:
        events: list[tuple[str, dict[str, AttributeValue], int]] = []
        for line in lines:
            try:
                events.append((line.action, record_attributes(line), _nanos(line.at)))
            except Exception:
                log.exception("otel trace sink: dropping malformed trace line %r", line)
        if not events:
            return
        common: dict[str, AttributeValue] = {}
        for key in (*(f"slakit.{f}" for f in LINE_FIELDS), "slakit.trace_id"):
            values = {e[1].get(key) for e in events}
            if len(values) == 1 and None not in values:
                common[key] = events[0][1][key]
        rule = common.get("slakit.rule")
        name = f"slakit {rule}" if rule is not None else "slakit"
        parent = trace.set_span_in_context(
            trace.NonRecordingSpan(parent_span_context(trace_id, handoff_id)),
            otel_context.Context(),
        )
        start = min(e[2] for e in events)
        span = self.tracer.start_span(
            name,
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=common,
            start_time=start,
        )
        try:
            for event_name, attributes, at in events:
                span.add_event(event_name, attributes=attributes, timestamp=at)
            dead = [a for _, a, _ in events if a.get("slakit.outcome") == "dead"]
            if dead:
                error = dead[0].get("slakit.detail.error")
                span.set_status(
                    trace.Status(
                        trace.StatusCode.ERROR,
                        f"notification dead-lettered: {error}" if error else "dead-lettered",
                    )
                )
        finally:
            span.end(end_time=max(e[2] for e in events))

    def close(self) -> None:
        """Flush spans; shut down the provider when this sink built it."""
        provider: Any = self.tracer_provider
        if provider is None:
            return
        if self._owned:
            provider.shutdown()
        elif hasattr(provider, "force_flush"):
            provider.force_flush()
