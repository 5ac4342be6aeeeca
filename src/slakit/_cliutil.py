"""Conventions shared by every ``slakit`` command.

* Config from ``--config``, else ``$SLAKIT_CONFIG``, else ``./slakit.toml``.
* ISO-8601 inputs must carry an offset.
* Exit 0 when fine, 1 for a runtime failure, 2 for a usage, input or config
  error, always with a one-line message on stderr; ``--debug`` (or
  ``SLAKIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from slakit._text import escape_controls
from slakit.errors import (
    ConfigError,
    DuplicateHandoffError,
    InvalidTransitionError,
    SlakitError,
    UnknownAdapterError,
    UnknownCalendarError,
    UnknownHandoffError,
    UnknownPolicyError,
    ValidationError,
)
from slakit.plugins import PluginError

if TYPE_CHECKING:
    from slakit.engine import Engine

USAGE_ERRORS: tuple[type[Exception], ...] = (
    ValidationError,
    UnknownPolicyError,
    UnknownCalendarError,
    UnknownAdapterError,
    UnknownHandoffError,
    InvalidTransitionError,
    DuplicateHandoffError,
    PluginError,
)


def debug_enabled() -> bool:
    """Whether tracebacks should be shown (``--debug`` or ``SLAKIT_DEBUG``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        root = ctx.find_root()
        if root.params.get("debug"):
            return True
    return os.environ.get("SLAKIT_DEBUG", "") not in ("", "0")


def fail(message: str, code: int) -> NoReturn:
    """Print ``Error: message`` on one line to stderr and exit with ``code``."""
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    raise click.exceptions.Exit(code)


class Command(click.Command):
    """A command whose errors are one line on stderr: 2 for usage/input/config, 1 otherwise."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(exc.format_message(), 2)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            # As a shell reports SIGINT: 128 + 2, one line, no traceback. What a long
            # command committed before the interrupt stays (each batch is whole).
            if debug_enabled():
                raise
            click.echo("\nInterrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        except click.UsageError as exc:
            if debug_enabled():
                raise
            fail(exc.format_message(), 2)
        except USAGE_ERRORS as exc:
            if debug_enabled():
                raise
            fail(str(exc), 2)
        except SlakitError as exc:
            if debug_enabled():
                raise
            fail(str(exc), 1)
        except BrokenPipeError:
            # The reader went away (`slakit traces | head`): stop quietly, as a
            # tool killed by SIGPIPE does, and keep the exit-time flush quiet too.
            _stdout_to_devnull()
            raise click.exceptions.Exit(141) from None
        except OSError as exc:
            if debug_enabled():
                raise
            fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
        except UnicodeError as exc:
            # Bytes from a non-UTF-8 terminal or file that reached a store or a stream.
            if debug_enabled():
                raise
            fail(f"text that is not valid UTF-8, or that this output cannot show: {exc}", 2)
        except OverflowError as exc:
            # A date or number past what Python's datetime or the platform can hold.
            if debug_enabled():
                raise
            fail(f"a date or number is out of range: {exc}", 2)


def _stdout_to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test runner's stream)
        pass


class FiniteFloat(click.FloatRange):
    """A float option in a range that also refuses ``nan`` and ``inf``."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the range: "inf" is not "out of range"
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class Group(click.Group):
    """The ``slakit`` group: usage errors are one line too."""

    command_class = Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(exc.format_message(), 2)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            fail(exc.format_message(), 2)


def parse_iso(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an ISO-8601 timestamp that carries an offset (``Z`` allowed)."""
    if value is None:
        return None
    from slakit._time import from_iso

    try:
        return from_iso(f"--{param.name}", value)
    except ValidationError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 timestamp with an offset "
            "(e.g. 2026-11-23T09:00:00-05:00 or 2026-11-23T14:00:00Z)",
            ctx=ctx,
            param=param,
        ) from None


config_option = click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $SLAKIT_CONFIG, else ./slakit.toml).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
#: ``-o/--output FILE`` for :func:`output_stream`.
output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (replaced only when complete) instead of stdout (`-`).",
)


def check_window(since: datetime | None, until: datetime | None) -> None:
    """A ``--since``/``--until`` pair in order; reversed is a usage error, not an empty result.

    :raises click.BadParameter: naming both.
    """
    if since is not None and until is not None and until < since:
        raise click.BadParameter(
            f"--until {until.isoformat()} is before --since {since.isoformat()}",
            param_hint="--until",
        )


def at_option(help_text: str = "When it happened (ISO-8601 with offset; default: now).") -> Any:
    """``--at ISO`` option."""
    return click.option(
        "--at", callback=parse_iso, metavar="ISO-8601", default=None, help=help_text
    )


now_option = click.option(
    "--now",
    callback=parse_iso,
    metavar="ISO-8601",
    default=None,
    help="Act as if it were this instant (default: now).",
)


@contextmanager
def open_engine(
    config: Path | None, *, setup: bool = True, existing: bool = False, senders: bool = False
) -> Iterator[Engine]:
    """The engine of the config file, set up (unless ``setup=False``), closed afterwards.

    ``existing=True`` is for commands that work on stored records: a SQLite
    database file that is not there is a :class:`ConfigError` (a mistyped
    path or a config read from another folder) instead of a new, empty file.
    ``senders=True`` builds the notifiers, for the commands that check or
    deliver; the others (which send nothing) see each by name only, so that a
    notifier's secret (``token_env``) need not be set where they run (cron).
    """
    from slakit.config import build_engine, find_config

    engine = build_engine(find_config(config), senders=senders)
    try:
        if existing:
            _refuse_missing_database(engine)
        yield engine.setup() if setup else engine
    finally:
        engine.close()


def database_missing(engine: Engine) -> bool:
    """Whether the engine's store is a SQLite database file that is not there yet."""
    from slakit.adapters.sqlite import SQLiteStore

    store = engine.store
    return isinstance(store, SQLiteStore) and not store.in_memory and not os.path.exists(store.path)


def _refuse_missing_database(engine: Engine) -> None:
    if database_missing(engine):
        path = str(getattr(engine.store, "path", ""))
        raise ConfigError(
            f"store.path {path!r}: no database there "
            "(`slakit init` makes one; `start`, `import`, `check`, `deliver` and `run` create it "
            "on first use)",
            field="store.path",
            value=path,
        )


@contextmanager
def output_stream(path: Path | None, newline: str | None = None) -> Iterator[IO[str]]:
    """``path`` opened for writing (UTF-8), or stdout when it is ``None`` or ``-``.

    The text goes to a temporary file next to ``path`` that replaces it only
    when everything was written: a failure (a full disk, an interrupt, a store
    error) leaves an existing file as it was and no partial one.
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    if path.is_dir():
        raise click.BadParameter(f"{str(path)!r} is a directory", param_hint="--output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:  # no such folder, no permission: name the path asked for
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from None
    try:
        os.chmod(tmp, _new_file_mode(path))
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the file's own, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def print_json(data: Any) -> None:
    """Pretty JSON to stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


@functools.cache
def _console_class() -> Any:
    """rich's Console as the CLI uses it (made once; rich loads on first use)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here; end as the other commands do when the reader goes away.
            _stdout_to_devnull()
            raise click.exceptions.Exit(141)

        def render_str(self, text: str, **kwargs: Any) -> Any:
            # Newlines and tabs lay text out; other control characters are shown.
            return super().render_str(escape_controls(text, keep="\n\t"), **kwargs)

    return _Console


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr); fixed width when not a terminal.

    Text is printed as it is: no rich markup (``[/]`` in an owner's name would
    crash a table, ``[link=…]`` would hide a link), no ``:emoji:`` codes, and
    control characters escaped. Styles come from ``rich.text.Text`` objects.
    """
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return _console_class()(
        file=stream, width=width, soft_wrap=False, highlight=False, markup=False, emoji=False
    )


def progress_bar(*, disable: bool = False, spinner: bool = False) -> Any:
    """A transient rich progress bar on stderr: description, bar, ``done/total``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if spinner:
        columns.insert(0, SpinnerColumn())
    # Only on a terminal: into a file or a pipe a bar is noise (and a stray newline).
    stderr = sys.stderr
    off = disable or stderr is None or not stderr.isatty()
    return Progress(*columns, console=console(stderr=True), transient=True, disable=off)
