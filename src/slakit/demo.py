"""``slakit demo``: a simulated week of inbound leads on SQLite.

A seeded generator produces arrivals (mostly in business hours, some at night
and on the weekend) and owners who respond fast, slowly, or not at all (one
is on holiday). A :class:`~slakit.ManualClock` jumps from event to event and
to every due time the store reports, so the week runs in seconds while the
engine does exactly what it would do live: alert at 1×, reassign and breach
at 2×, trace every action, and report the hit rate.
"""

from __future__ import annotations

import heapq
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from slakit.abc import Notifier
from slakit.clock import ManualClock
from slakit.errors import ConfigError
from slakit.records import Notification
from slakit.review import FIRST_YEAR, LAST_YEAR

__all__ = ["DEMO_CONFIG", "DemoResult", "run_demo", "simulate_week"]

TZ = ZoneInfo("America/New_York")

DEMO_CONFIG = """\
# The configuration `slakit demo` ran with. Explore the results with:
#   slakit report --config {config} --since {since} --until {until} --by channel
#   slakit review --config {config} --week {week}
#   slakit show --config {config} <lead id>

[store]
adapter = "sqlite"
path = "slakit.db"

[calendars.sales-east]
timezone = "America/New_York"
holidays = {{ country = "US" }}

[calendars.sales-east.hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[policies.speed-to-lead]
calendar = "sales-east"
basis = "business"
stop = "first_response"
sla_minutes = 30
backup_owner = "erin"
link = "https://crm.example.com/leads/{{id}}"
steps = [
  {{ at = "1x", do = ["notify:owner"] }},
  {{ at = "2x", do = ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"] }},
]
trigger = "Qualified inbound form creates a lead"
target = "First human reply"
timer = "30 business minutes, sales-east hours"
trace = "ops-log.jsonl"
consequence = "DM owner at 1x; reassign to erin and mark breached at 2x"

[breach_reasons]
owner_out_of_office = "Owner was out and the lead was not rerouted"
out_of_hours_arrival = "Arrived outside business hours"
slow_owner = "Owner took too long"

[review]
timezone = "America/New_York"

[[trace_sinks]]
adapter = "jsonl"
path = "ops-log.jsonl"
"""


@attrs.frozen
class Owner:
    """A simulated owner: how soon they answer, in business minutes."""

    name: str
    low: float
    high: float
    never: bool = False


OWNERS = (
    Owner("alice", 2, 20),
    Owner("bob", 10, 45),
    Owner("carol", 25, 110),
    Owner("dan", 0, 0, never=True),  # on holiday all week
)
CHANNELS = ("web-form", "chat", "partner")


@attrs.frozen
class DemoResult:
    """What the simulated week produced."""

    directory: Path
    config: Path
    database: Path
    trace_log: Path
    week_start: datetime
    week_end: datetime
    leads: int
    alerts: int
    reassignments: int
    breaches: int
    cancelled: int
    notifications: int
    report: Any


def _week_bounds(week: str) -> tuple[datetime, datetime]:
    try:
        year_s, wk_s = week.upper().split("-W")
        if not FIRST_YEAR <= int(year_s) <= LAST_YEAR:
            raise ValueError(year_s)
        monday = date.fromisocalendar(int(year_s), int(wk_s), 1)
    except ValueError:
        raise ConfigError(
            f"--week must look like 2026-W48, in the years {FIRST_YEAR} to {LAST_YEAR}, "
            f"got {week!r}",
            field="week",
            value=week,
        ) from None
    start = datetime(monday.year, monday.month, monday.day, tzinfo=TZ)
    return start, start + timedelta(days=7)


class _Printer(Notifier):
    def __init__(self, clock: ManualClock, echo: Callable[[str], None] | None) -> None:
        self.name = "demo"
        self.clock = clock
        self.echo = echo
        self.count = 0

    def send(self, notification: Notification) -> None:
        self.count += 1
        if self.echo is None:
            return
        local = self.clock.now().astimezone(TZ).strftime("%a %H:%M")
        icon = "!!" if notification.step == "2x" else "->"
        self.echo(f"{local}  {icon} @{notification.recipient:<6} {notification.text}")


def _arrivals(rng: random.Random, start: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(count):
        day = rng.randrange(7)
        if day < 5 and rng.random() < 0.8:
            minute = rng.randrange(9 * 60, 17 * 60)
        else:
            minute = rng.randrange(24 * 60)
        local = (start + timedelta(days=day)).replace(tzinfo=None) + timedelta(minutes=minute)
        out.append(local.replace(tzinfo=TZ).astimezone(UTC))
    return sorted(out)


def simulate_week(
    directory: Path,
    *,
    seed: int = 7,
    week: str = "2026-W48",
    leads: int = 120,
    echo: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the simulated week in ``directory`` (which must be empty or new)."""
    from slakit.config import build_engine
    from slakit.metrics import hit_rate

    start, end = _week_bounds(week)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "slakit.toml"
    config.write_text(
        DEMO_CONFIG.format(
            config=config,
            since=start.isoformat(),
            until=end.isoformat(),
            week=week.upper(),
        ),
        encoding="utf-8",
    )
    clock = ManualClock(start)
    printer = _Printer(clock, echo)
    engine = build_engine(config, clock=clock, notifiers=[printer])
    engine.setup()
    policy = engine.policy("speed-to-lead")
    cal = policy.calendar
    rng = random.Random(seed)

    # The event queue: (time, order, kind, lead id, payload)
    events: list[tuple[datetime, int, str, str, Any]] = []
    order = 0
    for i, at in enumerate(_arrivals(rng, start, leads), start=1):
        lead = f"lead-{i:04d}"
        owner = rng.choice(OWNERS)
        channel = rng.choices(CHANNELS, weights=(6, 3, 1))[0]
        segment = "ICP" if rng.random() < 0.6 else "non-ICP"
        events.append((at, order, "start", lead, (owner.name, channel, segment)))
        order += 1
        if rng.random() < 0.05:
            events.append(
                (at + timedelta(minutes=rng.randrange(5, 20)), order, "cancel", lead, None)
            )
        elif owner.never:
            # The backup picks it up some business minutes after the 2x reassignment.
            reply = cal.add(at, timedelta(minutes=60 + rng.uniform(3, 40)))
            events.append((reply, order, "respond", lead, "erin"))
        else:
            reply = cal.add(at, timedelta(minutes=rng.uniform(owner.low, owner.high)))
            events.append((reply, order, "respond", lead, owner.name))
        order += 1
    heapq.heapify(events)

    cancelled = 0
    while True:
        next_event = events[0][0] if events else None
        next_due = engine.store.next_wakeup()
        candidates = [t for t in (next_event, next_due) if t is not None and t < end]
        if not candidates:
            break
        now = min(candidates)
        clock.set(now)
        while events and events[0][0] <= now:
            _, _, kind, lead, payload = heapq.heappop(events)
            if kind == "start":
                owner_name, channel, segment = payload
                engine.start(
                    lead,
                    policy="speed-to-lead",
                    owner=owner_name,
                    started_at=now,
                    channel=channel,
                    segment=segment,
                )
            elif kind == "respond":
                engine.respond(lead, at=now, by=payload)
            elif kind == "cancel":
                engine.cancel(lead, at=now, reason="spam")
                cancelled += 1
        engine.check(now)
        engine.deliver(now)

    clock.set(end)
    engine.check(end)
    engine.deliver(end)
    for h in engine.store.iter_handoffs():
        if h.breached and h.breach_reason is None:
            reason = (
                "owner_out_of_office"
                if h.backup_owner == "dan"
                else ("out_of_hours_arrival" if not h.within_business_hours else "slow_owner")
            )
            engine.tag_breach(h.id, reason, at=end)
    escalations = engine.store.escalations()
    steps = Counter(e.step for e in escalations if e.outcome == "applied")
    breaches = sum(1 for h in engine.store.iter_handoffs() if h.breached)
    report = hit_rate(engine.store, since=start, until=end, by=("channel",), now=end)
    report.excluded_ids  # noqa: B018 - the ids load lazily; read them before the store closes
    engine.close()
    return DemoResult(
        directory=directory,
        config=config,
        database=directory / "slakit.db",
        trace_log=directory / "ops-log.jsonl",
        week_start=start,
        week_end=end,
        leads=leads,
        alerts=steps.get("1x", 0),
        reassignments=steps.get("2x", 0),
        breaches=breaches,
        cancelled=cancelled,
        notifications=printer.count,
        report=report,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:5.1f}%"


def run_demo(
    *,
    seed: int = 7,
    week: str = "2026-W48",
    leads: int = 120,
    keep: Path | None = None,
    quiet: bool = False,
    as_json: bool = False,
) -> DemoResult:
    """The ``slakit demo`` command: simulate, print as it goes, then summarize."""
    from slakit._cliutil import console, print_json

    if keep is not None:
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise ConfigError(
                f"--keep directory {str(keep)!r} is not empty", field="keep", value=str(keep)
            )
        try:  # before anything is printed: a directory that cannot be made is bad input
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--keep directory {str(keep)!r} cannot be created: {exc.strerror or exc}",
                field="keep",
                value=str(keep),
            ) from None
        directory = keep
    else:
        directory = Path(tempfile.mkdtemp(prefix="slakit-demo-"))
    from rich.text import Text

    con = console()
    start, end = _week_bounds(week)
    if not quiet:
        con.print(Text("slakit demo", style="bold"), end="")
        con.print(
            f": {leads} inbound leads, week {week.upper()} "
            f"({start:%a %d %b} – {(end - timedelta(days=1)):%a %d %b %Y}), America/New_York "
            "business hours Mon–Fri 09:00–17:00 with US holidays.\n"
            "Policy speed-to-lead: respond within 30 business minutes; at 1x alert the owner; "
            "at 2x mark breached, reassign to erin, tell both.\n"
            "Owners: alice (fast), bob (steady), carol (slow), dan (on holiday).\n"
        )
    result = simulate_week(
        directory,
        seed=seed,
        week=week,
        leads=leads,
        echo=None if quiet else (lambda line: con.print(line, markup=False)),
    )
    report = result.report
    if as_json:
        print_json(
            {
                "directory": str(result.directory),
                "config": str(result.config),
                "database": str(result.database),
                "trace_log": str(result.trace_log),
                "leads": result.leads,
                "alerts": result.alerts,
                "reassignments": result.reassignments,
                "breaches": result.breaches,
                "cancelled": result.cancelled,
                "notifications": result.notifications,
                "hit_rate": report.to_dict(),
            }
        )
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="SLA hit rate, speed-to-lead", title_justify="left")
        table.add_column("channel")
        table.add_column("absolute (wall)", justify="right")
        table.add_column("business-hours adjusted", justify="right")
        table.add_column("pending (adjusted)", justify="right")
        table.add_column("cancelled", justify="right")
        rows = [*report.groups.values(), report.total]
        for g in rows:
            name = "all" if g is report.total else str(g.key[0])
            table.add_row(
                Text(name, style="bold") if g is report.total else name,
                f"{_pct(g.wall.rate)}  ({g.wall.met}/{g.wall.evaluated})",
                f"{_pct(g.business.rate)}  ({g.business.met}/{g.business.evaluated})",
                str(g.business.pending),
                str(g.excluded),
            )
        con.print()
        con.print(
            f"{result.leads} leads · {result.alerts} owner alerts at 1x · "
            f"{result.reassignments} reassignments at 2x · {result.breaches} breached · "
            f"{result.cancelled} cancelled · {result.notifications} notifications delivered"
        )
        con.print(table)
        con.print(
            "Absolute counts wall-clock minutes (a lead arriving Friday night is late by "
            "Monday); adjusted counts business minutes only. Cells show met/evaluated."
        )
        if keep is not None:
            con.print(f"\nDatabase:  {result.database}")
            con.print(f"Trace log: {result.trace_log}")
            con.print(f"Config:    {result.config}")
            con.print(
                f"Explore:   slakit report --config {result.config} "
                f"--since {start.isoformat()} --until {end.isoformat()} --by channel,segment"
            )
            con.print(f"           slakit review --config {result.config} --week {week.upper()}")
        else:
            con.print("\n(use --keep DIR to keep the database, trace log and config)")
    if keep is None:
        shutil.rmtree(directory, ignore_errors=True)
    return result
