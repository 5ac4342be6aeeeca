"""The plugin manager and the adapter registry.

:func:`get_plugin_manager` builds a fresh manager each call (never at import
time), registers the built-in adapters through the same ``register()`` as
entry-point plugins, and checks that every hook implementation matches a
spec, so a misspelled hook fails loudly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from slakit import hookspecs
from slakit.errors import SlakitError, UnknownAdapterError

if TYPE_CHECKING:
    from slakit.abc import Notifier, RecordStore, TraceSink
    from slakit.handoff import Handoff
    from slakit.policy import Action

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "Plugins",
    "get_plugin_manager",
    "get_plugins",
]

ENTRY_POINT_GROUP = "slakit"
#: Set to a non-empty value to skip entry-point plugins (built-ins still load).
DISABLE_AUTOLOAD_ENV = "SLAKIT_DISABLE_PLUGIN_AUTOLOAD"

T = TypeVar("T")


class PluginError(SlakitError):
    """A plugin is broken: a misspelled hook, a name registered twice."""


def get_plugin_manager(*, autoload: bool | None = None) -> pluggy.PluginManager:
    """A new plugin manager with the built-ins and (unless disabled) entry-point plugins.

    :param autoload: load entry-point plugins of group ``slakit``. Default:
        yes, unless the environment variable ``SLAKIT_DISABLE_PLUGIN_AUTOLOAD``
        is set to a non-empty value.
    :raises PluginError: when a plugin implements a hook that does not exist.
    """
    from slakit.adapters import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="slakit.builtin")
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    _check_pending(pm)
    return pm


def _check_pending(pm: pluggy.PluginManager) -> None:
    """:raises PluginError: when a registered plugin implements a hook that does not exist."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"invalid slakit plugin: {exc}") from exc


class _Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self.items:
            raise PluginError(f"{self.kind} {name!r} is registered twice")
        self.items[name] = item

    def get(self, name: str) -> T:
        try:
            return self.items[name]
        except KeyError:
            raise UnknownAdapterError(self.kind, name, list(self.items)) from None


class Plugins:
    """A typed wrapper around a plugin manager: one method per hook.

    :param pm: the plugin manager; a fresh one from :func:`get_plugin_manager` by default.
    :raises PluginError: when a plugin registered on ``pm`` implements a hook
        that does not exist (a misspelled name), as :func:`get_plugin_manager` does.
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        if pm is not None:
            _check_pending(pm)  # plugins registered after get_plugin_manager()
        self.pm = pm if pm is not None else get_plugin_manager()
        self._stores: _Registry[Callable[..., RecordStore]] | None = None
        self._notifiers: _Registry[Callable[..., Notifier]] | None = None
        self._sinks: _Registry[Callable[..., TraceSink]] | None = None
        self._actions: _Registry[Action] | None = None

    def _collect(self, kind: str, hook: Any) -> _Registry[Any]:
        reg: _Registry[Any] = _Registry(kind)
        hook(register=reg.register)
        return reg

    def stores(self) -> dict[str, Callable[..., RecordStore]]:
        """Store factories by name."""
        if self._stores is None:
            self._stores = self._collect("store", self.pm.hook.slakit_register_stores)
        return dict(self._stores.items)

    def notifiers(self) -> dict[str, Callable[..., Notifier]]:
        """Notifier factories by name."""
        if self._notifiers is None:
            self._notifiers = self._collect("notifier", self.pm.hook.slakit_register_notifiers)
        return dict(self._notifiers.items)

    def trace_sinks(self) -> dict[str, Callable[..., TraceSink]]:
        """Trace-sink factories by name."""
        if self._sinks is None:
            self._sinks = self._collect("trace sink", self.pm.hook.slakit_register_trace_sinks)
        return dict(self._sinks.items)

    def actions(self) -> dict[str, Action]:
        """Step actions by name (plugins' only; built-ins live in :mod:`slakit.policy`)."""
        if self._actions is None:
            self._actions = self._collect("action", self.pm.hook.slakit_register_actions)
        return dict(self._actions.items)

    def make_store(self, name: str, **options: Any) -> RecordStore:
        """Build a store by adapter name.

        :raises UnknownAdapterError: listing the installed store adapters.
        """
        self.stores()
        assert self._stores is not None
        return self._stores.get(name)(**options)

    def make_notifier(self, name: str, **options: Any) -> Notifier:
        """Build a notifier by adapter name.

        :raises UnknownAdapterError: listing the installed notifier adapters.
        """
        self.notifiers()
        assert self._notifiers is not None
        return self._notifiers.get(name)(**options)

    def make_trace_sink(self, name: str, **options: Any) -> TraceSink:
        """Build a trace sink by adapter name.

        :raises UnknownAdapterError: listing the installed trace-sink adapters.
        """
        self.trace_sinks()
        assert self._sinks is not None
        return self._sinks.get(name)(**options)

    def observes_steps(self) -> bool:
        """Whether any plugin implements ``slakit_step_applied`` (else the engine skips it)."""
        return bool(self.pm.hook.slakit_step_applied.get_hookimpls())

    def step_applied(
        self,
        handoff: Handoff,
        stage: int,
        step: str,
        actions: Sequence[str],
        at: datetime,
        engine: Any,
    ) -> None:
        """Tell observers a step committed."""
        self.pm.hook.slakit_step_applied(
            handoff=handoff, stage=stage, step=step, actions=list(actions), at=at, engine=engine
        )


_default: Plugins | None = None


def get_plugins(*, fresh: bool = False) -> Plugins:
    """The process-wide :class:`Plugins` (built on first use), or a fresh one."""
    global _default
    if fresh or _default is None:
        plugins = Plugins()
        if fresh:
            return plugins
        _default = plugins
    return _default
