"""The ``slakit`` entry point of slakit-notion: registers the ``notion`` trace sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import slakit

if TYPE_CHECKING:
    from slakit.abc import TraceSink

__all__ = ["slakit_register_trace_sinks"]


def _notion(**options: Any) -> TraceSink:
    # Imported on use: httpx loads only when a notion sink is configured.
    from slakit_notion.sink import NotionTraceSink

    return NotionTraceSink(**options)


@slakit.hookimpl
def slakit_register_trace_sinks(register: Callable[[str, Callable[..., TraceSink]], None]) -> None:
    """Register ``notion``: a :class:`~slakit_notion.sink.NotionTraceSink` from its table."""
    register("notion", _notion)
