"""Reporting commands: ``report``, ``review``, ``runbook``, ``preflight`` and ``simulate``.

They are mounted into the main ``slakit`` group (see :mod:`slakit.cli`) from
:data:`commands`. Conventions shared by all of them:

* the config comes from ``--config``, else ``$SLAKIT_CONFIG``, else ``./slakit.toml``;
* ISO-8601 inputs must carry an offset (``2026-11-23T00:00:00+00:00`` or ``…Z``);
* exit 0 when fine, 1 for a runtime failure (or preflight gaps), 2 for a usage or
  config error, always with a one-line message on stderr and no traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from slakit._cliutil import (
    Command,
    check_window,
    config_option,
    console,
    database_missing,
    json_option,
    open_engine,
    output_stream,
    parse_iso,
    print_json,
    progress_bar,
)
from slakit.errors import SlakitError

if TYPE_CHECKING:
    from slakit.engine import Engine
    from slakit.metrics import HitRateReport

__all__ = ["commands", "preflight", "report", "review", "runbook", "simulate"]

#: Above this many stored handoffs, ``report`` shows progress on stderr.
PROGRESS_THRESHOLD = 100_000

_now_option = click.option(
    "--now",
    callback=parse_iso,
    metavar="ISO-8601",
    default=None,
    help="Judge open handoffs at this instant (default: now).",
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


# -- report ------------------------------------------------------------------------


def _store_size(engine: Engine) -> int:
    if database_missing(engine):
        return 0  # asking would make the file
    try:
        return engine.store.count()
    except SlakitError:
        return 0


@contextmanager
def _spinner(engine: Engine, text: str) -> Iterator[None]:
    """A spinner on stderr while a long operation runs over a large store."""
    if _store_size(engine) < PROGRESS_THRESHOLD:
        yield
        return
    with console(stderr=True).status(text):
        yield


def _report_with_progress(
    engine: Engine, run: Callable[[Callable[[int], None] | None], HitRateReport]
) -> HitRateReport:
    size = _store_size(engine)
    if size < PROGRESS_THRESHOLD:
        return run(None)
    with progress_bar(spinner=True) as bar:
        task = bar.add_task("computing hit rate", total=size)
        return run(lambda n: bar.update(task, completed=n))


@click.command(cls=Command)
@click.option(
    "--since",
    callback=parse_iso,
    metavar="ISO-8601",
    default=None,
    help="Window start (inclusive), by started_at.",
)
@click.option(
    "--until", callback=parse_iso, metavar="ISO-8601", default=None, help="Window end (exclusive)."
)
@click.option(
    "--by",
    default="",
    help="Group keys, comma-separated: channel, segment, policy, owner, "
    "within_business_hours, backup_owner, responded_by, breached, breach_reason, stage, "
    "cancel_reason, attributes.NAME.",
)
@click.option(
    "--basis",
    type=click.Choice(["business", "wall"]),
    default="business",
    show_default=True,
    help="business = adjusted for business hours, wall = absolute.",
)
@json_option
@config_option
@_now_option
def report(
    since: datetime | None,
    until: datetime | None,
    by: str,
    basis: str,
    as_json: bool,
    config: Path | None,
    now: datetime | None,
) -> None:
    """The SLA hit-rate table: met / evaluated, per group, on both bases."""
    from slakit.metrics import hit_rate, normalize_by

    check_window(since, until)
    keys = normalize_by(by)
    with open_engine(config, existing=True) as engine:
        result = _report_with_progress(
            engine,
            lambda progress: hit_rate(
                engine.store,
                since=since,
                until=until,
                by=keys,
                basis=basis,
                now=now,
                progress=progress,
            ),
        )
        if as_json:
            print_json(result.to_dict())
            return
        _print_report(result)


def _print_report(result: HitRateReport) -> None:
    from rich.table import Table

    other = "wall" if result.basis == "business" else "business"
    title = f"SLA hit rate ({result.basis} basis)"
    if result.since or result.until:
        lo = result.since.isoformat() if result.since else "…"
        hi = result.until.isoformat() if result.until else "…"
        title += f", started in [{lo}, {hi})"
    table = Table(title=title, show_footer=False)
    for name in result.by:
        table.add_column(name)
    for name in ("handoffs", "evaluated", "met", "missed", "pending", "excluded"):
        table.add_column(name, justify="right")
    table.add_column(f"rate ({result.basis})", justify="right")
    table.add_column(f"rate ({other})", justify="right")

    def row(label: Sequence[str], g: Any) -> list[str]:
        return [
            *label,
            str(g.handoffs),
            str(g.evaluated),
            str(g.met),
            str(g.missed),
            str(g.pending),
            str(g.excluded),
            _pct(g.rate),
            _pct(g.counts(other).rate),
        ]

    for group_key, g in result.groups.items():
        if result.by:
            table.add_row(*row(["—" if v is None else str(v) for v in group_key], g))
    if result.by:
        table.add_section()
    label = ["total", *[""] * (len(result.by) - 1)] if result.by else []
    table.add_row(*row(label, result.total), style="bold")
    console().print(table)


# -- review ------------------------------------------------------------------------


@click.command(cls=Command)
@click.option("--week", default=None, help="ISO week, e.g. 2026-W48 (default: the current one).")
@click.option(
    "--weeks",
    type=click.IntRange(min=1, max=520),
    default=None,
    help="Weeks of history and of the never-fired check, 1-520 (default: [review] weeks, else 4).",
)
@json_option
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write a self-contained HTML page with a chart (`-`: only the page, to stdout).",
)
@config_option
@_now_option
def review(
    week: str | None,
    weeks: int | None,
    as_json: bool,
    html_file: Path | None,
    config: Path | None,
    now: datetime | None,
) -> None:
    """The weekly "Prune Friday" review: breaches by reason, hit-rate trend, rules to prune."""
    from slakit.review import parse_week, review_from_engine

    if week is not None:
        parse_week(week)
    to_stdout = html_file is not None and str(html_file) == "-"
    if to_stdout and as_json:
        raise click.UsageError("--html - and --json both want stdout; write the page to a file")
    with (
        open_engine(config, existing=True) as engine,
        _spinner(engine, "building the weekly review"),
    ):
        sheet = review_from_engine(engine, week=week, now=now, weeks=weeks)
    if html_file is not None:
        with output_stream(html_file) as out:
            out.write(sheet.to_html())
        if to_stdout:
            return
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        print_json(sheet.to_dict())
    else:
        click.echo(sheet.to_markdown(), nl=False)


# -- runbook -----------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("policy", required=False)
@config_option
def runbook(policy: str | None, config: Path | None) -> None:
    """The one-page runbook of POLICY (all policies when none is named), as Markdown."""
    from slakit.review import render_runbook

    with open_engine(config, setup=False) as engine:
        text = render_runbook(
            engine.policies,
            policy,
            notifiers=[n.name for n in engine.notifiers],
            trace_sinks=[s.name for s in engine.trace_sinks],
        )
    click.echo(text, nl=False)


# -- preflight ---------------------------------------------------------------------


@click.command(cls=Command)
@json_option
@config_option
@_now_option
def preflight(as_json: bool, config: Path | None, now: datetime | None) -> None:
    """Check every policy answers the five decisions and can run; exit 1 on any gap."""
    from slakit.preflight import preflight, preflight_engine

    with (
        open_engine(config, setup=False, senders=True) as engine,
        _spinner(engine, "checking policies and stored handoffs"),
    ):
        if database_missing(engine):
            # Checking a config before its first run: nothing stored, and no file made.
            result = preflight(engine.policies, now=now or engine.clock.now())
        else:
            result = preflight_engine(engine, now=now)
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        click.echo(f"ok: {len(result.policies)} policies pass preflight")
    else:
        for line in result.lines():
            click.echo(line)
    if not result.ok:
        raise click.exceptions.Exit(1)


# -- simulate ----------------------------------------------------------------------


@click.command(cls=Command)
@click.option("--policy", "policy", required=True, help="The policy whose history is replayed.")
@click.option(
    "--sla-minutes", type=float, default=None, help="What-if SLA (replaces each record's)."
)
@click.option("--calendar", default=None, help="What-if calendar: a [calendars.NAME] name.")
@click.option(
    "--since",
    callback=parse_iso,
    metavar="ISO-8601",
    default=None,
    help="Replay handoffs started at or after this.",
)
@click.option(
    "--until", callback=parse_iso, metavar="ISO-8601", default=None, help="... and before this."
)
@json_option
@config_option
@_now_option
def simulate(
    policy: str,
    sla_minutes: float | None,
    calendar: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
    config: Path | None,
    now: datetime | None,
) -> None:
    """Replay stored history under a changed SLA or calendar; predicted next to actual."""
    from slakit.simulate import simulate_engine

    check_window(since, until)
    with open_engine(config, existing=True) as engine, _spinner(engine, "replaying stored history"):
        result = simulate_engine(
            engine,
            policy,
            sla_minutes=sla_minutes,
            calendar=calendar,
            since=since,
            until=until,
            now=now,
        )
    if as_json:
        print_json(result.to_dict())
        return
    from rich.table import Table

    changes = []
    if sla_minutes is not None:
        changes.append(f"sla_minutes={sla_minutes:g}")
    if calendar is not None:
        changes.append(f"calendar={calendar}")
    table = Table(
        title=f"What if {policy}: {', '.join(changes) or 'no change'} "
        f"({result.handoffs} handoffs, basis {result.actual.basis})"
    )
    table.add_column("measure")
    table.add_column("actual", justify="right")
    table.add_column("predicted", justify="right")
    for measure, actual, predicted in result.rows():
        table.add_row(measure, actual, predicted)
    out = console()
    out.print(table)
    for line in result.notes():
        out.print(line)


#: The commands :mod:`slakit.cli` mounts into the ``slakit`` group.
commands: list[click.Command] = [report, review, runbook, preflight, simulate]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _standalone() -> None:
    """slakit reporting commands."""


for _cmd in commands:
    _standalone.add_command(_cmd)


if __name__ == "__main__":
    _standalone()
