"""The console notifier: one line per notification on stdout (or a given stream)."""

from __future__ import annotations

import sys
from typing import TextIO

from slakit._text import escape_controls
from slakit.abc import Notifier
from slakit.errors import ConfigError
from slakit.records import Notification

__all__ = ["ConsoleNotifier"]


class ConsoleNotifier(Notifier):
    """Prints ``[slakit] → recipient: text`` for each notification.

    :param stream: ``"stdout"`` (default), ``"stderr"``, or a text stream.
    :param prefix: printed before each line.
    """

    def __init__(self, stream: str | TextIO = "stdout", prefix: str = "[slakit]") -> None:
        self.name = "console"
        if isinstance(stream, str):
            if stream not in ("stdout", "stderr"):
                raise ConfigError(
                    f"console notifier stream must be 'stdout' or 'stderr', got {stream!r}",
                    field="stream",
                    value=stream,
                )
            self._stream_name: str | None = stream
            self._stream: TextIO | None = None
        else:
            self._stream_name = None
            self._stream = stream
        self.prefix = prefix

    @property
    def stream(self) -> TextIO:
        """The stream written to (looked up at send time, so redirection works)."""
        if self._stream is not None:
            return self._stream
        return sys.stderr if self._stream_name == "stderr" else sys.stdout

    def send(self, notification: Notification) -> None:
        """Write one line and flush."""
        n = notification
        # Attributes in the text come from records: shown, not obeyed by the terminal.
        line = escape_controls(f"{self.prefix} → {n.recipient}: {n.text}")
        print(line, file=self.stream, flush=True)
