"""The plugin hooks of slakit (pluggy project name ``slakit``).

Plugins are modules or objects with functions marked ``@slakit.hookimpl``,
found through the entry-point group ``slakit`` or registered by hand. The
``register`` hooks *register things* (adapter factories, actions); they do no
work themselves. Each hook has a section in ``docs/plugins.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from slakit.abc import Notifier, RecordStore, TraceSink
    from slakit.handoff import Handoff
    from slakit.policy import Action

__all__ = [
    "hookimpl",
    "hookspec",
    "slakit_register_actions",
    "slakit_register_notifiers",
    "slakit_register_stores",
    "slakit_register_trace_sinks",
    "slakit_step_applied",
]

PROJECT = "slakit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def slakit_register_stores(register: Callable[[str, Callable[..., RecordStore]], None]) -> None:
    """Register record-store factories by name.

    Called once per plugin manager, when adapters are first looked up (for
    instance by :meth:`slakit.Engine.from_config`).

    :param register: call ``register(name, factory)`` for each store. ``factory``
        is called with the options of the ``[store]`` table (all keys but
        ``adapter``) as keyword arguments and returns a
        :class:`~slakit.abc.RecordStore`. Registering a name twice is an error.
    """


@hookspec
def slakit_register_notifiers(register: Callable[[str, Callable[..., Notifier]], None]) -> None:
    """Register notifier factories by name.

    Called once per plugin manager, when adapters are first looked up.

    :param register: call ``register(name, factory)`` for each notifier.
        ``factory`` is called with the options of a ``[[notifiers]]`` table
        (all keys but ``adapter`` and ``name``) and returns a
        :class:`~slakit.abc.Notifier`.
    """


@hookspec
def slakit_register_trace_sinks(
    register: Callable[[str, Callable[..., TraceSink]], None],
) -> None:
    """Register trace-sink factories by name.

    Called once per plugin manager, when adapters are first looked up.

    :param register: call ``register(name, factory)`` for each sink.
        ``factory`` is called with the options of a ``[[trace_sinks]]`` table
        (all keys but ``adapter`` and ``name``) and returns a
        :class:`~slakit.abc.TraceSink`.
    """


@hookspec
def slakit_register_actions(register: Callable[[str, Action], None]) -> None:
    """Register step actions by name, usable in a policy's ``do = [...]`` list.

    Called once per plugin manager, when a policy is built. An action
    ``"name:arg"`` in config calls the action registered as ``name`` with
    ``arg``; a bare ``"name"`` calls it with ``None``. Built-in names
    (``notify``, ``reassign``, ``mark_breached``) cannot be replaced.

    :param register: call ``register(name, action)``; ``action`` is a callable
        ``action(ctx, arg) -> None`` that may change ``ctx.handoff`` (through
        ``ctx.evolve(...)``), add notifications (``ctx.notify(recipient)``) and
        trace detail (``ctx.detail``). It runs inside the step's transaction
        planning: it must not do I/O; work that talks to the network belongs in
        a notifier, which the outbox calls after commit.
    """


@hookspec
def slakit_step_applied(
    handoff: Handoff, stage: int, step: str, actions: Sequence[str], at: datetime, engine: Any
) -> None:
    """Observe a step after its transaction committed.

    Called once per applied (handoff, stage), in the process that applied it,
    after commit and before notifications are delivered. Exceptions are logged
    and never undo the step.

    :param handoff: the handoff as stored after the step.
    :param stage: the stage index that was applied.
    :param step: the step's label (``"1x"``, ``"2x"``, ``"75%"``…).
    :param actions: the actions the step ran, in order.
    :param at: when the step was applied (the engine clock's now).
    :param engine: the :class:`slakit.Engine` that applied it.
    :returns: nothing; return values are ignored.
    """
