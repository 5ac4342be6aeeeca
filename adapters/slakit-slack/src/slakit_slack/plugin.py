"""The ``slakit`` entry point: registers the ``slack`` notifier adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import slakit

if TYPE_CHECKING:
    from slakit.abc import Notifier

__all__ = ["slakit_register_notifiers"]


def _slack(**options: Any) -> Notifier:
    from slakit_slack.notifier import SlackNotifier

    return SlackNotifier(**options)


@slakit.hookimpl
def slakit_register_notifiers(register: Callable[[str, Callable[..., Notifier]], None]) -> None:
    """Register ``slack``: a :class:`~slakit_slack.notifier.SlackNotifier` from its config table."""
    register("slack", _slack)
