"""slakit-smtp: the ``smtp`` notifier for slakit (standard library ``smtplib``).

Installed, it is found by name: ``[[notifiers]] adapter = "smtp"``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from slakit_smtp.notifier import SMTPNotifier, message_id_for

try:
    __version__ = version("slakit-smtp")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["SMTPNotifier", "__version__", "message_id_for"]
