"""slakit-smtp: the ``smtp`` notifier for slakit (standard library ``smtplib``).

Installed, it is found by name: ``[[notifiers]] adapter = "smtp"``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_smtp.notifier import SMTPNotifier, message_id_for

try:
    __version__ = version("slakit-smtp")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["SMTPNotifier", "__version__", "message_id_for"]


def __getattr__(name: str) -> Any:
    # The entry point imports this package on every plugin scan; load smtplib only on use.
    if name in ("SMTPNotifier", "message_id_for"):
        from slakit_smtp import notifier

        value = getattr(notifier, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slakit_smtp' has no attribute {name!r}")
