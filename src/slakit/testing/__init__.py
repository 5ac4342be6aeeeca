"""Public helpers for testing code that uses slakit, and for adapter authors.

* :func:`capture_notifications`, :func:`capture_traces`: see what engines do.
* :class:`StoreContract`: the store contract suite (``slakit.testing.store_contract``).
* :mod:`slakit.testing.notifiers`: a sample notification and engine scaffolding
  for notifier tests (:func:`sample_notification`, :func:`engine_with`,
  :class:`CrashAfterSendStore`).
* :mod:`slakit.testing.peers`: :func:`serve_http`, a local HTTP server for a
  notifier to talk to.
* :mod:`slakit.testing.strategies`: hypothesis strategies.
* :mod:`slakit.testing.plugin`: a pytest plugin (registered under ``pytest11``)
  with fixtures ``slakit_clock`` and ``slakit_engine``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from slakit.testing.capture import CapturedNotification, capture_notifications, capture_traces

if TYPE_CHECKING:
    from slakit.testing.notifiers import CrashAfterSendStore, engine_with, sample_notification
    from slakit.testing.peers import serve_http
    from slakit.testing.store_contract import StoreContract as StoreContract

__all__ = [
    "CapturedNotification",
    "CrashAfterSendStore",
    "capture_notifications",
    "capture_traces",
    "engine_with",
    "sample_notification",
    "serve_http",
]

# Loaded on first use: ``import slakit.testing`` should cost no more than the
# captures. StoreContract imports pytest, so it stays out of ``__all__`` too.
_LAZY = {
    "StoreContract": "slakit.testing.store_contract",
    "CrashAfterSendStore": "slakit.testing.notifiers",
    "engine_with": "slakit.testing.notifiers",
    "sample_notification": "slakit.testing.notifiers",
    "serve_http": "slakit.testing.peers",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    # `slakit.testing.notifiers.sample_notification` after `import slakit.testing`.
    if not name.startswith("_") and importlib.util.find_spec(f"slakit.testing.{name}") is not None:
        return importlib.import_module(f"slakit.testing.{name}")
    raise AttributeError(f"module 'slakit.testing' has no attribute {name!r}")
