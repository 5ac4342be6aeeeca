"""The ``slakit`` entry point: registers the ``webhook`` notifier adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import slakit

if TYPE_CHECKING:
    from slakit.abc import Notifier

__all__ = ["slakit_register_notifiers"]


def _webhook(**options: Any) -> Notifier:
    from slakit_webhook.notifier import WebhookNotifier

    return WebhookNotifier(**options)


@slakit.hookimpl
def slakit_register_notifiers(register: Callable[[str, Callable[..., Notifier]], None]) -> None:
    """Register ``webhook``: a :class:`~slakit_webhook.notifier.WebhookNotifier` from its table."""
    register("webhook", _webhook)
