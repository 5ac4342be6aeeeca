"""``slakit.toml`` → objects: calendars, policies, store, notifiers, trace sinks, engine."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli

from slakit.errors import ConfigError, SlakitError, ValidationError

if TYPE_CHECKING:
    from slakit.calendar import BusinessCalendar
    from slakit.clock import Clock
    from slakit.engine import Engine
    from slakit.plugins import Plugins
    from slakit.policy import CalendarLike, Policy

__all__ = [
    "CONFIG_ENV",
    "TOP_LEVEL_KEYS",
    "build_calendar",
    "build_calendars",
    "build_engine",
    "build_policies",
    "find_config",
    "load_config",
]

CONFIG_ENV = "SLAKIT_CONFIG"
TOP_LEVEL_KEYS = (
    "store",
    "calendars",
    "policies",
    "notifiers",
    "trace_sinks",
    "breach_reasons",
    "engine",
    "import",
    "review",
)
#: The keys of ``[import]`` (defaults for ``slakit import``).
_IMPORT_KEYS = ("map", "policy", "tz", "ambiguous", "time_format", "delimiter")

_ENGINE_KEYS = (
    "max_attempts",
    "backoff_base",
    "backoff_cap",
    "batch_size",
    "claim_lease",
    "outbox_lease",
    "worker_id",
)


def _refuse_unknown_keys(section: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """:raises ConfigError: naming the first key of ``[section]`` not in ``allowed``."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})",
            field=f"{section}.{unknown[0]}",
            value=unknown[0],
        )


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$SLAKIT_CONFIG``, else ``./slakit.toml``.

    :raises ConfigError: when that file does not exist.
    """
    if explicit is not None:
        path = Path(explicit)
        source = "--config"
    elif os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
        source = CONFIG_ENV
    else:
        path = Path("slakit.toml")
        source = "default"
    shown = str(explicit) if explicit is not None else str(path)
    if not shown.strip():
        raise ConfigError(f"{source} names no file (it is empty)", field="config", value=shown)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ConfigError(f"config file {shown!r} is {kind}", field="config", value=shown)
    if not path.is_file():
        hint = " (run `slakit init` to create one)" if source == "default" else ""
        raise ConfigError(f"config file {shown!r} not found{hint}", field="config", value=shown)
    return path


def load_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], Path]:
    """Read and shape-check a config.

    :returns: ``(mapping, base_dir)``; relative ``path`` options resolve against ``base_dir``.
    :raises ConfigError: for a missing file, invalid TOML, or an unknown top-level key.
    """
    if isinstance(source, Mapping):
        data = dict(source)
        base = Path.cwd()
    else:
        path = Path(source)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"config file {str(path)!r} not found", field="config", value=str(path)
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {str(path)!r}: {exc.strerror}",
                field="config",
                value=str(path),
            ) from None
        try:
            # TOML 1.1 (tomli): an inline table may span lines, as long `hours` tables do.
            data = tomli.loads(raw.decode("utf-8"))
        except (tomli.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not valid TOML: {exc}",
                field="config",
                value=str(path),
            ) from None
        base = path.resolve().parent
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown top-level config key {unknown[0]!r} (allowed: {', '.join(TOP_LEVEL_KEYS)})",
            field=unknown[0],
            value=unknown[0],
        )
    for key in ("store", "calendars", "policies", "breach_reasons", "engine", "import", "review"):
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigError(
                f"[{key}] must be a table, got {data[key]!r}", field=key, value=data[key]
            )
    _refuse_unknown_keys("import", data.get("import") or {}, _IMPORT_KEYS)
    for key in ("notifiers", "trace_sinks"):
        if key in data and (
            not isinstance(data[key], list) or not all(isinstance(x, Mapping) for x in data[key])
        ):
            raise ConfigError(
                f"{key} must be an array of tables ([[{key}]]), got {data[key]!r}",
                field=key,
                value=data[key],
            )
    return data, base


def build_calendar(name: str, table: Any) -> BusinessCalendar:
    """One ``[calendars.NAME]`` table as a calendar.

    :raises ConfigError, CalendarError: for a malformed calendar, naming it.
    """
    from slakit.calendar import BusinessCalendar

    if not isinstance(table, Mapping | str):
        raise ConfigError(
            f"calendars.{name} must be a table, got {table!r}",
            field=f"calendars.{name}",
            value=table,
        )
    try:
        return BusinessCalendar.from_config(table, name=name)
    except SlakitError as exc:
        exc.message = f"calendars.{name}: {exc.message}"
        exc.args = (exc.message,)
        raise


def build_calendars(data: Mapping[str, Any]) -> dict[str, CalendarLike]:
    """The ``[calendars.NAME]`` tables as calendars.

    :raises ConfigError, CalendarError: for a malformed calendar, naming it.
    """
    tables = data.get("calendars") or {}
    return {name: build_calendar(name, table) for name, table in tables.items()}


def build_policies(
    data: Mapping[str, Any],
    calendars: Mapping[str, CalendarLike],
    plugins: Plugins | None = None,
) -> dict[str, Policy]:
    """The ``[policies.NAME]`` tables as policies.

    :raises ConfigError: when none is configured, or one is malformed.
    """
    from slakit.policy import Policy

    tables = data.get("policies") or {}
    if not tables:
        raise ConfigError(
            "no policies configured: add a [policies.NAME] table", field="policies", value=None
        )
    action_names: list[str] = []
    if plugins is not None:
        action_names = list(plugins.actions())
    return {
        name: Policy.from_config(table, name=name, calendars=calendars, actions=action_names)
        for name, table in tables.items()
    }


def _adapter_options(table: Mapping[str, Any], kind: str, base: Path) -> tuple[str, dict[str, Any]]:
    if "adapter" not in table or not isinstance(table["adapter"], str):
        raise ConfigError(
            f"{kind} table needs an 'adapter' name, got {dict(table)!r}",
            field=f"{kind}.adapter",
            value=table.get("adapter"),
        )
    options = {k: v for k, v in table.items() if k not in ("adapter", "name")}
    for key in ("path", "file"):
        value = options.get(key)
        if isinstance(value, str) and value != ":memory:" and not os.path.isabs(value):
            options[key] = str(base / value)
    return table["adapter"], options


#: A constructor's "missing 1 required positional argument: 'url'" (or keyword-only ones).
_MISSING_ARGUMENTS = re.compile(
    r"missing \d+ required (?:positional|keyword-only) arguments?: (.*)"
)
_QUOTED = re.compile(r"'[^']*'")


def _construct(kind: str, name: str, factory: Any, options: Mapping[str, Any]) -> Any:
    try:
        made = factory(name, **options)
    except TypeError as exc:
        text = str(exc)
        missing = _MISSING_ARGUMENTS.search(text)
        if missing:
            names = ", ".join(_QUOTED.findall(missing.group(1)))
            message = f"{kind} adapter {name!r} needs option(s) {names}"
        elif "unexpected keyword argument" in text:
            message = (
                f"{kind} adapter {name!r} does not accept these options "
                f"({', '.join(sorted(options)) or 'none'}): {text}"
            )
        else:  # a wrong type the adapter's own code tripped over
            message = f"{kind} adapter {name!r} cannot use its options: {text}"
        raise ConfigError(message, field=f"{kind}.{name}", value=sorted(options)) from None
    _check_made(kind, name, made)
    return made


def _check_made(kind: str, name: str, made: Any) -> None:
    """:raises ConfigError: when an adapter's factory gave something that is not one
    (``None`` would otherwise make the engine fall back to a memory store, and lose
    every write when the process ends)."""
    from slakit.abc import Notifier, RecordStore, TraceSink

    wanted = {"store": RecordStore, "notifier": Notifier, "trace sink": TraceSink}[kind]
    if isinstance(made, wanted):
        return
    methods = {"store": ("insert", "claim_due"), "notifier": ("send",), "trace sink": ("emit",)}
    if made is not None and all(callable(getattr(made, m, None)) for m in methods[kind]):
        return  # duck-typed, as plugins may be
    raise ConfigError(
        f"{kind} adapter {name!r} gave {type(made).__name__}, not a {wanted.__name__}",
        field=f"{kind}.adapter",
        value=name,
    )


def build_engine(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    clock: Clock | None = None,
    plugins: Plugins | None = None,
    senders: bool = True,
    **overrides: Any,
) -> Engine:
    """Build an :class:`~slakit.engine.Engine` from a config path or mapping.

    ``overrides`` replace engine keyword arguments (e.g. ``store=``).
    ``senders=False`` is for work that sends nothing (reports, events, exports):
    each ``[[notifiers]]`` table is then a stand-in with its name, not a built
    adapter, so a secret its adapter reads (``token_env``) need not be set there.
    """
    from slakit.engine import Engine
    from slakit.notify import _UnbuiltNotifier
    from slakit.plugins import get_plugins
    from slakit.review import ReviewSettings

    data, base = load_config(source)
    ReviewSettings.from_config(data.get("review"))  # a bad [review] fails every command alike
    plugins = plugins or get_plugins()
    calendars = build_calendars(data)
    policies = build_policies(data, calendars, plugins)

    store = overrides.pop("store", None)
    if store is None:
        store_table = data.get("store") or {"adapter": "memory"}
        name, options = _adapter_options(store_table, "store", base)
        store = _construct("store", name, plugins.make_store, options)

    notifiers = overrides.pop("notifiers", None)
    if notifiers is None:
        notifiers = []
        for table in data.get("notifiers") or []:
            name, options = _adapter_options(table, "notifiers", base)
            if senders:
                notifier = _construct("notifier", name, plugins.make_notifier, options)
            else:
                if name not in plugins.notifiers():
                    plugins.make_notifier(name)  # UnknownAdapterError, as when built
                notifier = _UnbuiltNotifier(name)
            notifier.name = table.get("name") or name
            notifiers.append(notifier)
        notifiers = notifiers or None

    sinks = overrides.pop("trace_sinks", None)
    if sinks is None:
        sinks = []
        for table in data.get("trace_sinks") or []:
            name, options = _adapter_options(table, "trace_sinks", base)
            sink = _construct("trace sink", name, plugins.make_trace_sink, options)
            sink.name = table.get("name") or name
            sinks.append(sink)

    reasons = data.get("breach_reasons") or {}
    breach_reasons: dict[str, str] = {}
    for key, value in reasons.items():
        if isinstance(value, Mapping):
            breach_reasons[key] = str(value.get("description", ""))
        else:
            breach_reasons[key] = str(value)

    settings = dict(data.get("engine") or {})
    _refuse_unknown_keys("engine", settings, _ENGINE_KEYS)
    from_file = set(settings)
    settings.update(overrides)
    try:
        engine = Engine(
            store=store,
            policies=policies,
            notifiers=notifiers,
            trace_sinks=sinks,
            clock=clock,
            breach_reasons=breach_reasons,
            plugins=plugins,
            **settings,
        )
    except ValidationError as exc:
        if exc.field not in from_file:
            raise
        raise ConfigError(
            f"[engine] {exc.message}", field=f"engine.{exc.field}", value=exc.value
        ) from None
    engine.config = data
    engine.config_path = None if isinstance(source, Mapping) else Path(source)
    engine.calendars = calendars
    return engine
