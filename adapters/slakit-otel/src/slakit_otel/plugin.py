"""The ``slakit`` entry point of slakit-otel: registers the ``otel`` trace sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import slakit
from slakit.abc import TraceSink


def _otel(**options: Any) -> TraceSink:
    # Imported on use: OpenTelemetry loads only when an otel sink is configured.
    from slakit_otel.sink import OTelTraceSink

    return OTelTraceSink.from_config(options)


@slakit.hookimpl
def slakit_register_trace_sinks(register: Callable[[str, Callable[..., TraceSink]], None]) -> None:
    """Register the ``otel`` trace sink."""
    register("otel", _otel)
