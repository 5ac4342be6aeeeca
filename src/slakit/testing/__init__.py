"""Public helpers for testing code that uses slakit, and for adapter authors.

* :func:`capture_notifications`, :func:`capture_traces`: see what engines do.
* :class:`StoreContract`: the store contract suite (``slakit.testing.store_contract``).
* :mod:`slakit.testing.strategies`: hypothesis strategies.
* :mod:`slakit.testing.plugin`: a pytest plugin (registered under ``pytest11``)
  with fixtures ``slakit_clock`` and ``slakit_engine``.
"""

from __future__ import annotations

from slakit.testing.capture import CapturedNotification, capture_notifications, capture_traces

__all__ = ["CapturedNotification", "capture_notifications", "capture_traces"]


def __getattr__(name: str) -> object:
    # The contract suite imports pytest; load it only for those who ask.
    if name == "StoreContract":
        from slakit.testing.store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'slakit.testing' has no attribute {name!r}")
