"""Webhook notifier for slakit: each step as a signed Standard Webhooks POST.

Installed, it registers the notifier adapter ``webhook`` through the
``slakit`` entry-point group; configure it with a ``[[notifiers]]`` table
whose ``adapter = "webhook"``. ``httpx`` is imported only when a notifier is built.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from slakit_webhook.signature import decode_secret, generate_secret, sign, webhook_id

if TYPE_CHECKING:
    from slakit_webhook.notifier import WebhookNotifier

try:
    __version__ = version("slakit-webhook")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "WebhookNotifier",
    "__version__",
    "decode_secret",
    "generate_secret",
    "sign",
    "webhook_id",
]


def __getattr__(name: str) -> Any:
    # The plugin module is imported at every plugin-manager start; keep httpx out of it.
    if name == "WebhookNotifier":
        from slakit_webhook.notifier import WebhookNotifier

        return WebhookNotifier
    raise AttributeError(f"module 'slakit_webhook' has no attribute {name!r}")
