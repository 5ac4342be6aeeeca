"""``slakit calendar``: ask a configured business-hours calendar from the command line.

Commands: ``add START DURATION``, ``elapsed START END``, ``is-open [T]`` and
``next-open [T]``. The calendar is a ``[calendars.NAME]`` table of the config
file (``--config``, else ``$SLAKIT_CONFIG``, else ``./slakit.toml``); ``--calendar``
may be left out when exactly one is configured. Times are ISO-8601 with an
offset, or without one when ``--tz ZONE`` says how to read them. Bad input is
one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from slakit._cliutil import Group, fail
from slakit.calendar import BusinessCalendar, resolve_wall_time
from slakit.errors import ConfigError, UnknownCalendarError

__all__ = ["calendar_group", "format_duration", "parse_cli_duration"]

F = TypeVar("F", bound=Callable[..., Any])


def parse_cli_duration(text: str) -> timedelta:
    """Parse ``90m``, ``1h30m``, ``2d``, ``45s`` or ISO-8601 ``PT1H30M``; a leading ``-`` negates.

    ``2d`` is 48 hours of open time, not two business days.

    :param text: the duration as typed.
    :returns: the duration.
    :raises ValidationError: naming the text when it is malformed.
    """
    from slakit._time import parse_signed_duration

    return parse_signed_duration("DURATION", text.strip())


def format_duration(delta: timedelta) -> str:
    """ISO-8601 duration in hours, minutes and seconds, e.g. ``PT40H``, ``-PT1H30M``, ``PT0S``.

    :param delta: the duration.
    :returns: the text.
    """
    sign = "-" if delta < timedelta(0) else ""
    us = abs(delta) // timedelta(microseconds=1)
    seconds, micro = divmod(us, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if secs or micro or not out:
        out += f"{secs}.{micro:06d}".rstrip("0").rstrip(".") + "S"
    return f"{sign}PT{out}"


def _options(func: F) -> F:
    """The options every calendar command takes."""
    decorators = [
        click.option(
            "--config",
            "config",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Config file (default: $SLAKIT_CONFIG, else ./slakit.toml).",
        ),
        click.option(
            "--calendar",
            "calendar_name",
            metavar="NAME",
            default=None,
            help="A [calendars.NAME] table; optional when only one is configured.",
        ),
        click.option(
            "--tz",
            "tz_name",
            metavar="ZONE",
            default=None,
            help="IANA zone for inputs written without an offset.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def load_calendar(config: Path | None, name: str | None) -> BusinessCalendar:
    """The calendar ``name`` of the config file (the only one when ``name`` is ``None``).

    :raises ConfigError: for a missing or malformed file, or when the choice is ambiguous.
    :raises UnknownCalendarError: when no calendar has that name.
    """
    from slakit.config import build_calendar, find_config, load_config

    path = find_config(config)
    tables = load_config(path)[0].get("calendars") or {}
    if name is None:
        if len(tables) != 1:
            known = ", ".join(sorted(tables)) or "none"
            raise ConfigError(
                f"pass --calendar NAME: {str(path)!r} configures {len(tables)} calendars ({known})",
                field="calendar",
                value=None,
            )
        name = next(iter(tables))
    if name not in tables:
        raise UnknownCalendarError(name, list(tables))
    return build_calendar(name, tables[name])


def parse_instant(label: str, text: str | None, tz_name: str | None) -> datetime:
    """An aware datetime from ISO-8601 text; without an offset only when ``--tz`` is given.

    A wall time read in ``--tz`` follows the calendar's rule: inside a
    spring-forward gap it is the end of the gap, in a repeat the first pass.
    ``None`` is now.
    """
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{label} {text!r} is not an ISO-8601 date-time (e.g. 2026-03-02T09:00-05:00)", 2)
    if value.tzinfo is not None:
        return value
    if tz_name is None:
        fail(f"{label} {text!r} has no UTC offset; add one (e.g. -05:00 or Z) or pass --tz ZONE", 2)
    return resolve_wall_time(value, _zone(tz_name))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz {name!r} is not an IANA time zone (e.g. America/New_York)", 2)


def _emit(as_json: bool, text: str, data: dict[str, Any]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text)


@click.group(cls=Group, name="calendar")
def calendar_group() -> None:
    """Ask a configured business-hours calendar: deadlines, business time, opening hours."""


@calendar_group.command("add")
@click.argument("start")
@click.argument("duration")
@_options
def add_command(
    start: str,
    duration: str,
    config: Path | None,
    calendar_name: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """Print the deadline DURATION of open time after START.

    DURATION is 90m, 1h30m, 2d (48 h of open time) or PT1H30M; put `--` before a
    negative one (`-- -90m`) to count backwards.
    """
    cal = load_calendar(config, calendar_name)
    begin = parse_instant("START", start, tz_name)
    delta = parse_cli_duration(duration)
    result = cal.add(begin, delta)
    _emit(
        as_json,
        result.isoformat(),
        {
            "calendar": cal.name,
            "start": begin.isoformat(),
            "duration": format_duration(delta),
            "duration_seconds": delta.total_seconds(),
            "result": result.isoformat(),
        },
    )


@calendar_group.command("elapsed")
@click.argument("start")
@click.argument("end")
@_options
def elapsed_command(
    start: str,
    end: str,
    config: Path | None,
    calendar_name: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """Print the open time between START and END (negative when END is earlier)."""
    cal = load_calendar(config, calendar_name)
    begin = parse_instant("START", start, tz_name)
    finish = parse_instant("END", end, tz_name)
    spent = cal.elapsed(begin, finish)
    _emit(
        as_json,
        format_duration(spent),
        {
            "calendar": cal.name,
            "start": begin.isoformat(),
            "end": finish.isoformat(),
            "elapsed": format_duration(spent),
            "elapsed_seconds": spent.total_seconds(),
        },
    )


@calendar_group.command("is-open")
@click.argument("t", metavar="[T]", required=False)
@_options
def is_open_command(
    t: str | None,
    config: Path | None,
    calendar_name: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """Print `open` or `closed` at T (default: now); the exit code is 0 either way."""
    cal = load_calendar(config, calendar_name)
    at = parse_instant("T", t, tz_name)
    is_open = cal.is_open(at)
    _emit(
        as_json,
        "open" if is_open else "closed",
        {"calendar": cal.name, "at": at.astimezone(cal.timezone).isoformat(), "open": is_open},
    )


@calendar_group.command("next-open")
@click.argument("t", metavar="[T]", required=False)
@_options
def next_open_command(
    t: str | None,
    config: Path | None,
    calendar_name: str | None,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """Print T (default: now) if the calendar is open then, else its next opening."""
    cal = load_calendar(config, calendar_name)
    at = parse_instant("T", t, tz_name)
    result = cal.next_open(at)
    _emit(
        as_json,
        result.isoformat(),
        {
            "calendar": cal.name,
            "at": at.astimezone(cal.timezone).isoformat(),
            "next_open": result.isoformat(),
        },
    )
