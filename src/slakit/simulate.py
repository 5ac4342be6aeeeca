"""What-if replay: the stored history of one policy under a changed SLA or calendar.

The replay reads the handoffs of one policy started in a window, with their
start, pause/resume, response, completion and cancellation times, and runs
them again through a private engine (an in-memory store and a manual clock)
whose policy has the changed settings. Each record's events are applied in
the order the engine recorded them, each at its own time, so the engine
judges them again as it did. Steps fire at their due times in order, exactly
as a checker running continuously would fire them. Nothing is written to the
source store, no notification is sent, no trace sink and no plugin observer
sees the replay.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from slakit._time import ensure_aware, optional_aware, to_iso, validate_sla
from slakit.abc import Notifier, RecordStore
from slakit.clock import ManualClock
from slakit.errors import InvalidTimestampError, InvalidTransitionError, UnknownCalendarError
from slakit.handoff import Handoff
from slakit.metrics import BasisCounts, hit_rate
from slakit.plugins import Plugins
from slakit.records import Notification, TraceRecord

if TYPE_CHECKING:
    from slakit.engine import Engine
    from slakit.policy import Action, CalendarLike, Policy

__all__ = ["SideResult", "SimulationResult", "simulate", "simulate_engine"]


@attrs.frozen
class SideResult:
    """The numbers of one side of the comparison (actual or predicted).

    :ivar missed: handoffs that missed the SLA on the policy's basis (timestamps).
    :ivar breached: handoffs whose ``breached`` flag a step set (the consequence).
    :ivar notifications: distinct notifications (one per recipient and action,
        however many notifiers carry it).
    :ivar steps: how many times each step label fired.
    """

    basis: str
    wall: BasisCounts
    business: BasisCounts
    excluded: int
    breached: int
    notifications: int
    steps: Mapping[str, int] = attrs.field(factory=dict, hash=False)

    @property
    def counts(self) -> BasisCounts:
        """Counts on the policy's basis."""
        return self.wall if self.basis == "wall" else self.business

    @property
    def rate(self) -> float | None:
        """Hit rate on the policy's basis."""
        return self.counts.rate

    @property
    def missed(self) -> int:
        """Misses on the policy's basis."""
        return self.counts.missed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rate": self.rate,
            "evaluated": self.counts.evaluated,
            "met": self.counts.met,
            "missed": self.missed,
            "pending": self.counts.pending,
            "excluded": self.excluded,
            "breached": self.breached,
            "notifications": self.notifications,
            "steps": dict(self.steps),
            "wall": self.wall.to_dict(),
            "business": self.business.to_dict(),
        }


@attrs.frozen
class SimulationResult:
    """Actual and predicted numbers of one what-if replay.

    :ivar handoffs: how many handoffs were replayed (and counted on both sides).
    :ivar skipped: handoffs left out of both sides because their stored history
        could not be replayed: id to the reason (the event the engine refused).
    """

    policy: str
    since: datetime | None
    until: datetime | None
    now: datetime
    handoffs: int
    sla_minutes: float | None
    calendar: str | None
    actual: SideResult
    predicted: SideResult
    skipped: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``slakit simulate --json`` prints)."""
        return {
            "policy": self.policy,
            "since": to_iso(self.since),
            "until": to_iso(self.until),
            "now": to_iso(self.now),
            "handoffs": self.handoffs,
            "changes": {"sla_minutes": self.sla_minutes, "calendar": self.calendar},
            "actual": self.actual.to_dict(),
            "predicted": self.predicted.to_dict(),
            "skipped": [{"id": hid, "reason": why} for hid, why in self.skipped.items()],
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """``(measure, actual, predicted)`` rows for a table."""

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v * 100:.1f}%"

        a, p = self.actual, self.predicted
        rows = [
            ("hit rate (wall)", pct(a.wall.rate), pct(p.wall.rate)),
            ("hit rate (business)", pct(a.business.rate), pct(p.business.rate)),
            ("met", str(a.counts.met), str(p.counts.met)),
            ("missed", str(a.missed), str(p.missed)),
            ("pending", str(a.counts.pending), str(p.counts.pending)),
            ("excluded (cancelled)", str(a.excluded), str(p.excluded)),
            ("breached (flag set)", str(a.breached), str(p.breached)),
            ("notifications", str(a.notifications), str(p.notifications)),
        ]
        for label in sorted(set(a.steps) | set(p.steps)):
            rows.append(
                (f"step {label} fired", str(a.steps.get(label, 0)), str(p.steps.get(label, 0)))
            )
        return rows

    def to_text(self) -> str:
        """A plain-text table."""
        head = ("measure", "actual", "predicted")
        rows = [head, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [
            f"policy {self.policy} (basis {self.actual.basis}): {self.handoffs} handoffs replayed"
            + (f", sla_minutes {self.sla_minutes:g}" if self.sla_minutes is not None else "")
            + (f", calendar {self.calendar}" if self.calendar is not None else "")
        ]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        lines.extend(self.notes())
        return "\n".join(lines) + "\n"

    def notes(self) -> list[str]:
        """One line per skipped handoff, after a line counting them; none when none was."""
        if not self.skipped:
            return []
        n = len(self.skipped)
        head = f"skipped {n} handoff{'' if n == 1 else 's'} that could not be replayed:"
        return [head, *(f"  {hid}: {why}" for hid, why in self.skipped.items())]


class _NullNotifier(Notifier):
    """Stands in for the real notifiers: the replay never delivers."""

    def __init__(self) -> None:
        self.name = "replay"

    def send(self, notification: Notification) -> None:
        """Never called: the replay does not deliver."""


class _ReplayPlugins(Plugins):
    """The source engine's plugin actions, without its observers."""

    def __init__(self, source: Plugins | None) -> None:
        # No super().__init__(): the replay needs no plugin manager of its own.
        self._source = source

    def actions(self) -> dict[str, Action]:
        return self._source.actions() if self._source is not None else {}

    def observes_steps(self) -> bool:
        return False

    def step_applied(self, *args: Any, **kwargs: Any) -> None:
        """Observers must not see replayed steps."""


# A record's events: trace rules, and the record's field each stop or cancel set.
_PAUSES = ("pause", "resume")
_ENDS = {"respond": "first_response_at", "complete": "completed_at", "cancel": "cancelled_at"}


def _history(
    h: Handoff, traces: Sequence[TraceRecord], when: datetime
) -> list[tuple[datetime, str]]:
    """``h``'s pauses, resumes, response, completion and cancellation dated up to
    ``when``, in the order the engine recorded them (its trace lines' order).

    The engine takes an event dated before one it already holds (a response
    dated before a recorded pause), and judges it by what it held then, so the
    order of arrival decides the record, not the order of the dates. An end
    the record holds without its trace line comes last, in time order.
    """
    events: list[tuple[datetime, str]] = []
    seen: set[str] = set()
    for t in traces:
        if t.rule in _PAUSES:
            events.append((t.at, t.rule))
        elif t.rule in _ENDS and t.rule not in seen:
            seen.add(t.rule)
            at = getattr(h, _ENDS[t.rule])
            if at is not None:
                events.append((at, t.rule))
    untraced = [(getattr(h, f), kind) for kind, f in _ENDS.items() if kind not in seen]
    events.extend(sorted(((at, k) for at, k in untraced if at is not None), key=lambda e: e[0]))
    return [(at, kind) for at, kind in events if at <= when]


def _original_people(h: Handoff, traces: Sequence[TraceRecord]) -> tuple[str | None, str | None]:
    """Owner and backup as they were at the start, undoing reassignments."""
    owner, backup = h.owner, h.backup_owner
    for t in reversed(traces):
        if t.rule.startswith("step:") and t.action.startswith("reassign:") and t.outcome == "ok":
            # A reassignment sets owner = new, backup = previous owner.
            previous = t.detail.get("from", backup)
            owner, backup = previous, (owner if t.action == "reassign:backup" else None)
    for t in traces:
        if t.rule == "start" and "owner" in t.detail:
            owner = t.detail["owner"]
            break
    return owner, backup


def _as_of(
    h: Handoff,
    traces: Sequence[TraceRecord],
    when: datetime,
    policy: Policy,
    breach_at: Mapping[str, datetime],
) -> Handoff:
    """``h`` as it stood at ``when``: responses, completions, cancels, pauses and
    breaches that came later undone, its deadlines as its pauses up to then left them.

    A record nothing happened to after ``when`` (the usual case) is returned as it is.
    """
    pauses = [(t.at, t.rule) for t in traces if t.rule in _PAUSES]
    later = [
        at
        for at in (h.first_response_at, h.completed_at, h.cancelled_at, h.stopped_at)
        if at is not None and at > when
    ]
    breached = h.breached if h.id not in breach_at else breach_at[h.id] <= when
    if not later and all(at <= when for at, _ in pauses) and breached == h.breached:
        return h
    from slakit.engine import _stopped, _timers, _unpaused

    changes: dict[str, Any] = {"breached": breached}
    if h.first_response_at is not None and h.first_response_at > when:
        changes.update(first_response_at=None, responded_by=None)
    if h.completed_at is not None and h.completed_at > when:
        changes["completed_at"] = None
    if h.cancelled_at is not None and h.cancelled_at > when:
        changes.update(cancelled_at=None, cancel_reason=None)
    stop = h.stopped_at
    if stop is not None and stop > when:
        changes.update(stopped_at=None, wall_elapsed_seconds=None, business_elapsed_seconds=None)
        # A completion (or a stopping response) dated by `when` but recorded after
        # the event that stopped the clock would have stopped it then.
        ends = (h.completed_at, h.first_response_at if policy.stop == "first_response" else None)
        stop = min((at for at in ends if at is not None and at <= when), default=None)
    cur = h._replace(**changes)
    if pauses:
        # Pauses up to `when` in the order recorded, replayed through the engine's
        # own pause arithmetic from the record's unpaused timers; one still open at
        # `when` stays open, unless a cancel by then ended it (a stop is below).
        cur = _timers(
            policy, cur._replace(paused_at=None, paused_seconds=0.0, paused_business_seconds=0.0)
        )
        for at, rule in pauses:
            if at > when:
                continue
            if rule == "pause" and cur.paused_at is None:
                cur = cur._replace(paused_at=at)
            elif rule == "resume" and cur.paused_at is not None:
                cur = _unpaused(policy, cur, at)
        if cur.paused_at is not None and cur.cancelled_at is not None:
            cur = _unpaused(policy, cur, max(cur.cancelled_at, cur.paused_at))
    if stop is not None and (pauses or stop != h.stopped_at):
        # Stopped as the engine stops a clock: an open pause ends, elapsed times written.
        cur = _stopped(policy, cur._replace(stopped_at=None), stop)
    return cur


def _side(
    handoffs: Sequence[Handoff],
    outbox_keys: Iterable[str],
    steps: Counter[str],
    basis: str,
    now: datetime,
) -> SideResult:
    rep = hit_rate(handoffs, now=now)
    return SideResult(
        basis=basis,
        wall=rep.wall,
        business=rep.business,
        excluded=rep.total.excluded,
        breached=sum(1 for h in handoffs if h.breached),
        notifications=len(set(outbox_keys)),
        steps=dict(sorted(steps.items())),
    )


def simulate(
    store: RecordStore,
    policy: Policy,
    *,
    sla_minutes: float | None = None,
    calendar: CalendarLike | None = None,
    calendar_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    plugins: Plugins | None = None,
) -> SimulationResult:
    """Replay ``policy``'s stored handoffs with a changed SLA and/or calendar.

    :param store: the source store; only read.
    :param policy: the policy as configured (its stored handoffs are replayed).
    :param sla_minutes: the what-if SLA; it replaces every record's own ``sla_minutes``.
    :param calendar: the what-if calendar.
    :param calendar_name: its name, for the report.
    :param since: replay handoffs started at or after this instant.
    :param until: ... and before this one.
    :param now: the end of the replay; open handoffs are judged here (default: system time).
    :param plugins: where plugin actions come from (their observers are not called).
    :returns: actual and predicted numbers side by side; a handoff whose stored
        history the engine refuses on replay is left out of both and named in
        :attr:`SimulationResult.skipped`.
    :raises InvalidSLAError: for a bad ``sla_minutes``.
    """
    from slakit.adapters.memory import MemoryStore
    from slakit.engine import Engine

    since = optional_aware("since", since)
    until = optional_aware("until", until)
    when = ensure_aware("now", now) if now is not None else datetime.now(UTC)
    if sla_minutes is not None:
        sla_minutes = validate_sla("sla_minutes", sla_minutes)
    whatif = attrs.evolve(
        policy,
        sla_minutes=sla_minutes if sla_minutes is not None else policy.sla_minutes,
        calendar=calendar if calendar is not None else policy.calendar,
        calendar_name=calendar_name if calendar is not None else policy.calendar_name,
    )
    handoffs = [
        h
        for h in store.iter_handoffs(since=since, until=until, policy=policy.name)
        if h.started_at <= when
    ]
    ids = {h.id for h in handoffs}
    first = min((h.started_at for h in handoffs), default=when)
    traces_by_id: dict[str, list[TraceRecord]] = {}
    for t in store.traces(since=first):
        if t.handoff_id in ids:
            traces_by_id.setdefault(t.handoff_id, []).append(t)

    clock = ManualClock(first)
    replay_store = MemoryStore()
    engine = Engine(
        store=replay_store,
        policies={policy.name: whatif},
        notifiers=[_NullNotifier()],
        clock=clock,
        plugins=_ReplayPlugins(plugins),
        worker_id="replay",
    )
    # (replayed at, handoff id, its place in the record's history, event, event time)
    events: list[tuple[datetime, str, int, str, datetime]] = []
    for h in handoffs:
        events.append((h.started_at, h.id, 0, "start", h.started_at))
        # An event dated before one recorded earlier arrived after it: it is
        # replayed then (backdated), as the engine took it.
        arrived = h.started_at
        for n, (at, kind) in enumerate(_history(h, traces_by_id.get(h.id, ()), when), 1):
            arrived = max(arrived, at)
            events.append((arrived, h.id, n, kind, at))
    events.sort(key=lambda ev: (ev[0], ev[1], ev[2]))
    by_id = {h.id: h for h in handoffs}
    skipped: dict[str, str] = {}
    due: list[tuple[datetime, str]] = []

    def push(h: Handoff) -> None:
        if h.next_due_at is not None:
            heapq.heappush(due, (h.next_due_at, h.id))

    def run_due(bound: datetime, inclusive: bool) -> None:
        # Fire every step due before ``bound`` at its own due time, in order.
        while due and (due[0][0] <= bound if inclusive else due[0][0] < bound):
            at, hid = heapq.heappop(due)
            current = replay_store.get(hid)
            if current.next_due_at != at:
                continue
            clock.set(at)
            result = engine.check(at)
            for hid2 in {a.handoff_id for a in result.applied}:
                push(replay_store.get(hid2))

    for arrived, hid, _, kind, at in events:
        if hid in skipped:
            continue
        run_due(arrived, inclusive=False)
        clock.set(arrived)
        src = by_id[hid]
        if kind == "start":
            owner, backup = _original_people(src, traces_by_id.get(hid, ()))
            h = engine.start(
                src.id,
                policy=policy.name,
                owner=owner,
                backup_owner=backup,
                sla_minutes=sla_minutes if sla_minutes is not None else src.sla_minutes,
                started_at=src.started_at,
                trace_id=src.trace_id,
                channel=src.channel,
                segment=src.segment,
                attributes=dict(src.attributes),
            )
            push(h)
            continue
        try:
            if kind == "respond":
                h = engine.respond(hid, at=at, by=src.responded_by)
            elif kind == "complete":
                h = engine.complete(hid, at=at)
            elif kind == "cancel":
                h = engine.cancel(hid, at=at, reason=src.cancel_reason)
            elif kind == "pause":
                h = engine.pause(hid, at=at)
            else:
                h = engine.resume(hid, at=at)
        except (InvalidTransitionError, InvalidTimestampError) as exc:
            # A history the engine could not have recorded (written by hand, or
            # by an older version): left out of both sides, and named.
            skipped[hid] = f"{kind} at {to_iso(at)}: {exc}"
            continue
        push(h)
    run_due(when, inclusive=True)

    kept = [h for h in handoffs if h.id not in skipped]
    kept_ids = {h.id for h in kept}
    # The actual side as it stood at `when`: what happened later is not counted.
    actual_keys = [
        item.notification.idempotency_key
        for item in store.outbox()
        if item.notification.handoff_id in kept_ids and item.notification.created_at <= when
    ]
    applied = [
        e for e in store.escalations() if e.handoff_id in kept_ids and e.outcome == "applied"
    ]
    actual_steps: Counter[str] = Counter(e.step for e in applied if e.applied_at <= when)
    # Breached by a step: as of when that step applied.
    breach_at: dict[str, datetime] = {}
    for e in applied:
        if "mark_breached" in e.actions:
            seen = breach_at.get(e.handoff_id)
            breach_at[e.handoff_id] = e.applied_at if seen is None else min(seen, e.applied_at)
    as_of = [_as_of(h, traces_by_id.get(h.id, ()), when, policy, breach_at) for h in kept]
    actual = _side(as_of, actual_keys, actual_steps, policy.basis, when)

    replayed = [h for h in replay_store.iter_handoffs() if h.id in kept_ids]
    predicted_keys = [
        item.notification.idempotency_key
        for item in replay_store.outbox()
        if item.notification.handoff_id in kept_ids
    ]
    predicted_steps: Counter[str] = Counter(
        e.step
        for e in replay_store.escalations()
        if e.handoff_id in kept_ids and e.outcome == "applied"
    )
    predicted = _side(replayed, predicted_keys, predicted_steps, policy.basis, when)
    return SimulationResult(
        policy=policy.name,
        since=since,
        until=until,
        now=when,
        handoffs=len(kept),
        sla_minutes=sla_minutes,
        calendar=calendar_name if calendar is not None else None,
        actual=actual,
        predicted=predicted,
        skipped=dict(sorted(skipped.items())),
    )


def simulate_engine(
    engine: Engine,
    policy: str,
    *,
    sla_minutes: float | None = None,
    calendar: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> SimulationResult:
    """:func:`simulate` against an engine's store, policy and configured calendars.

    :param calendar: the name of a configured calendar (``[calendars.NAME]``).
    :raises UnknownPolicyError: for a policy that is not configured.
    :raises UnknownCalendarError: for a calendar that is not configured.
    """
    pol = engine.policy(policy)
    cal: CalendarLike | None = None
    if calendar is not None:
        if calendar not in engine.calendars:
            raise UnknownCalendarError(calendar, list(engine.calendars))
        cal = engine.calendars[calendar]
    return simulate(
        engine.setup().store,
        pol,
        sla_minutes=sla_minutes,
        calendar=cal,
        calendar_name=calendar,
        since=since,
        until=until,
        now=now if now is not None else engine.clock.now(),
        plugins=engine.plugins,
    )
