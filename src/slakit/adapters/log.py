"""The logging trace sink: each trace line as a record on a standard logger."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from slakit.abc import TraceSink
from slakit.errors import ConfigError
from slakit.records import TraceRecord

__all__ = ["LoggingTraceSink"]


class LoggingTraceSink(TraceSink):
    """Logs each trace line on ``logger`` at ``level``; the fields ride in ``extra``.

    :param logger: logger name, default ``"slakit.trace"``.
    :param level: level name or number, default ``INFO``.
    """

    def __init__(self, logger: str = "slakit.trace", level: str | int = "INFO") -> None:
        self.name = "logging"
        self.logger = logging.getLogger(logger)
        if isinstance(level, str):
            resolved = logging.getLevelName(level.upper())
            if not isinstance(resolved, int):
                raise ConfigError(
                    f"logging trace sink level must be a level name, got {level!r}",
                    field="level",
                    value=level,
                )
            level = resolved
        self.level = level

    def emit(self, records: Iterable[TraceRecord]) -> None:
        """One log record per trace line."""
        for r in records:
            self.logger.log(
                self.level,
                "%s %s %s %s -> %s",
                r.handoff_id,
                r.rule,
                r.action,
                r.actor,
                r.outcome,
                extra={"slakit": r.to_dict()},
            )
