"""Slack notifier for slakit: each step as a direct message, Block Kit plus fallback text.

Installed, it registers the notifier adapter ``slack`` through the ``slakit``
entry-point group; configure it with a ``[[notifiers]]`` table whose
``adapter = "slack"``. ``slack_sdk`` is imported only when a notifier is built.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_slack.notifier import SlackNotifier

try:
    __version__ = version("slakit-slack")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["SlackNotifier", "__version__"]


def __getattr__(name: str) -> Any:
    # The plugin module is imported at every plugin-manager start; keep slack_sdk out of it.
    if name == "SlackNotifier":
        from slakit_slack.notifier import SlackNotifier

        return SlackNotifier
    raise AttributeError(f"module 'slakit_slack' has no attribute {name!r}")
