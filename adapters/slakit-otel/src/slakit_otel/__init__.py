"""slakit-otel: the ``otel`` trace sink for slakit (OpenTelemetry).

Installed, it is found by name: ``[[trace_sinks]] adapter = "otel"``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_otel.sink import (
        OTelTraceSink,
        otel_trace_id,
        parent_span_context,
        record_attributes,
    )

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

_LAZY = ("OTelTraceSink", "otel_trace_id", "parent_span_context", "record_attributes")


def __getattr__(name: str) -> Any:
    # The entry point imports this package on every plugin scan; load OpenTelemetry only on use.
    if name in _LAZY:
        from slakit_otel import sink

        value = getattr(sink, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slakit_otel' has no attribute {name!r}")
