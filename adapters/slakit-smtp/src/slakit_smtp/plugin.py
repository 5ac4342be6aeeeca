"""The ``slakit`` entry point of slakit-smtp: registers the ``smtp`` notifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import slakit
from slakit.abc import Notifier


def _smtp(**options: Any) -> Notifier:
    # Imported on use, so loading the plugin costs nothing until an smtp notifier is built.
    from slakit_smtp.notifier import SMTPNotifier

    return SMTPNotifier.from_config(options)


@slakit.hookimpl
def slakit_register_notifiers(register: Callable[[str, Callable[..., Notifier]], None]) -> None:
    """Register the ``smtp`` notifier."""
    register("smtp", _smtp)
