"""slakit-otel: the ``otel`` trace sink for slakit (OpenTelemetry).

Installed, it is found by name: ``[[trace_sinks]] adapter = "otel"``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from slakit_otel.sink import OTelTraceSink, otel_trace_id, parent_span_context, record_attributes

try:
    __version__ = version("slakit-otel")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "OTelTraceSink",
    "__version__",
    "otel_trace_id",
    "parent_span_context",
    "record_attributes",
]
