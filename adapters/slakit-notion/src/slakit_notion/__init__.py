"""slakit-notion: the ``notion`` trace sink for slakit (one Notion database row per line).

Installed, it is found by name: ``[[trace_sinks]] adapter = "notion"``.
``httpx`` is imported only when a sink is built.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_notion.sink import (
        DEFAULT_PROPERTIES,
        NotionQueueFullError,
        NotionTraceSink,
        clip,
        page_properties,
    )

try:
    __version__ = version("slakit-notion")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_PROPERTIES",
    "NotionQueueFullError",
    "NotionTraceSink",
    "__version__",
    "clip",
    "page_properties",
]

_LAZY = ("DEFAULT_PROPERTIES", "NotionQueueFullError", "NotionTraceSink", "clip", "page_properties")


def __getattr__(name: str) -> Any:
    # The entry point imports this package on every plugin scan; load httpx only on use.
    if name in _LAZY:
        from slakit_notion import sink

        value = getattr(sink, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slakit_notion' has no attribute {name!r}")
