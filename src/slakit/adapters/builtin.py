"""Registers the built-in adapters through the ordinary plugin hooks.

Factories import their module only when called, so ``import slakit`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slakit.hookspecs import hookimpl


def _memory(**options: Any) -> Any:
    from slakit.adapters.memory import MemoryStore

    return MemoryStore(**options)


def _sqlite(**options: Any) -> Any:
    from slakit.adapters.sqlite import SQLiteStore

    return SQLiteStore(**options)


def _console(**options: Any) -> Any:
    from slakit.adapters.console import ConsoleNotifier

    return ConsoleNotifier(**options)


def _jsonl(**options: Any) -> Any:
    from slakit.adapters.jsonl import JSONLTraceSink

    return JSONLTraceSink(**options)


def _logging(**options: Any) -> Any:
    from slakit.adapters.log import LoggingTraceSink

    return LoggingTraceSink(**options)


@hookimpl
def slakit_register_stores(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("memory", _memory)
    register("sqlite", _sqlite)


@hookimpl
def slakit_register_notifiers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("console", _console)


@hookimpl
def slakit_register_trace_sinks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("jsonl", _jsonl)
    register("logging", _logging)
