"""The ``slakit`` command line.

Every command reads ``--config`` (else ``$SLAKIT_CONFIG``, else
``./slakit.toml``); every read command has ``--json``; errors are one line on
stderr with exit code 2 for bad input or config and 1 for runtime failures.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click

import slakit
from slakit._cliutil import (
    Command,
    FiniteFloat,
    Group,
    at_option,
    check_window,
    config_option,
    console,
    fail,
    json_option,
    now_option,
    open_engine,
    output_option,
    output_stream,
    parse_iso,
    print_json,
    progress_bar,
)
from slakit._gc import paused
from slakit._text import escape_controls
from slakit._time import AMBIGUOUS_CHOICES, Ambiguous, localize
from slakit.errors import ConfigError, SlakitError, ValidationError
from slakit.handoff import _FIELD_NAMES
from slakit.records import OutboxItem, OutboxState

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(slakit.__version__, prog_name="slakit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """slakit: SLA timers with consequences, traced and measured.

    Start with `slakit demo`, then `slakit init` to write a slakit.toml.
    """
    if debug:
        logging.basicConfig(level=logging.DEBUG)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="slakit")


# -- init ---------------------------------------------------------------------------

INIT_TEMPLATE = """\
# slakit.toml: your SLA promises as data. Every key is described in docs/config.md.
# Check it with `slakit preflight`; read the runbook with `slakit runbook`.

[store]
adapter = "sqlite"                  # memory | sqlite | postgres (pip install slakit-postgres)
path = {db}                  # relative to this file

# Business hours: local wall-clock intervals in an IANA zone, plus holidays and closures.
[calendars.sales-east]
timezone = "America/New_York"
holidays = {{ country = "US" }}      # python-holidays; add subdiv = "NY" for state holidays
closed = ["RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24"]   # dates or RFC 5545 rules

[calendars.sales-east.hours]
mon = ["09:00-12:00", "13:00-17:00"]  # a lunch break is a gap between intervals
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

# Every qualified inbound lead gets a human response within 30 business minutes.
[policies.speed-to-lead]
calendar = "sales-east"
basis = "business"                  # business | wall
stop = "first_response"             # first_response | completion
sla_minutes = 30                    # default for records that carry none
backup_owner = "sales-lead"         # default backup for records that carry none
link = "https://crm.example.com/leads/{{id}}"
steps = [
  {{ at = "1x", do = ["notify:owner"] }},
  {{ at = "2x", do = ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"] }},
]
trigger = "Inbound form with qualified = true creates the lead"
target = "A human reply to the lead (call, e-mail or meeting booked)"
timer = "30 business minutes on the sales-east calendar"
trace = "CRM activity log and ops-log.jsonl"
consequence = "DM the owner at 1x; at 2x reassign to the backup and mark breached"
owner = "revops@example.com"
failure_modes = "Owner out of office; lead routed to the wrong team; form without owner"
rollback = "Set sla_minutes = 60 here and restart `slakit run`"
workflow = "https://n8n.example.com/workflow/speed-to-lead"
last_reviewed = {today}

# Every meeting gets its follow-up e-mail within one business day.
[policies.post-meeting-follow-up]
calendar = "sales-east"
basis = "business"
stop = "completion"
sla_minutes = 480
backup_owner = "sales-lead"
steps = [
  {{ at = "75%", do = ["notify:owner"] }},
  {{ at = "1x", do = ["notify:owner", "notify:backup"] }},
  {{ at = "2x", do = ["mark_breached", "notify:@sales-lead"] }},
]
trigger = "Meeting marked held in the calendar"
target = "Follow-up e-mail sent with notes and next step"
timer = "8 business hours"
trace = "CRM activity log and ops-log.jsonl"
consequence = "Remind the owner at 75%; at 1x tell owner and backup; at 2x tell the sales lead"
owner = "revops@example.com"
last_reviewed = {today}

# Why breaches happen; `slakit tag ID REASON` accepts only these.
[breach_reasons]
no_backup = "Nobody covered the owner's absence"
owner_out_of_office = "Owner was out and the record was not rerouted"
out_of_hours_arrival = "Arrived outside business hours and waited for opening"
routing_error = "Assigned to the wrong owner or team"
ambiguous_trigger = "Unclear whether the clock should have started"

# The weekly review (`slakit review`): weeks are cut, and times shown, in this zone.
[review]
timezone = "America/New_York"
weeks = 4                           # weeks of history beside the reviewed one

[[notifiers]]
adapter = "console"                 # slack | smtp | webhook via their packages

[[trace_sinks]]
adapter = "jsonl"                   # the ops log: one JSON line per action
path = "ops-log.jsonl"
"""


@cli.command(cls=Command)
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."), required=False
)
@click.option("--force", is_flag=True, help="Overwrite an existing slakit.toml.")
@click.option("--db", default="slakit.db", show_default=True, help="SQLite file name.")
def init(directory: Path, force: bool, db: str) -> None:
    """Write a commented slakit.toml with two playbook policies and create the database."""
    if not db.strip() or not db.isprintable():
        fail(f"--db must name a file, got {db!r}", 2)
    made_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "slakit.toml"
    if target.exists() and not force:
        fail(f"{target} already exists (use --force to overwrite)", 2)
    today = datetime.now(UTC).date().isoformat()
    # A JSON string is a valid TOML basic string: quotes and backslashes escaped.
    text = INIT_TEMPLATE.format(db=json.dumps(db), today=today)
    database = directory / db
    existed = {p for p in _db_files(database) if p.exists()}
    # The config is tried from a temporary name first: a database that cannot be
    # created leaves neither a config nor a half-made database behind.
    trial = directory / f".slakit.toml.{os.getpid()}.tmp"
    try:
        # O_EXCL: never through a link or into a file someone put there first.
        fd = os.open(trial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        fail(f"{trial} is in the way (left by another slakit init?); remove it", 2)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        from slakit.config import build_engine

        engine = build_engine(trial)
        engine.setup()
        engine.close()
        os.replace(trial, target)
    except BaseException:
        trial.unlink(missing_ok=True)
        for made in _db_files(database):
            if made not in existed:
                with contextlib.suppress(OSError):
                    made.unlink(missing_ok=True)
        if made_dir:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when still empty
        raise
    click.echo(f"wrote {target} and created {database}")
    click.echo(f"next: slakit preflight --config {target}")


def _db_files(database: Path) -> list[Path]:
    return [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]


# -- events -------------------------------------------------------------------------


def _attrs(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} must be KEY=VALUE", param_hint="--attr")
        out[key] = value
    return out


def _echo_handoff(h: slakit.Handoff, as_json: bool) -> None:
    if as_json:
        print_json(h.to_dict())
        return
    due = h.next_due_at.isoformat() if h.next_due_at else "-"
    click.echo(f"{h.id}  {h.status}  owner={h.owner}  stage={h.stage}  next_due={due}")


@cli.command(cls=Command)
@click.argument("id")
@click.option("--policy", default=None, help="Policy name (optional when only one).")
@click.option("--owner", default=None, help="Who must respond.")
@click.option("--backup", "backup_owner", default=None, help="Who takes over at escalation.")
@click.option("--sla-minutes", type=float, default=None, help="This record's SLA.")
@click.option(
    "--started-at",
    callback=parse_iso,
    default=None,
    metavar="ISO-8601",
    help="When the clock started (default: now).",
)
@click.option("--channel", default=None, help="Where it came from (web, phone…), for grouping.")
@click.option("--segment", default=None, help="Which segment it belongs to, for grouping.")
@click.option(
    "--trace-id",
    default=None,
    help="Id that ties its trace lines together; a W3C trace id (32 hex digits) also joins "
    "the OpenTelemetry trace of that request (default: generated).",
)
@click.option("--attr", "attrs_", multiple=True, metavar="KEY=VALUE", help="Extra attribute.")
@config_option
@json_option
def start(
    id: str,
    policy: str | None,
    owner: str | None,
    backup_owner: str | None,
    sla_minutes: float | None,
    started_at: datetime | None,
    channel: str | None,
    segment: str | None,
    trace_id: str | None,
    attrs_: tuple[str, ...],
    config: Path | None,
    as_json: bool,
) -> None:
    """Start a handoff's clock."""
    attributes = _attrs(attrs_)
    with open_engine(config) as engine:
        h = engine.start(
            id,
            policy=policy,
            owner=owner,
            backup_owner=backup_owner,
            sla_minutes=sla_minutes,
            started_at=started_at,
            trace_id=trace_id,
            channel=channel,
            segment=segment,
            attributes=attributes,
        )
    _echo_handoff(h, as_json)


#: Why an event left a handoff as it was (the engine returns it unchanged).
_UNCHANGED = {
    "respond": "it already has a response",
    "complete": "it is already completed",
    "cancel": "it is already cancelled",
    "pause": "it is already paused",
    "resume": "it is not paused",
}


def _event_command(name: str, doc: str, extra: list[Any] | None = None) -> None:
    def body(id: str, config: Path | None, as_json: bool, at: datetime | None, **kw: Any) -> None:
        with open_engine(config, existing=True) as engine:
            before = engine.get(id)
            h = getattr(engine, name)(id, at=at, **kw)
        if h.version == before.version:
            # A repeat is not an error (scripts and webhooks retry), but say so: a
            # second time given here was not recorded.
            click.echo(f"note: {id}: nothing changed, {_UNCHANGED[name]}", err=True)
        _echo_handoff(h, as_json)

    body.__doc__ = doc
    body.__name__ = name
    fn: Any = body
    for opt in reversed(extra or []):
        fn = opt(fn)
    fn = at_option()(fn)
    fn = json_option(fn)
    fn = config_option(fn)
    fn = click.argument("id")(fn)
    cli.command(name, cls=Command)(fn)


_event_command(
    "respond",
    "Record the first human response.",
    [click.option("--by", default=None, help="Who responded.")],
)
_event_command("complete", "Record completion (stops the clock).")
_event_command(
    "cancel",
    "Cancel a handoff (excluded from hit rate).",
    [click.option("--reason", default=None, help="Why it was cancelled.")],
)
_event_command("pause", "Pause the clock.")
_event_command("resume", "Resume a paused clock.")


@cli.command(cls=Command)
@click.argument("id")
@click.argument("reason")
@config_option
@json_option
def tag(id: str, reason: str, config: Path | None, as_json: bool) -> None:
    """Tag a handoff's breach reason (from [breach_reasons])."""
    with open_engine(config, existing=True) as engine:
        h = engine.tag_breach(id, reason)
    _echo_handoff(h, as_json)


@cli.command(cls=Command)
@click.argument("id")
@config_option
@json_option
def show(id: str, config: Path | None, as_json: bool) -> None:
    """Show a handoff and its trace."""
    with open_engine(config, existing=True) as engine:
        h = engine.get(id)
        traces = engine.store.traces(id)
        escalations = engine.store.escalations(id)
        outbox = engine.store.outbox(id)
    if as_json:
        print_json(
            {
                "handoff": h.to_dict(),
                "escalations": [
                    {
                        "stage": e.stage,
                        "step": e.step,
                        "outcome": e.outcome,
                        "applied_at": e.applied_at.isoformat(),
                        "actions": list(e.actions),
                    }
                    for e in escalations
                ],
                "outbox": [
                    {
                        "idempotency_key": o.notification.idempotency_key,
                        "notifier": o.notification.notifier,
                        "state": o.state,
                        "attempts": o.attempts,
                        "last_error": o.last_error,
                    }
                    for o in outbox
                ],
                "trace": [t.to_dict() for t in traces],
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    con = console()
    info = Table(show_header=False, box=None)
    for key, value in h.to_dict().items():
        if value not in (None, {}, "", 0.0) or key in ("breached", "stage"):
            info.add_row(Text(key, style="bold"), str(value))
    con.print(info)
    if escalations:
        steps = Table(title="escalations", title_justify="left")
        for col in ("stage", "step", "outcome", "applied at", "actions"):
            steps.add_column(col)
        for e in escalations:
            steps.add_row(
                str(e.stage), e.step, e.outcome, e.applied_at.isoformat(), ", ".join(e.actions)
            )
        con.print(steps)
    if outbox:
        notes = Table(title="outbox", title_justify="left")
        for col in ("key", "notifier", "state", "attempts", "last error"):
            notes.add_column(col)
        for o in outbox:
            notes.add_row(
                o.notification.idempotency_key,
                o.notification.notifier,
                o.state,
                str(o.attempts),
                o.last_error or "",
            )
        con.print(notes)
    table = Table(title="trace", title_justify="left")
    for col in ("at", "rule", "action", "actor", "outcome", "detail"):
        table.add_column(col)
    for t in traces:
        detail = ", ".join(f"{k}={v}" for k, v in t.detail.items())
        table.add_row(t.at.isoformat(), t.rule, t.action, t.actor, t.outcome, detail)
    con.print(table)


# -- check / deliver / run ----------------------------------------------------------


@cli.command(cls=Command)
@now_option
@config_option
@json_option
def check(now: datetime | None, config: Path | None, as_json: bool) -> None:
    """Apply every step that is due (each exactly once)."""
    with open_engine(config, senders=True) as engine:
        result = engine.check(now)
    if as_json:
        print_json(
            {
                "now": result.now.isoformat(),
                "applied": [
                    {
                        "handoff_id": a.handoff_id,
                        "stage": a.stage,
                        "step": a.step,
                        "actions": list(a.actions),
                        "outcome": a.outcome,
                        "due_at": a.due_at.isoformat(),
                    }
                    for a in result.applied
                ],
                "lost": result.lost,
                "errors": list(result.errors),
            }
        )
        if result.errors:
            sys.exit(1)  # as in text mode: a cron job reading the JSON must see it
        return
    for a in result.applied:
        click.echo(f"{a.handoff_id}  step {a.step}  {a.outcome}  {', '.join(a.actions)}")
    click.echo(f"{result.count} step(s) applied, {result.lost} lost, {len(result.errors)} errors")
    if result.errors:
        for err in result.errors:
            click.echo(f"error: {err}", err=True)
        sys.exit(1)


@cli.command(cls=Command)
@now_option
@config_option
@json_option
def deliver(now: datetime | None, config: Path | None, as_json: bool) -> None:
    """Send due notifications from the outbox."""
    # With --json, stdout holds the JSON alone: the console notifier's lines go to stderr.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with open_engine(config, senders=True) as engine, quiet_stdout:
        result = engine.deliver(now)
    data = {
        "now": result.now.isoformat(),
        "sent": result.sent,
        "retried": result.retried,
        "dead": result.dead,
        "lost": result.lost,
    }
    if as_json:
        print_json(data)
    else:
        click.echo(
            f"{result.sent} sent, {result.retried} to retry, {result.dead} dead-lettered, "
            f"{result.lost} lost"
        )


def _outbox_row(item: OutboxItem) -> dict[str, Any]:
    n = item.notification
    return {
        "idempotency_key": n.idempotency_key,
        "notifier": n.notifier,
        "recipient": n.recipient,
        "handoff_id": n.handoff_id,
        "stage": n.stage,
        "step": n.step,
        "action": n.action,
        "created_at": n.created_at.isoformat(),
        "state": item.state,
        "attempts": item.attempts,
        "next_attempt_at": None
        if item.next_attempt_at is None
        else item.next_attempt_at.isoformat(),
        "last_error": item.last_error,
    }


_STATES = click.Choice([OutboxState.PENDING, OutboxState.SENT, OutboxState.DEAD])


@cli.command(cls=Command)
@click.option("--state", type=_STATES, default=None, help="Only rows in this state.")
@click.option("--handoff", "handoff_id", default=None, metavar="ID", help="Only this handoff.")
@click.option("--notifier", default=None, metavar="NAME", help="Only this notifier's rows.")
@config_option
@json_option
def outbox(
    state: str | None,
    handoff_id: str | None,
    notifier: str | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """List the outbox: each notification's state, attempts and last error.

    Dead-lettered rows (`--state dead`) can be sent again with `slakit requeue`.
    """
    with open_engine(config, existing=True) as engine:
        if handoff_id is not None:
            engine.get(handoff_id)  # an unknown id is an error, not an empty list
        items = [
            i
            for i in engine.store.outbox(handoff_id, state)
            if notifier is None or i.notification.notifier == notifier
        ]
    if as_json:
        print_json([_outbox_row(i) for i in items])
        return
    from rich.table import Table

    table = Table(box=None)
    for col in ("key", "notifier", "state", "attempts", "next attempt", "last error"):
        table.add_column(col)
    for i in items:
        row = _outbox_row(i)
        table.add_row(
            row["idempotency_key"],
            row["notifier"],
            row["state"],
            str(row["attempts"]),
            row["next_attempt_at"] or "",
            row["last_error"] or "",
        )
    con = console()
    if items:
        con.print(table)
    counts = {s: sum(1 for i in items if i.state == s) for s in _STATES.choices}
    con.print(
        f"{len(items)} row(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()),
        highlight=False,
    )


@cli.command(cls=Command)
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option("--handoff", "handoff_id", default=None, metavar="ID", help="This handoff's rows.")
@click.option("--notifier", default=None, metavar="NAME", help="Only this notifier's rows.")
@click.option("--all", "every", is_flag=True, help="Every dead row (narrowed by the options).")
@click.option("--by", default=None, help="Who requeues (the trace line's actor).")
@click.option(
    "--open-only",
    is_flag=True,
    help="Leave out rows whose handoff has been answered, completed or cancelled since.",
)
@click.option("--dry-run", is_flag=True, help="List what would be requeued; change nothing.")
@now_option
@config_option
@json_option
def requeue(
    keys: tuple[str, ...],
    handoff_id: str | None,
    notifier: str | None,
    every: bool,
    by: str | None,
    open_only: bool,
    dry_run: bool,
    now: datetime | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Put dead-lettered notifications back in the queue.

    Name the rows by idempotency KEY (see `slakit outbox --state dead`), by
    `--handoff`, or take `--all`. Each goes back to pending with a fresh
    attempt budget and its old key, and a trace line records who requeued
    it; `slakit deliver` (or a running `slakit run`) sends it.
    """
    if not keys and handoff_id is None and not every:
        raise click.UsageError("name the rows to requeue: KEY..., --handoff ID or --all")
    with open_engine(config, existing=True, senders=True) as engine:
        items = engine.requeue_dead(
            keys=keys or None,
            handoff_id=handoff_id,
            notifier=notifier,
            now=now,
            by=by,
            open_only=open_only,
            dry_run=dry_run,
        )
    if as_json:
        print_json({"dry_run": dry_run, "requeued": [_outbox_row(i) for i in items]})
        return
    for i in items:
        n = i.notification
        # last_error is a receiver's answer: shown, not obeyed by the terminal.
        click.echo(
            escape_controls(
                f"{n.idempotency_key}  {n.notifier}  after {i.attempts} attempt(s): {i.last_error}"
            )
        )
    if dry_run:
        click.echo(f"would requeue {len(items)} dead notification(s)")
    elif items:
        click.echo(f"requeued {len(items)} dead notification(s); `slakit deliver` sends them")
    else:
        click.echo("no dead notification matches; nothing requeued")


@cli.command(cls=Command)
@click.option(
    "--before",
    callback=parse_iso,
    required=True,
    metavar="ISO-8601",
    help="Purge handoffs stopped or cancelled before this instant.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
@json_option
def purge(before: datetime, dry_run: bool, yes: bool, config: Path | None, as_json: bool) -> None:
    """Delete handoffs that ended before --before, with all their rows.

    A handoff stopped or cancelled before --before, with no notification left
    to send, is deleted together with its escalations, outbox rows and trace
    lines, a batch of handoffs per transaction. Open and paused handoffs stay.
    Reports no longer count what is purged: export it first (`slakit export
    --until ...`). Asks before deleting unless --yes is given.
    """
    with open_engine(config, existing=True) as engine:
        planned = engine.purge(before, dry_run=True)
        done = planned
        if not dry_run and planned.handoffs:
            if not yes:
                if sys.stdin is None or not sys.stdin.isatty():
                    raise click.UsageError("pass --yes to purge without a prompt")
                rows = planned.escalations + planned.outbox + planned.traces
                click.confirm(
                    f"Delete {planned.handoffs:,} handoff(s) that ended before "
                    f"{before.isoformat()}, with {rows:,} row(s) of theirs?",
                    abort=True,
                )
            with progress_bar(disable=as_json or planned.handoffs < 1000) as bar:
                task = bar.add_task("purging", total=planned.handoffs)
                done = engine.purge(before, progress=lambda c: bar.advance(task, c.handoffs))
    if as_json:
        print_json({"dry_run": dry_run, "before": before.isoformat(), **done.to_dict()})
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {done.handoffs:,} handoff(s) that ended before {before.isoformat()}: "
        f"{done.escalations:,} escalation(s), {done.outbox:,} outbox row(s), "
        f"{done.traces:,} trace line(s)"
    )


def _age(delta: timedelta) -> str:
    """A duration as people say it: ``2d 3h``, ``14m 5s``, ``40s``."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@cli.command(cls=Command)
@click.option(
    "--max-lag",
    type=FiniteFloat(min=0),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Fail when a due step or notification has waited longer than this.",
)
@click.option(
    "--max-dead",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Fail when more than N notifications are dead-lettered (default: never).",
)
@now_option
@config_option
@json_option
def status(
    max_lag: float,
    max_dead: int | None,
    now: datetime | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Is slakit keeping up? The store's backlogs and how long they have waited.

    Exits 1, saying why, when a due step or notification has waited more than
    --max-lag seconds (no `slakit run` is working the store, or too few) or
    when dead letters pass --max-dead; 0 otherwise. Meant for cron and
    monitoring checks as much as for people.
    """
    with open_engine(config, existing=True) as engine:
        s = engine.summary(now)
    problems: list[str] = []
    if s.due and s.step_lag.total_seconds() > max_lag:
        problems.append(
            f"{s.due} step(s) due, the oldest for {_age(s.step_lag)} "
            f"(since {s.oldest_due_at.isoformat() if s.oldest_due_at else '?'}): "
            "is `slakit run` running?"
        )
    if s.outbox_due and s.delivery_lag.total_seconds() > max_lag:
        problems.append(
            f"{s.outbox_due} notification(s) due, the oldest for {_age(s.delivery_lag)}: "
            "is `slakit run` running?"
        )
    if max_dead is not None and s.outbox_dead > max_dead:
        problems.append(
            f"{s.outbox_dead} dead-lettered notification(s), more than {max_dead}: "
            "see `slakit outbox --state dead`, then `slakit requeue`"
        )
    if as_json:
        print_json(
            {
                **s.to_dict(),
                "max_lag_seconds": max_lag,
                "max_dead": max_dead,
                "ok": not problems,
                "problems": problems,
            }
        )
    else:
        upcoming = (
            f"next at {s.next_due_at.isoformat()} (in {_age(s.next_due_at - s.now)})"
            if s.next_due_at is not None
            else "nothing due later"
        )
        due = f", the oldest for {_age(s.step_lag)}" if s.due else ""
        outbox_due = f", the oldest for {_age(s.delivery_lag)}" if s.outbox_due else ""
        click.echo(f"handoffs  {s.handoffs:,} stored, {s.timers:,} timer(s) running")
        click.echo(f"steps     {s.due:,} due{due}; {upcoming}")
        click.echo(
            f"outbox    {s.outbox_pending:,} pending, {s.outbox_due:,} due{outbox_due}; "
            f"{s.outbox_dead:,} dead"
        )
        for line in problems:
            click.echo(f"problem: {line}")
        if not problems:
            click.echo("ok")
    if problems:
        raise click.exceptions.Exit(1)


@cli.command(cls=Command)
@click.option(
    "--interval",
    type=FiniteFloat(min=0.05, max=86400),
    default=60.0,
    show_default=True,
    help="Longest sleep between ticks, in seconds (at most a day).",
)
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@config_option
def run(interval: float, once: bool, config: Path | None) -> None:
    """Loop: check + deliver, sleep until the next due time.

    SIGTERM, SIGINT (Ctrl-C) and SIGHUP stop it after the transaction in flight (exit 0).
    """
    log = logging.getLogger("slakit.run")
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    # Set up inside the loop, after the signal handlers: a store down or locked at
    # start is an outage to wait out (and to stop during), as it is later on.
    with open_engine(config, setup=False, senders=True) as engine:

        def _stop(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping after the current tick", signal.Signals(signum).name)
            engine.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if hasattr(signal, "SIGHUP"):  # a closed terminal; not on Windows
            signal.signal(signal.SIGHUP, _stop)
        # Stores with a wake-up channel (PostgreSQL LISTEN/NOTIFY) cut sleeps short.
        stop_listening = threading.Event()
        listener = getattr(engine.store, "listen", None)
        if callable(listener):
            try:
                listener(engine, stop_listening)
            except SlakitError as exc:
                log.warning("wake-ups disabled: %s", exc)

        def on_tick(c: slakit.CheckResult, d: slakit.DeliveryResult) -> None:
            log.info(
                "tick: %d applied, %d lost, %d sent, %d retry, %d dead",
                c.count,
                c.lost,
                d.sent,
                d.retried,
                d.dead,
            )

        log.info("slakit run: worker %s, interval %.1fs", engine.worker_id, interval)
        try:
            ticks = engine.run(interval=interval, max_ticks=1 if once else None, on_tick=on_tick)
        finally:
            stop_listening.set()
        log.info("stopped after %d tick(s)", ticks)


# -- import / export ----------------------------------------------------------------

_TIME_COLUMNS = ("started_at", "first_response_at", "completed_at", "cancelled_at")
_KNOWN_COLUMNS = (
    "id",
    "policy",
    "owner",
    "backup_owner",
    "sla_minutes",
    "started_at",
    "first_response_at",
    "responded_by",
    "completed_at",
    "cancelled_at",
    "cancel_reason",
    "channel",
    "segment",
    "trace_id",
)


#: The columns ``slakit export --format csv`` writes that an import cannot take:
#: state the engine derives (timers, elapsed times, stage, status) or keeps
#: itself. In a file that is such an export they are left out, not kept as
#: attributes.
_EXPORT_ONLY = tuple(
    f for f in (*_FIELD_NAMES, "status") if f not in _KNOWN_COLUMNS and f != "attributes"
)
#: The field a left-out column maps to.
_SKIP = ""


def _attributes_cell(value: str) -> dict[str, Any]:
    """An ``attributes`` cell: a JSON object, as ``slakit export`` writes it."""
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested a thousand levels deep
        data = None
    if not isinstance(data, dict):
        raise ValidationError(
            f'attributes must be a JSON object such as {{"company": "Acme"}}, got {value!r}',
            field="attributes",
            value=value,
        )
    return data


def _parse_row(
    row: dict[str, str],
    mapping: dict[str, str],
    default_tz: tzinfo | None,
    time_format: str | None = None,
    ambiguous: Ambiguous = "reject",
) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for col, raw in row.items():
        if col is None:
            raise ValidationError("row has more fields than the header", field="row", value=raw)
        if not col.strip():
            continue  # a column with no name (a header ending in a delimiter): nothing to keep
        if raw is None:  # csv fills the columns a short row lacks with None
            raise ValidationError(
                f"row has fewer fields than the header (no {col!r})", field="row", value=col
            )
        field = mapping.get(col, col)
        value: Any = raw.strip() if isinstance(raw, str) else raw
        if value in ("", None) or field == _SKIP:
            continue
        if field == "attributes":
            value = _attributes_cell(value)
        elif field in _TIME_COLUMNS:
            try:
                if time_format is None:
                    parsed = datetime.fromisoformat(value)
                else:
                    parsed = datetime.strptime(value, time_format)
            except ValueError:
                expected = "ISO-8601" if time_format is None else f"in the form {time_format!r}"
                raise ValidationError(
                    f"{field} must be {expected}, got {value!r}", field=field, value=value
                ) from None
            if parsed.tzinfo is None:
                if default_tz is None:
                    raise ValidationError(
                        f"{field} {value!r} has no UTC offset; add one (e.g. -05:00 or Z) "
                        "or pass --tz ZONE",
                        field=field,
                        value=value,
                    )
                parsed = localize(field, parsed, default_tz, ambiguous, value)
            value = parsed
        elif field == "sla_minutes":
            try:
                value = float(value)
            except ValueError:
                raise ValidationError(
                    f"sla_minutes must be a number, got {value!r}", field=field, value=value
                ) from None
        rec[field] = value
    return rec


#: Delimiters a header line is tried with, for files whose delimiter is not given.
_DELIMITERS = (",", ";", "\t", "|")


#: Invalid rows listed one per line on stderr before the rest are counted.
ROW_ERRORS_SHOWN = 20


def _row_errors(errors: Sequence[str]) -> None:
    """Each invalid row on stderr, up to :data:`ROW_ERRORS_SHOWN`, then how many more."""
    for err in errors[:ROW_ERRORS_SHOWN]:
        click.echo(f"Error: {err}", err=True)
    if len(errors) > ROW_ERRORS_SHOWN:
        click.echo(
            f"Error: … and {len(errors) - ROW_ERRORS_SHOWN} more invalid row(s) "
            "(--json lists every one)",
            err=True,
        )


def _read_csv(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            if not reader.fieldnames:
                raise ValidationError(f"{path} has no header row", field="file", value=str(path))
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError:
            raise _not_utf8(path, str(path)) from None
        except csv.Error as exc:  # a field past csv's 128 KiB limit, a NUL…
            raise ValidationError(
                f"{path}:{reader.line_num + 1}: cannot read the CSV: {exc}",
                field="file",
                value=str(path),
            ) from None


def _not_utf8(path: Path, name: str) -> ValidationError:
    """The error for a file that is not UTF-8, naming the first line that is not."""
    line, byte = 0, ""
    with path.open("rb") as raw:
        for line, data in enumerate(raw, start=1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = f"byte 0x{data[exc.start : exc.start + 1].hex()} on line {line}"
                break
    return ValidationError(
        f"{name} is not UTF-8 text ({byte or 'an incomplete character at the end'}); "
        "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE`",
        field="file",
        value=name,
    )


def _csv_header(path: Path, given: str | None, name: str | None = None) -> tuple[str, list[str]]:
    """The delimiter (``given``, else the candidate the header line holds most of,
    ``,`` by default) and the header's column names; ``name`` is the file as messages show it."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        delimiter = given
        if delimiter is None:
            try:
                line = fh.readline()
            except UnicodeDecodeError:
                raise _not_utf8(path, name or str(path)) from None
            counts = {d: line.count(d) for d in _DELIMITERS}
            best = max(_DELIMITERS, key=lambda d: counts[d])
            delimiter = best if counts[best] else ","
            fh.seek(0)
        try:
            header = next(csv.reader(fh, delimiter=delimiter), None)
        except UnicodeDecodeError:
            raise _not_utf8(path, name or str(path)) from None
    if not header:
        shown = name or str(path)
        raise ValidationError(f"{shown} has no header row", field="file", value=shown)
    return delimiter, header


def _column_fields(
    path: Path | str, header: Sequence[str], mapping: dict[str, str]
) -> dict[str, str]:
    """The field each column fills: ``mapping``, else its own name, else its name
    spelt another way (``Started At``, ``OWNER``, ``backup-owner``) when that is a
    handoff field no other column takes. Any other column is an attribute.

    :raises ValidationError: when no column gives ``id``, or two give one field.
    """
    taken = {mapping.get(col, col) for col in header}
    fields: dict[str, str] = {}
    for col in header:
        field = mapping.get(col, col)
        if field == col and col not in _KNOWN_COLUMNS:
            normal = "_".join(re.findall(r"[0-9a-z]+", col.lower()))
            if normal in _KNOWN_COLUMNS and normal not in taken:
                field = normal
                taken.add(normal)
        fields[col] = field
    seen: dict[str, str] = {}
    for col, field in fields.items():
        if field in _KNOWN_COLUMNS and field in seen:
            raise ValidationError(
                f"{path}: columns {seen[field]!r} and {col!r} both give {field!r}; "
                "rename one with --map",
                field="map",
                value=field,
            )
        seen[field] = col
    if "id" not in seen:
        raise ValidationError(
            f"{path}: no column gives the handoff 'id' (columns: {', '.join(header)}); "
            "name it with --map COLUMN=id",
            field="id",
            value=None,
        )
    return fields


@contextlib.contextmanager
def _interrupt_after_import(written: list[int]) -> Iterator[None]:
    """An interrupt once every batch is in (``written`` holds the count), while the
    store closes: one line saying nothing is missing, exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        if not written:
            raise
        click.echo(
            f"\nInterrupted after the import: all {written[0]} handoff(s) were imported.",
            err=True,
        )
        raise click.exceptions.Exit(130) from None


def _nonzero(cell: str | None) -> bool:
    """Whether an export's paused-time cell holds time (a number above zero)."""
    try:
        return cell is not None and float(cell) > 0
    except ValueError:
        return False


@contextlib.contextmanager
def _spooled(file: Path) -> Iterator[tuple[Path, str]]:
    """``file`` and its name for messages; ``-`` is standard input, spooled to a
    temporary file (an import reads its file twice: to count rows, then to load)."""
    if str(file) != "-":
        yield file, str(file)
        return
    import tempfile

    stream = sys.stdin
    if stream is None:
        raise click.UsageError("standard input is closed: nothing to import from `-`")
    with tempfile.TemporaryDirectory(prefix="slakit-import-") as tmp:
        spool = Path(tmp) / "stdin.csv"
        with spool.open("w", encoding="utf-8", newline="") as out:
            while chunk := stream.read(1 << 16):
                out.write(chunk)
        yield spool, "<stdin>"


@cli.command("import", cls=Command)
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Rename a CSV column to a handoff field (e.g. --map 'Lead ID=id').",
)
@click.option("--policy", default=None, help="Policy for rows without a policy column.")
@click.option("--tz", default=None, help="Zone for timestamps without an offset (e.g. UTC).")
@click.option(
    "--ambiguous",
    type=click.Choice(AMBIGUOUS_CHOICES),
    default=None,
    help="A time without an offset that --tz read twice (clocks went back): "
    "reject the row (default), or take the earlier or the later instant.",
)
@click.option(
    "--time-format",
    default=None,
    metavar="FORMAT",
    help="strptime format of the timestamps (e.g. '%m/%d/%Y %I:%M %p'; default ISO-8601).",
)
@click.option(
    "--delimiter",
    default=None,
    metavar="CHAR",
    help="Field delimiter: one character, or 'tab' (default: found from the header).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows and report the invalid ones (exit 1 if any).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Handoffs written per transaction.",
)
@click.option("--dry-run", is_flag=True, help="Validate every row and report; write nothing.")
@config_option
@json_option
def import_(
    file: Path,
    maps: tuple[str, ...],
    policy: str | None,
    tz: str | None,
    ambiguous: Ambiguous | None,
    time_format: str | None,
    delimiter: str | None,
    skip_invalid: bool,
    batch_size: int,
    dry_run: bool,
    config: Path | None,
    as_json: bool,
) -> None:
    """Backfill history from a CSV export (one row per handoff).

    Columns named like handoff fields (id, policy, owner, backup_owner,
    sla_minutes, started_at, first_response_at, completed_at, cancelled_at,
    channel, segment…) are used as such; other columns become attributes.
    By default the import is all-or-nothing: any invalid row is reported by
    line number and nothing is written. A row whose id is stored already is
    skipped when it describes the same start (so a file can be imported
    again), and invalid when it does not. A `[import]` table in the config
    may keep the column `map`, the default `policy`, `tz`,
    `ambiguous`, `time_format` and `delimiter`; options given here win.
    Headers in another case or spacing (`Started At`) fill the field they
    spell. A time without an offset that `--tz` skipped (a spring-forward
    gap) is an invalid row; one it read twice (fall-back) is too, unless
    `--ambiguous` says which instant it means.
    """
    from slakit.config import find_config, load_config

    settings = load_config(find_config(config))[0].get("import") or {}
    saved = settings.get("map") or {}
    if not isinstance(saved, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in saved.items()
    ):
        raise ConfigError(
            f"[import] map must be a table of column = field, got {saved!r}",
            field="import.map",
            value=saved,
        )
    mapping: dict[str, str] = dict(saved)
    policy = policy if policy is not None else settings.get("policy")
    tz = tz if tz is not None else settings.get("tz")
    ambiguous = ambiguous if ambiguous is not None else settings.get("ambiguous", "reject")
    if ambiguous not in AMBIGUOUS_CHOICES:
        raise ConfigError(
            f"[import] ambiguous must be one of {', '.join(AMBIGUOUS_CHOICES)}, got {ambiguous!r}",
            field="import.ambiguous",
            value=ambiguous,
        )
    for m in maps:
        src, sep, dst = m.partition("=")
        if not sep or not src or not dst:
            raise click.BadParameter(f"{m!r} must be COLUMN=FIELD", param_hint="--map")
        mapping[src] = dst
    time_format = time_format if time_format is not None else settings.get("time_format")
    if time_format is not None and (not isinstance(time_format, str) or "%" not in time_format):
        raise click.BadParameter(
            f"must be a strptime format such as '%m/%d/%Y %H:%M', got {time_format!r}",
            param_hint="--time-format",
        )
    delimiter = delimiter if delimiter is not None else settings.get("delimiter")
    if delimiter is not None:
        if isinstance(delimiter, str) and delimiter.lower() == "tab":
            delimiter = "\t"
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise click.BadParameter(
                f"must be one character or 'tab', got {delimiter!r}", param_hint="--delimiter"
            )
    # Standard input is spooled to a file click removes when the command ends.
    file, shown = click.get_current_context().with_resource(_spooled(file))
    sep, header = _csv_header(file, delimiter, shown)
    if header[0].lstrip().startswith("{"):
        raise ValidationError(
            f"{shown} looks like JSON lines (the default of slakit export); import reads "
            "CSV: write the export with --format csv",
            field="file",
            value=shown,
        )
    for m in maps:
        src, _, dst = m.partition("=")
        if src not in header:
            raise click.BadParameter(
                f"{m!r}: {shown} has no column {src!r} (columns: {', '.join(header)})",
                param_hint="--map",
            )
        if dst not in _KNOWN_COLUMNS and dst != "attributes":
            near = difflib.get_close_matches(dst, _KNOWN_COLUMNS, n=1, cutoff=0.75)
            if near:
                click.echo(
                    f"note: --map {m!r}: {dst!r} is not a handoff field, so the column is "
                    f"kept as attribute {dst!r}; did you mean {near[0]!r}?",
                    err=True,
                )
    columns = _column_fields(shown, header, mapping)
    if "started_at" not in columns.values():
        click.echo(
            f"note: no column of {shown} gives 'started_at' (columns: {', '.join(header)}): "
            "every handoff starts at the time of the import; to backfill history, name the "
            "start column with --map COLUMN=started_at",
            err=True,
        )
    paused_columns: list[str] = []
    if set(_EXPORT_ONLY) <= set(columns.values()):
        # A file `slakit export --format csv` wrote: its derived columns are
        # recomputed, so they are left out instead of becoming attributes.
        paused_columns = [
            c for c, f in columns.items() if f in ("paused_seconds", "paused_business_seconds")
        ]
        for col, field in columns.items():
            if field in _EXPORT_ONLY:
                columns[col] = _SKIP
        click.echo(
            f"note: {shown} is a slakit export; each record is started again from its "
            "start and history (response, completion, cancel): stage, pauses and "
            "breaches are not carried over, and steps already due fire at the next check",
            err=True,
        )
    id_column = next(c for c, f in columns.items() if f == "id")  # _column_fields checked
    default_tz: tzinfo | None = None
    if tz is not None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            default_tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone {tz!r}", param_hint="--tz") from None
    from slakit.engine import _first_difference

    total = sum(1 for _ in _read_csv(file, sep))
    problems: list[tuple[int, str]] = []
    good: list[tuple[int, tuple[slakit.Handoff, list[slakit.TraceRecord]]]] = []
    written: list[int] = []  # how many were imported, once every batch is
    with (
        _interrupt_after_import(written),
        open_engine(config) as engine,
        progress_bar(disable=as_json or total < 1000) as bar,
        paused(),
    ):
        task = bar.add_task("validating", total=total)
        now = engine.clock.now()
        seen: dict[str, int] = {}
        paused_ids: set[str] = set()
        for line, row in _read_csv(file, sep):
            if paused_columns and any(_nonzero(row.get(c)) for c in paused_columns):
                paused_ids.add((row.get(id_column) or "").strip())
            try:
                rec = _parse_row(row, columns, default_tz, time_format, ambiguous)
                if policy is not None:
                    rec.setdefault("policy", policy)
                prepared = engine.prepare(rec, now=now)
                if prepared[0].id in seen:
                    raise ValidationError(
                        f"id {prepared[0].id!r} appears twice in the file "
                        f"(first on line {seen[prepared[0].id]})",
                        field="id",
                        value=prepared[0].id,
                    )
                seen[prepared[0].id] = line
                good.append((line, prepared))
            except SlakitError as exc:
                problems.append((line, " ".join(str(exc).split())))
            bar.advance(task)
        # Ids stored already: the same start again is skipped, so an import can be
        # re-run; another record under a stored id is an invalid row. Checked before
        # anything is written, so a conflict cannot leave the import half-written.
        bar.update(task, description="checking ids", completed=0, total=len(good))
        fresh: list[tuple[slakit.Handoff, list[slakit.TraceRecord]]] = []
        present = 0
        for lo in range(0, len(good), 1000):
            chunk = good[lo : lo + 1000]
            stored = engine.store.get_many(p[0].id for _, p in chunk)
            for line, prepared in chunk:
                old = stored.get(prepared[0].id)
                if old is None:
                    fresh.append(prepared)
                elif engine.same_start(old, prepared[0]):
                    present += 1
                else:
                    problems.append(
                        (
                            line,
                            f"handoff id {old.id!r} already exists with different content "
                            f"({_first_difference(engine.as_started(old), prepared[0])})",
                        )
                    )
            bar.advance(task, len(chunk))
        problems.sort(key=lambda p: p[0])
        errors = [f"{shown}:{line}: {text}" for line, text in problems]
        if errors and not skip_invalid:
            _row_errors(errors)
            click.echo(
                f"Error: {len(errors)} invalid row(s); nothing imported "
                "(use --skip-invalid to import the valid rows)",
                err=True,
            )
            if as_json:
                print_json(
                    {
                        "dry_run": dry_run,
                        "imported": 0,
                        "already_present": present,
                        "invalid": len(errors),
                        "errors": errors,
                    }
                )
            sys.exit(2)
        imported = 0
        if not dry_run:
            bar.update(task, description="importing", completed=0, total=len(fresh))
            try:
                for i in range(0, len(fresh), batch_size):
                    batch = fresh[i : i + batch_size]
                    try:
                        imported += engine.start_prepared(batch)
                    except SlakitError as exc:  # another writer stored one of these ids
                        fail(f"{exc}; {imported} handoff(s) were imported before it", 1)
                    bar.advance(task, len(batch))
            except KeyboardInterrupt:
                bar.stop()
                click.echo(
                    f"\nInterrupted: {imported} of {len(fresh)} handoff(s) were imported, in "
                    "whole batches; run the same import again for the rest (rows stored "
                    "already are skipped).",
                    err=True,
                )
                raise click.exceptions.Exit(130) from None
        if not dry_run:
            written.append(imported)
    _row_errors(errors)
    paused_ids &= {h.id for h, _ in fresh}
    if paused_ids:
        click.echo(
            f"note: {len(paused_ids)} of the records {'to import' if dry_run else 'imported'} "
            "had pauses, which are not carried over: each is judged as if its clock never "
            f"stopped, so one that met only thanks to a pause now counts as missed "
            f"(e.g. {min(paused_ids)!r})",
            err=True,
        )
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "imported": len(fresh) if dry_run else imported,
                "already_present": present,
                "invalid": len(errors),
                "errors": errors,
            }
        )
    else:
        verb = "would import" if dry_run else "imported"
        count = len(fresh) if dry_run else imported
        already = f"; {present} already present" if present else ""
        click.echo(f"{verb} {count} handoff(s) from {shown}{already}; {len(errors)} invalid row(s)")
    if errors:
        sys.exit(1)


@cli.command(cls=Command)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSON lines (one handoff per line) or CSV that `slakit import` reads back.",
)
@click.option(
    "--since",
    callback=parse_iso,
    default=None,
    metavar="ISO-8601",
    help="Handoffs started at or after this.",
)
@click.option(
    "--until", callback=parse_iso, default=None, metavar="ISO-8601", help="... and before this."
)
@output_option
@click.option(
    "--spreadsheet-safe",
    is_flag=True,
    help="CSV: put ' before cells starting with = + - @ so a spreadsheet shows them "
    "as text, not formulas (such a file is for reading, not for `slakit import`).",
)
@config_option
def export(
    fmt: str,
    since: datetime | None,
    until: datetime | None,
    output: Path | None,
    spreadsheet_safe: bool,
    config: Path | None,
) -> None:
    """Export handoffs (started in [since, until)) as JSON lines or CSV."""
    check_window(since, until)
    if spreadsheet_safe and fmt != "csv":
        raise click.UsageError("--spreadsheet-safe is for --format csv")
    with open_engine(config, existing=True) as engine, output_stream(output, newline="") as out:
        rows = engine.store.iter_handoffs(since=since, until=until)
        if fmt == "jsonl":
            for h in rows:
                out.write(json.dumps(h.to_dict(), default=str) + "\n")
        else:
            fields = [*_FIELD_NAMES, "status"]
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for h in rows:
                d = h.to_dict()
                d["attributes"] = json.dumps(d["attributes"])
                if spreadsheet_safe:
                    d = {k: _inert_cell(v) for k, v in d.items()}
                writer.writerow(d)


#: What a spreadsheet reads as the start of a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Fullwidth forms some spreadsheets read as their ASCII signs (NFKC folds them).
_FULLWIDTH_SIGNS = str.maketrans("＝＋－＠", "=+-@")


def _inert_cell(value: Any) -> Any:
    """``value`` with a ``'`` before it when a spreadsheet would take it for a formula:
    after any leading spaces (a spreadsheet may trim them, Unicode ones too) and with
    fullwidth signs read as theirs."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        return "'" + value
    head = value.replace("\ufeff", "").lstrip()  # str.lstrip takes Unicode spaces too
    if head.translate(_FULLWIDTH_SIGNS).startswith(_FORMULA_START):
        return "'" + value
    return value


@cli.command(cls=Command)
@click.option("--handoff", "handoff_id", default=None, metavar="ID", help="Only this handoff.")
@click.option(
    "--since", callback=parse_iso, default=None, metavar="ISO-8601", help="Lines at or after this."
)
@click.option(
    "--until", callback=parse_iso, default=None, metavar="ISO-8601", help="... and before this."
)
@output_option
@click.option(
    "--emit",
    is_flag=True,
    help="Hand the lines to the configured trace sinks instead of printing them.",
)
@config_option
def traces(
    handoff_id: str | None,
    since: datetime | None,
    until: datetime | None,
    output: Path | None,
    emit: bool,
    config: Path | None,
) -> None:
    """Print the stored trace lines (at in [since, until)) as JSON lines.

    The store's trace table is the record of what happened; sinks get the
    lines after each commit. A process that died between a commit and the
    hand-over leaves lines only in the store: `--emit` hands a window of them
    to the configured sinks again.
    """
    if emit and output is not None:
        raise click.UsageError("--emit sends to the configured sinks; it takes no --output")
    check_window(since, until)
    with open_engine(config, existing=True) as engine:
        if handoff_id is not None:
            engine.get(handoff_id)  # an unknown id is an error, not an empty result
        lines = engine.store.traces(handoff_id, since=since, until=until)
        if emit:
            if not engine.trace_sinks:
                raise click.UsageError("no trace sinks are configured ([[trace_sinks]])")
            with progress_bar(disable=len(lines) < 1000) as bar:
                task = bar.add_task("emitting", total=len(lines))
                for lo in range(0, len(lines), 1000):
                    batch = lines[lo : lo + 1000]
                    for sink in engine.trace_sinks:
                        try:
                            sink.emit(batch)
                        except Exception as exc:
                            raise click.ClickException(
                                f"trace sink {sink.name!r} failed after {lo} line(s): {exc}"
                            ) from exc
                    bar.advance(task, len(batch))
            names = ", ".join(s.name for s in engine.trace_sinks)
            click.echo(f"emitted {len(lines)} trace line(s) to {names}", err=True)
            return
    from slakit.adapters.jsonl import trace_line

    with output_stream(output) as out:
        out.writelines(trace_line(t) for t in lines)


# -- demo ---------------------------------------------------------------------------


@cli.command(cls=Command)
@click.option("--seed", type=int, default=7, show_default=True, help="Simulation seed.")
@click.option("--week", default="2026-W48", show_default=True, help="ISO week to simulate.")
@click.option(
    "--leads",
    type=click.IntRange(min=1, max=100_000),
    default=120,
    show_default=True,
    help="How many leads arrive in the week.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the database, config and trace log in this directory.",
)
@click.option("--quiet", is_flag=True, help="Only print the summary.")
@json_option
def demo(seed: int, week: str, leads: int, keep: Path | None, quiet: bool, as_json: bool) -> None:
    """Simulate a week of inbound leads on SQLite: alerts, reassignments, breaches, hit rate."""
    from slakit.demo import run_demo

    run_demo(seed=seed, week=week, leads=leads, keep=keep, quiet=quiet or as_json, as_json=as_json)


# -- mounted command groups ---------------------------------------------------------


def _mount() -> None:
    try:
        from slakit.cli_calendar import calendar_group
    except ImportError:  # pragma: no cover - the calendar CLI ships with the package
        pass
    else:
        cli.add_command(calendar_group, "calendar")
    try:
        from slakit.cli_report import commands
    except ImportError:  # pragma: no cover
        pass
    else:
        for command in commands:
            cli.add_command(command)


_mount()


if __name__ == "__main__":
    main()
