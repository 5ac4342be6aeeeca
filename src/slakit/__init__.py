"""slakit: a timer with a name and a consequence.

Turn an operational promise ("every qualified lead gets a human response
within 30 business minutes") into a stored timer whose steps fire exactly
once, are traced, and are measured as an SLA hit rate.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from slakit.abc import Notifier, RecordStore, TraceSink
from slakit.clock import Clock, ManualClock, SystemClock
from slakit.engine import AppliedStep, CheckResult, DeliveryResult, Engine
from slakit.errors import NaiveDatetimeError, SlakitError
from slakit.handoff import Handoff
from slakit.hookspecs import hookimpl
from slakit.plugins import get_plugin_manager
from slakit.policy import Policy, Step
from slakit.records import Escalation, Notification, OutboxItem, TraceRecord

if TYPE_CHECKING:
    from slakit.calendar import BusinessCalendar
    from slakit.metrics import HitRateReport, hit_rate

try:
    __version__ = version("slakit")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "AppliedStep",
    "BusinessCalendar",
    "CheckResult",
    "Clock",
    "DeliveryResult",
    "Engine",
    "Escalation",
    "Handoff",
    "HitRateReport",
    "ManualClock",
    "NaiveDatetimeError",
    "Notification",
    "Notifier",
    "OutboxItem",
    "Policy",
    "RecordStore",
    "SlakitError",
    "Step",
    "SystemClock",
    "TraceRecord",
    "TraceSink",
    "__version__",
    "get_plugin_manager",
    "hit_rate",
    "hookimpl",
]

_LAZY = {
    "BusinessCalendar": ("slakit.calendar", "BusinessCalendar"),
    "hit_rate": ("slakit.metrics", "hit_rate"),
    "HitRateReport": ("slakit.metrics", "HitRateReport"),
}


def __getattr__(name: str) -> Any:
    # The calendar pulls in python-holidays and metrics its report code; load them on first use.
    import importlib
    import importlib.util

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    # `slakit.metrics.classify` after a bare `import slakit`, as the docs write it:
    # a public submodule is imported on first use, as its names are.
    if not name.startswith("_") and importlib.util.find_spec(f"slakit.{name}") is not None:
        return importlib.import_module(f"slakit.{name}")
    raise AttributeError(f"module 'slakit' has no attribute {name!r}")
