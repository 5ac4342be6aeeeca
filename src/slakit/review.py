"""The weekly review ("Prune Friday") and the one-page runbook.

The review is a sheet built from the store for one ISO week: every breach
grouped by reason, the hit rate of the week against the weeks before it (both
bases), steps that never fired lately (rules to remove), notifications that
told the same person about the same handoff twice within minutes, and
runbooks nobody has reviewed for a while. It renders as Markdown, JSON, or a
self-contained HTML page with an inline SVG chart.

Weeks are ISO weeks (Monday 00:00 to the next Monday 00:00) in the zone of
``[review] timezone``, UTC when unset. ``docs/review.md`` describes each part.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from slakit._text import escape_controls
from slakit._time import ensure_aware, to_iso
from slakit.abc import RecordStore
from slakit.errors import ConfigError, UnknownPolicyError, ValidationError
from slakit.metrics import BasisCounts, _code, hit_rate

if TYPE_CHECKING:
    from slakit.engine import Engine
    from slakit.handoff import Handoff
    from slakit.policy import Policy

__all__ = [
    "Breach",
    "DuplicateNotification",
    "ReasonGroup",
    "ReviewSettings",
    "SilentStep",
    "StaleRunbook",
    "WeekRate",
    "WeeklyReview",
    "build_review",
    "hit_rate_chart",
    "parse_week",
    "render_runbook",
    "review_from_engine",
    "week_bounds",
    "week_label",
]

_DAY: Final = timedelta(days=1)
_WEEK_RE: Final = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)
_REVIEW_KEYS: Final = ("timezone", "weeks", "duplicate_minutes", "runbook_max_age_days")
#: Label of the group of breaches nobody has tagged with a reason.
UNTAGGED: Final = "(untagged)"


# -- weeks ------------------------------------------------------------------------


#: The ISO years a review or demo week may fall in: room for ten years of
#: history before it and for the weeks after it, inside datetime's range.
FIRST_YEAR, LAST_YEAR = 1900, 8999


def parse_week(text: str) -> tuple[int, int]:
    """Parse ``"2026-W48"`` (or ``"2026W48"``) into ``(iso_year, iso_week)``.

    :raises ValidationError: naming ``week`` when the text is not an ISO week
        or the week does not exist in that year.
    """
    m = _WEEK_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValidationError(
            f"week must look like 2026-W48, got {text!r}", field="week", value=text
        )
    year, week = int(m[1]), int(m[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValidationError(
            f"week {text!r} is out of range (years {FIRST_YEAR} to {LAST_YEAR})",
            field="week",
            value=text,
        )
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValidationError(
            f"week {text!r} does not exist (ISO year {year} has no week {week})",
            field="week",
            value=text,
        ) from None
    return year, week


def week_label(year: int, week: int) -> str:
    """``2026-W48``."""
    return f"{year:04d}-W{week:02d}"


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    from slakit.calendar import resolve_wall_time

    # Midnight can fall in a DST gap in a few zones; take the first instant the clock shows it.
    return resolve_wall_time(datetime(day.year, day.month, day.day), tz)


def week_bounds(year: int, week: int, tz: ZoneInfo | str = "UTC") -> tuple[datetime, datetime]:
    """``(start, end)`` of an ISO week in ``tz``: Monday 00:00 to the next Monday 00:00.

    Both are returned in UTC (so subtraction gives real elapsed time): a week
    with a DST change is 167 or 169 hours long.
    """
    zone = _zone(tz, "timezone")
    monday = date.fromisocalendar(year, week, 1)
    return (
        _local_midnight(monday, zone).astimezone(UTC),
        _local_midnight(monday + timedelta(days=7), zone).astimezone(UTC),
    )


def _week_of(t: datetime, tz: ZoneInfo) -> tuple[int, int]:
    iso = t.astimezone(tz).isocalendar()
    return iso.year, iso.week


def _shift_week(year: int, week: int, delta: int) -> tuple[int, int]:
    monday = date.fromisocalendar(year, week, 1) + timedelta(weeks=delta)
    iso = monday.isocalendar()
    return iso.year, iso.week


def _zone(value: Any, field: str) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{field} must be an IANA zone name like 'Europe/Paris', got {value!r}",
            field=field,
            value=value,
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{field} {value!r} is not an IANA time zone", field=field, value=value
        ) from None


# -- settings ---------------------------------------------------------------------


@attrs.frozen
class ReviewSettings:
    """The ``[review]`` table.

    :ivar timezone: the zone ISO weeks are cut in (default UTC).
    :ivar weeks: how many weeks before the reviewed one the history and the
        "never fired" check cover.
    :ivar duplicate_minutes: two notifications to the same person about the
        same handoff this close together count as redundant.
    :ivar runbook_max_age_days: a runbook last reviewed longer ago than this is stale.
    """

    timezone: ZoneInfo = attrs.field(factory=lambda: ZoneInfo("UTC"))
    weeks: int = 4
    duplicate_minutes: float = 15.0
    runbook_max_age_days: int = 7

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> ReviewSettings:
        """Build the settings from the ``[review]`` table (absent keys keep defaults).

        :raises ConfigError: for an unknown key or a bad value, naming it.
        """
        from slakit.config import _refuse_unknown_keys

        data = dict(table or {})
        _refuse_unknown_keys("review", data, _REVIEW_KEYS)
        kw: dict[str, Any] = {}
        if "timezone" in data:
            kw["timezone"] = _zone(data["timezone"], "review.timezone")
        if "weeks" in data:
            kw["weeks"] = _positive_int("review.weeks", data["weeks"], minimum=1)
        if "duplicate_minutes" in data:
            value = data["duplicate_minutes"]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(
                    f"review.duplicate_minutes must be a number >= 0, got {value!r}",
                    field="review.duplicate_minutes",
                    value=value,
                )
            kw["duplicate_minutes"] = float(value)
        if "runbook_max_age_days" in data:
            kw["runbook_max_age_days"] = _positive_int(
                "review.runbook_max_age_days", data["runbook_max_age_days"], minimum=0
            )
        return cls(**kw)


def _positive_int(field: str, value: Any, *, minimum: int, maximum: int = 520) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(
            f"{field} must be an integer from {minimum} to {maximum}, got {value!r}",
            field=field,
            value=value,
        )
    return value


# -- the parts of the review -------------------------------------------------------


@attrs.frozen
class Breach:
    """A handoff of the week that missed its SLA on its policy's basis, or carries the flag.

    :ivar owner: the owner the breach happened to (before any reassignment).
    """

    id: str
    policy: str
    owner: str | None
    reason: str | None
    started_at: datetime
    stopped_at: datetime | None
    deadline_at: datetime | None
    missed: bool
    flagged: bool
    cancelled: bool
    channel: str | None = None
    segment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "policy": self.policy,
            "owner": self.owner,
            "reason": self.reason,
            "started_at": to_iso(self.started_at),
            "stopped_at": to_iso(self.stopped_at),
            "deadline_at": to_iso(self.deadline_at),
            "missed": self.missed,
            "flagged": self.flagged,
            "cancelled": self.cancelled,
            "channel": self.channel,
            "segment": self.segment,
        }


@attrs.frozen
class ReasonGroup:
    """The breaches that share a reason (``reason is None``: untagged).

    :ivar known: whether the reason is in the configured taxonomy.
    :ivar owners: ``(owner, count)`` pairs, most breaches first.
    """

    reason: str | None
    description: str | None
    known: bool
    count: int
    owners: tuple[tuple[str | None, int], ...]
    ids: tuple[str, ...]

    @property
    def label(self) -> str:
        """The reason, or ``(untagged)``."""
        return self.reason if self.reason is not None else UNTAGGED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "reason": self.reason,
            "untagged": self.reason is None,
            "description": self.description,
            "known": self.known,
            "count": self.count,
            "owners": [{"owner": o, "count": c} for o, c in self.owners],
            "ids": list(self.ids),
        }


@attrs.frozen
class WeekRate:
    """Hit-rate counts of one ISO week, on both bases."""

    week: str
    start: datetime
    end: datetime
    wall: BasisCounts
    business: BasisCounts
    excluded: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "week": self.week,
            "start": to_iso(self.start),
            "end": to_iso(self.end),
            "wall": self.wall.to_dict(),
            "business": self.business.to_dict(),
            "excluded": self.excluded,
        }


@attrs.frozen
class SilentStep:
    """A policy step that did not fire once in the window: a candidate rule to remove.

    :ivar handoffs: how many handoffs of the policy started in the window
        (zero means the step had no chance to fire).
    """

    policy: str
    step: str
    actions: tuple[str, ...]
    handoffs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "policy": self.policy,
            "step": self.step,
            "actions": list(self.actions),
            "handoffs": self.handoffs,
        }


@attrs.frozen
class DuplicateNotification:
    """Two notifications that told one recipient about one handoff within minutes."""

    handoff_id: str
    recipient: str
    policy: str
    first_at: datetime
    second_at: datetime
    first: str
    second: str

    @property
    def gap_minutes(self) -> float:
        """Minutes between the two."""
        return (self.second_at - self.first_at).total_seconds() / 60

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "handoff_id": self.handoff_id,
            "recipient": self.recipient,
            "policy": self.policy,
            "first_at": to_iso(self.first_at),
            "second_at": to_iso(self.second_at),
            "first": self.first,
            "second": self.second,
            "gap_minutes": round(self.gap_minutes, 3),
        }


@attrs.frozen
class StaleRunbook:
    """A policy whose runbook was not reviewed within the allowed age (or never)."""

    policy: str
    last_reviewed: date | None
    age_days: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "policy": self.policy,
            "last_reviewed": self.last_reviewed.isoformat() if self.last_reviewed else None,
            "age_days": self.age_days,
        }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pooled(rates: Iterable[BasisCounts]) -> BasisCounts:
    total = BasisCounts()
    for r in rates:
        total = total + r
    return total


@attrs.frozen
class WeeklyReview:
    """The "Prune Friday" sheet of one ISO week.

    :ivar history: the reviewed week and the ``weeks`` before it, oldest first.
    :ivar top_reason: the tagged reason with the most breaches (ties: by name).
    """

    week: str
    start: datetime
    end: datetime
    now: datetime
    timezone: str
    weeks: int
    duplicate_minutes: float
    runbook_max_age_days: int
    breaches: tuple[Breach, ...]
    reasons: tuple[ReasonGroup, ...]
    top_reason: ReasonGroup | None
    history: tuple[WeekRate, ...]
    silent_steps: tuple[SilentStep, ...]
    duplicates: tuple[DuplicateNotification, ...]
    stale_runbooks: tuple[StaleRunbook, ...]
    taxonomy: Mapping[str, str] = attrs.field(factory=dict, hash=False)

    @property
    def days(self) -> tuple[date, date]:
        """The first and last local day of the week."""
        zone = self.zone
        return self.start.astimezone(zone).date(), (self.end.astimezone(zone) - _DAY).date()

    @property
    def zone(self) -> ZoneInfo:
        """The review zone: weeks are cut in it and the sheet shows times in it."""
        return ZoneInfo(self.timezone)

    @property
    def this_week(self) -> WeekRate:
        """The reviewed week's hit rate."""
        return self.history[-1]

    @property
    def previous(self) -> BasisCounts:
        """Wall counts of the previous weeks pooled (see :attr:`previous_business`)."""
        return _pooled(w.wall for w in self.history[:-1])

    @property
    def previous_business(self) -> BasisCounts:
        """Business counts of the previous weeks pooled."""
        return _pooled(w.business for w in self.history[:-1])

    @property
    def untagged(self) -> tuple[Breach, ...]:
        """Breaches nobody has tagged with a reason."""
        return tuple(b for b in self.breaches if b.reason is None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``slakit review --json`` prints)."""
        return {
            "week": self.week,
            "start": to_iso(self.start),
            "end": to_iso(self.end),
            "now": to_iso(self.now),
            "timezone": self.timezone,
            "weeks": self.weeks,
            "breach_count": len(self.breaches),
            "untagged_count": len(self.untagged),
            "top_reason": self.top_reason.to_dict() if self.top_reason else None,
            "reasons": [r.to_dict() for r in self.reasons],
            "breaches": [b.to_dict() for b in self.breaches],
            "hit_rate": {
                "this_week": self.this_week.to_dict(),
                "previous": {
                    "weeks": len(self.history) - 1,
                    "wall": self.previous.to_dict(),
                    "business": self.previous_business.to_dict(),
                },
                "history": [w.to_dict() for w in self.history],
            },
            "silent_steps": [s.to_dict() for s in self.silent_steps],
            "duplicate_minutes": self.duplicate_minutes,
            "duplicates": [d.to_dict() for d in self.duplicates],
            "runbook_max_age_days": self.runbook_max_age_days,
            "stale_runbooks": [s.to_dict() for s in self.stale_runbooks],
        }

    # -- shown in both Markdown and HTML -------------------------------------------

    def _comparisons(self) -> list[str]:
        """The lines that set this week's hit rate against the previous weeks pooled."""
        prev_n = len(self.history) - 1
        return [
            f"{label}: {_pct(now_c.rate)} this week vs {_pct(prev_c.rate)} "
            f"over the previous {prev_n} weeks{_delta(now_c.rate, prev_c.rate)}."
            for label, now_c, prev_c in (
                ("Absolute", self.this_week.wall, self.previous),
                ("Adjusted", self.this_week.business, self.previous_business),
            )
        ]

    def _breach_cells(self, b: Breach) -> list[tuple[str, datetime | None]]:
        """One row of the breach table: each cell's text and, for times, the instant shown."""
        zone = self.zone
        flags = " ".join(f for f, on in (("breached", b.flagged), ("cancelled", b.cancelled)) if on)
        stopped = (_ts(b.stopped_at, zone), b.stopped_at) if b.stopped_at else ("open", None)
        return [
            (b.id, None),
            (b.policy, None),
            (b.owner or "", None),
            (b.reason or UNTAGGED, None),
            (_ts(b.started_at, zone), b.started_at),
            stopped,
            (_ts(b.deadline_at, zone), b.deadline_at),
            (flags, None),
        ]

    # -- Markdown -----------------------------------------------------------------

    def to_markdown(self) -> str:
        """The sheet as Markdown."""
        out: list[str] = []
        first_day, last_day = self.days
        out.append(f"# Prune Friday: {self.week}")
        out.append("")
        out.append(
            f"Week {first_day} to {last_day} ({self.timezone}); "
            f"generated {_ts(self.now, self.zone)}."
        )
        out += ["", "## Hit rate", ""]
        out.append(
            "| week | absolute (wall) | adjusted (business) | pending (wall) "
            "| pending (business) | excluded |"
        )
        out.append("|---|---|---|---|---|---|")
        for w in self.history:
            name = f"**{w.week}**" if w is self.this_week else w.week
            out.append(
                f"| {name} | {_pct(w.wall.rate)} ({w.wall.met}/{w.wall.evaluated}) "
                f"| {_pct(w.business.rate)} ({w.business.met}/{w.business.evaluated}) "
                f"| {w.wall.pending} | {w.business.pending} | {w.excluded} |"
            )
        out.append("")
        out += [f"- {line}" for line in self._comparisons()]
        out += ["", f"## Breaches ({len(self.breaches)})", ""]
        if not self.breaches:
            out.append("No breaches this week.")
        else:
            if self.top_reason is not None:
                top = self.top_reason
                desc = f": {_md(top.description)}" if top.description else ""
                out.append(f"Top reason: **{_md(top.label)}** ({top.count}){desc}")
            else:
                out.append("Top reason: none yet, no breach is tagged.")
            if self.untagged:
                out.append(
                    f"Untagged: {len(self.untagged)} breach(es) have no reason; "
                    "tag them with `slakit tag ID REASON`."
                )
            out += ["", "| reason | breaches | owners | description |", "|---|---|---|---|"]
            for r in self.reasons:
                label = "_(untagged)_" if r.reason is None else _md(r.reason)
                if r.reason is not None and not r.known:
                    label += " (not in taxonomy)"
                out.append(
                    f"| {label} | {r.count} | {_md(_owners(r))} | {_md(r.description or '')} |"
                )
            out += [
                "",
                "| " + " | ".join(_BREACH_COLUMNS) + " |",
                "|---" * len(_BREACH_COLUMNS) + "|",
            ]
            for b in self.breaches:
                out.append("| " + " | ".join(_md(t) for t, _ in self._breach_cells(b)) + " |")
        out += ["", f"## Steps that never fired (last {self.weeks} weeks)", ""]
        if not self.silent_steps:
            out.append("Every step fired at least once.")
        else:
            out += ["| policy | step | actions | handoffs in window |", "|---|---|---|---|"]
            for s in self.silent_steps:
                out.append(
                    f"| {_md(s.policy)} | `{s.step}` | {_md(', '.join(s.actions))} | {s.handoffs} |"
                )
        out += [
            "",
            f"## Redundant notifications (same person, same handoff, within "
            f"{self.duplicate_minutes:g} min)",
            "",
        ]
        if not self.duplicates:
            out.append("None.")
        else:
            out += ["| handoff | recipient | first | second | gap (min) |", "|---|---|---|---|---|"]
            for d in self.duplicates:
                out.append(
                    f"| {_md(d.handoff_id)} | {_md(d.recipient)} | {_md(d.first)} "
                    f"| {_md(d.second)} | {d.gap_minutes:.1f} |"
                )
        out += [
            "",
            f"## Runbooks not reviewed in {self.runbook_max_age_days} days",
            "",
        ]
        if not self.stale_runbooks:
            out.append("All runbooks are fresh.")
        else:
            out += ["| policy | last reviewed | age (days) |", "|---|---|---|"]
            for stale in self.stale_runbooks:
                out.append(
                    f"| {_md(stale.policy)} | {stale.last_reviewed or 'never'} "
                    f"| {stale.age_days if stale.age_days is not None else ''} |"
                )
        return "\n".join(out) + "\n"

    # -- HTML ---------------------------------------------------------------------

    def to_html(self) -> str:
        """A self-contained HTML page (inline CSS and SVG; nothing loaded from the network)."""
        e = _h
        parts: list[str] = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Prune Friday {e(self.week)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Prune Friday: {e(self.week)}</h1>",
            f'<p class="meta">{self.days[0]} to {self.days[1]} ({e(self.timezone)}); '
            f"generated {e(_ts(self.now, self.zone))}</p>",
            "<h2>Hit rate</h2>",
            hit_rate_chart(self.history),
        ]
        rows = []
        for w in self.history:
            cls = ' class="current"' if w is self.this_week else ""
            rows.append(
                f"<tr{cls}><td>{e(w.week)}</td>"
                f"<td>{_pct(w.wall.rate)} ({w.wall.met}/{w.wall.evaluated})</td>"
                f"<td>{_pct(w.business.rate)} ({w.business.met}/{w.business.evaluated})</td>"
                f"<td>{w.wall.pending}</td><td>{w.business.pending}</td>"
                f"<td>{w.excluded}</td></tr>"
            )
        parts.append(
            "<table><thead><tr><th>week</th><th>absolute (wall)</th><th>adjusted (business)</th>"
            "<th>pending (wall)</th><th>pending (business)</th><th>excluded</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>"
        )
        parts.append(_html_list(e(line) for line in self._comparisons()))
        parts.append(f"<h2>Breaches ({len(self.breaches)})</h2>")
        if not self.breaches:
            parts.append("<p>No breaches this week.</p>")
        else:
            top = self.top_reason
            if top is not None:
                desc = f": {e(top.description)}" if top.description else ""
                parts.append(
                    f"<p>Top reason: <strong>{e(top.label)}</strong> ({top.count}){desc}</p>"
                )
            else:
                parts.append("<p>Top reason: none yet, no breach is tagged.</p>")
            if self.untagged:
                parts.append(
                    f'<p class="warn">Untagged: {len(self.untagged)} breach(es) have no reason; '
                    "tag them with <code>slakit tag ID REASON</code>.</p>"
                )
            body = "".join(
                f"<tr><td>{_html_reason(r)}</td><td>{r.count}</td>"
                f"<td>{e(_owners(r))}</td>"
                f"<td>{e(r.description or '')}</td></tr>"
                for r in self.reasons
            )
            parts.append(
                "<table><thead><tr><th>reason</th><th>breaches</th><th>owners</th>"
                f"<th>description</th></tr></thead><tbody>{body}</tbody></table>"
            )
            head = "".join(f"<th>{c}</th>" for c in _BREACH_COLUMNS)
            cells = (
                "".join(_html_cell(text, at) for text, at in self._breach_cells(b))
                for b in self.breaches
            )
            body = "".join(f"<tr>{c}</tr>" for c in cells)
            parts.append(
                f'<table class="breaches"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>"
            )
        parts.append(f"<h2>Steps that never fired (last {self.weeks} weeks)</h2>")
        parts.append(
            _html_list(
                f"{e(s.policy)}: <code>{e(s.step)}</code> ({e(', '.join(s.actions))}); "
                f"{s.handoffs} handoffs in window"
                for s in self.silent_steps
            )
            or "<p>Every step fired at least once.</p>"
        )
        parts.append(
            "<h2>Redundant notifications (same person, same handoff, within "
            f"{self.duplicate_minutes:g} min)</h2>"
            + (
                _html_list(
                    f"{e(d.handoff_id)} → {e(d.recipient)}: {e(d.first)} then {e(d.second)} "
                    f"({d.gap_minutes:.1f} min)"
                    for d in self.duplicates
                )
                or "<p>None.</p>"
            )
        )
        parts.append(
            f"<h2>Runbooks not reviewed in {self.runbook_max_age_days} days</h2>"
            + (
                _html_list(
                    f"{e(s.policy)}: last reviewed {e(str(s.last_reviewed or 'never'))}"
                    + (f" ({s.age_days} days ago)" if s.age_days is not None else "")
                    for s in self.stale_runbooks
                )
                or "<p>All runbooks are fresh.</p>"
            )
        )
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


_CSS: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
    "h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em}"
    ".meta{color:#666}.warn{color:#b35900}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "tr.current{font-weight:bold;background:#f3f6fa}"
    "table.breaches td{white-space:nowrap}"
    "svg text{font-size:12px;fill:#333}"
)


#: The breach table's columns, in Markdown and HTML alike.
_BREACH_COLUMNS: Final = (
    "handoff",
    "policy",
    "owner",
    "reason",
    "started",
    "stopped",
    "deadline",
    "flag",
)


def _h(text: str) -> str:
    """Text as inert HTML: markup escaped, control characters written out."""
    return html.escape(escape_controls(text))


def _owners(r: ReasonGroup) -> str:
    """``ann ×2, (none) ×1``: the owners of a reason's breaches, most first."""
    return ", ".join(f"{o or '(none)'} ×{c}" for o, c in r.owners)


def _html_reason(r: ReasonGroup) -> str:
    if r.reason is None:
        return f"<em>{_h(UNTAGGED)}</em>"
    return f"<code>{_h(r.reason)}</code>" + ("" if r.known else " (not in taxonomy)")


def _html_cell(text: str, at: datetime | None) -> str:
    """A table cell; a time also carries its instant as ISO-8601 (``<time datetime=…>``)."""
    if at is None:
        return f"<td>{_h(text)}</td>"
    return f'<td><time datetime="{_h(to_iso(at) or "")}">{_h(text)}</time></td>'


def _html_list(items: Iterable[str]) -> str:
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f"<ul>{lis}</ul>" if lis else ""


def hit_rate_chart(history: Sequence[WeekRate], *, width: int = 760, height: int = 300) -> str:
    """An inline SVG line chart: weekly hit rate, absolute (wall) and adjusted (business).

    Each series has one ``<circle class="point">`` per week; a week with
    nothing evaluated gets a hollow marker on the axis (``class="point empty"``).
    """
    left, right, top, bottom = 56, 190, 20, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(history)

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n if n else 0)

    def y(rate: float) -> float:
        return top + plot_h * (1 - rate)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="hit-rate-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Weekly SLA hit rate, absolute and adjusted">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for pct in (0, 25, 50, 75, 100):
        yy = y(pct / 100)
        out.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" '
            f'stroke="{"#888" if pct == 0 else "#e3e3e3"}" stroke-width="1"/>'
        )
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end">{pct}%</text>')
    for i, w in enumerate(history):
        out.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 20}" text-anchor="middle">'
            f"{html.escape(w.week)}</text>"
        )
    for series, color, label, radius, dash in _SERIES:
        pts = [(i, getattr(w, series).rate) for i, w in enumerate(history)]
        line = " ".join(f"{x(i):.1f},{y(r):.1f}" for i, r in pts if r is not None)
        if line:
            out.append(
                f'<polyline class="series {series}" points="{line}" fill="none" '
                f'stroke="{color}" stroke-width="2.5"{dash}/>'
            )
        for (i, r), w in zip(pts, history, strict=True):
            if r is None:
                out.append(
                    f'<circle class="point empty {series}" data-week="{html.escape(w.week)}" '
                    f'cx="{x(i):.1f}" cy="{y(0):.1f}" r="4" fill="#fff" stroke="{color}">'
                    f"<title>{label} {html.escape(w.week)}: nothing evaluated</title></circle>"
                )
            else:
                out.append(
                    f'<circle class="point {series}" data-week="{html.escape(w.week)}" '
                    f'data-rate="{r:.6f}" cx="{x(i):.1f}" cy="{y(r):.1f}" r="{radius}" '
                    f'fill="{color}">'
                    f"<title>{label} {html.escape(w.week)}: {_pct(r)}</title></circle>"
                )
    lx = left + plot_w + 16
    for k, (_, color, label, _r, dash) in enumerate(_SERIES):
        ly = top + 14 + 22 * k
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{color}" '
            f'stroke-width="3"{dash}/>'
        )
        out.append(f'<text x="{lx + 26}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


# The adjusted series is drawn second, dashed and with smaller dots, so equal rates stay visible.
_SERIES: Final = (
    ("wall", "#1f6fb4", "absolute (wall)", 6, ""),
    ("business", "#e07b00", "adjusted (business)", 3.5, ' stroke-dasharray="6 4"'),
)


def _delta(now: float | None, prev: float | None) -> str:
    if now is None or prev is None:
        return ""
    points = (now - prev) * 100
    return f" ({points:+.1f} points)"


_MD_SPECIAL = str.maketrans(
    {
        "|": "\\|",
        "\n": " ",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "`": "\\`",
        # No link or image (a remote image loads when the sheet is viewed) without
        # brackets; and the backslash, which would undo these escapes.
        "\\": "\\\\",
        "[": "\\[",
        "]": "\\]",
    }
)


def _md(text: str) -> str:
    """Text from records (ids, owners, reasons) as inert Markdown: no table breaks, no
    HTML a renderer would run, no code spans."""
    return escape_controls(text.translate(_MD_SPECIAL))


def _ts(value: datetime | None, zone: ZoneInfo) -> str:
    """``2026-11-04 10:00 EST``: the instant on the review zone's clock, with its abbreviation
    (which also tells daylight time from standard time)."""
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


# -- building the review ------------------------------------------------------------


def build_review(
    store: RecordStore,
    policies: Mapping[str, Policy],
    *,
    week: str | tuple[int, int] | None = None,
    now: datetime | None = None,
    settings: ReviewSettings | None = None,
    breach_reasons: Mapping[str, str] | None = None,
) -> WeeklyReview:
    """Build the weekly review of ``week`` from ``store``.

    :param store: where the handoffs, traces and outbox rows are.
    :param policies: the configured policies (for steps and runbooks).
    :param week: ``"2026-W48"`` or ``(2026, 48)``; default the week containing ``now``.
    :param now: the instant open handoffs are judged at (default: the system time).
    :param settings: the ``[review]`` settings.
    :param breach_reasons: the breach-reason taxonomy (name → description).
    :returns: the review.
    :raises ValidationError: for a malformed week or a naive ``now``.
    """
    cfg = settings or ReviewSettings()
    tz = cfg.timezone
    when = ensure_aware("now", now) if now is not None else datetime.now(UTC)
    if week is None:
        year, wk = _week_of(when, tz)
    elif isinstance(week, str):
        year, wk = parse_week(week)
    else:
        year, wk = week
        parse_week(week_label(year, wk))
    start, end = week_bounds(year, wk, tz)
    taxonomy = dict(breach_reasons or {})

    history: list[WeekRate] = []
    for back in range(cfg.weeks, -1, -1):
        y, w = _shift_week(year, wk, -back)
        ws, we = week_bounds(y, w, tz)
        rep = hit_rate(store, since=ws, until=we, now=when)
        history.append(
            WeekRate(week_label(y, w), ws, we, rep.wall, rep.business, rep.total.excluded)
        )
    # "Never fired in the last N weeks": the reviewed week and the N - 1 before it.
    window_start = history[1].start

    breaches = _breaches(store, start, end, when)
    reasons = _reason_groups(breaches, taxonomy)
    tagged = [r for r in reasons if r.reason is not None]
    top = min(tagged, key=lambda r: (-r.count, r.label)) if tagged else None

    return WeeklyReview(
        week=week_label(year, wk),
        start=start,
        end=end,
        now=when,
        timezone=tz.key,
        weeks=cfg.weeks,
        duplicate_minutes=cfg.duplicate_minutes,
        runbook_max_age_days=cfg.runbook_max_age_days,
        breaches=tuple(breaches),
        reasons=tuple(reasons),
        top_reason=top,
        history=tuple(history),
        silent_steps=tuple(_silent_steps(store, policies, window_start, end, when)),
        duplicates=tuple(_duplicates(store, start, end, cfg.duplicate_minutes)),
        stale_runbooks=tuple(_stale_runbooks(policies, when, tz, cfg.runbook_max_age_days)),
        taxonomy=taxonomy,
    )


def review_from_engine(
    engine: Engine,
    *,
    week: str | tuple[int, int] | None = None,
    now: datetime | None = None,
    weeks: int | None = None,
) -> WeeklyReview:
    """:func:`build_review` with the engine's store, policies, taxonomy and ``[review]`` table.

    :param weeks: overrides ``[review] weeks``.
    :raises ConfigError: for a malformed ``[review]`` table.
    """
    settings = ReviewSettings.from_config(engine.config.get("review"))
    if weeks is not None:
        settings = attrs.evolve(settings, weeks=_positive_int("weeks", weeks, minimum=1))
    return build_review(
        engine.setup().store,
        engine.policies,
        week=week,
        now=now if now is not None else engine.clock.now(),
        settings=settings,
        breach_reasons=engine.breach_reasons,
    )


def _breaches(store: RecordStore, start: datetime, end: datetime, now: datetime) -> list[Breach]:
    out: list[Breach] = []
    for h in store.iter_handoffs(since=start, until=end):
        missed = h.cancelled_at is None and _code(h, h.deadline_at, now.astimezone(UTC)) == 1
        if not (missed or h.breached):
            continue
        out.append(
            Breach(
                id=h.id,
                policy=h.policy,
                owner=_owner_at_breach(store, h),
                reason=h.breach_reason,
                started_at=h.started_at,
                stopped_at=h.stopped_at,
                deadline_at=h.deadline_at,
                missed=missed,
                flagged=h.breached,
                cancelled=h.cancelled_at is not None,
                channel=h.channel,
                segment=h.segment,
            )
        )
    return out


def _owner_at_breach(store: RecordStore, h: Handoff) -> str | None:
    """The owner before the first reassignment: the person the breach happened to."""
    if h.stage == 0:
        return h.owner
    for t in store.traces(h.id):
        if t.action.startswith("reassign:") and t.outcome == "ok" and "from" in t.detail:
            previous = t.detail["from"]
            # None: the handoff had no owner when it was reassigned (the breach was nobody's).
            return previous if isinstance(previous, str) or previous is None else h.owner
    return h.owner


def _reason_groups(breaches: Sequence[Breach], taxonomy: Mapping[str, str]) -> list[ReasonGroup]:
    by_reason: dict[str | None, list[Breach]] = defaultdict(list)
    for b in breaches:
        by_reason[b.reason].append(b)
    groups = []
    for reason, items in by_reason.items():
        owners = Counter(b.owner for b in items)
        groups.append(
            ReasonGroup(
                reason=reason,
                description=taxonomy.get(reason) if reason is not None else None,
                known=reason is None or not taxonomy or reason in taxonomy,
                count=len(items),
                owners=tuple(sorted(owners.items(), key=lambda kv: (-kv[1], str(kv[0])))),
                ids=tuple(b.id for b in items),
            )
        )
    # Most breaches first; untagged last among equals so tagged reasons lead.
    groups.sort(key=lambda g: (-g.count, g.reason is None, g.label))
    return groups


def _silent_steps(
    store: RecordStore,
    policies: Mapping[str, Policy],
    start: datetime,
    end: datetime,
    now: datetime,
) -> list[SilentStep]:
    fired: set[tuple[str, str]] = set()
    for t in store.traces(since=start, until=end):
        if t.rule.startswith("step:") and t.action != "skip":
            fired.add((t.policy, t.rule[5:]))
    counts = hit_rate(store, since=start, until=end, by=("policy",), now=now)
    out: list[SilentStep] = []
    for name in sorted(policies):
        pol = policies[name]
        handoffs = counts.group(name).handoffs
        for step in pol.steps:
            if (name, step.at) not in fired:
                out.append(SilentStep(name, step.at, step.raw_actions, handoffs))
    return out


def _duplicates(
    store: RecordStore, start: datetime, end: datetime, minutes: float
) -> list[DuplicateNotification]:
    window = timedelta(minutes=minutes)
    # One notification goes to every configured notifier with the same key: count it once.
    seen: set[str] = set()
    by_person: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for item in store.outbox_window(since=start, until=end):
        n = item.notification
        if n.idempotency_key in seen:
            continue
        seen.add(n.idempotency_key)
        by_person[(n.handoff_id, n.recipient)].append(n)
    out: list[DuplicateNotification] = []
    for (hid, recipient), items in sorted(by_person.items()):
        items.sort(key=lambda n: (n.created_at, n.stage))
        for a, b in pairwise(items):
            if b.created_at - a.created_at <= window:
                out.append(
                    DuplicateNotification(
                        handoff_id=hid,
                        recipient=recipient,
                        policy=a.policy,
                        first_at=a.created_at,
                        second_at=b.created_at,
                        first=f"{a.step} {a.action}",
                        second=f"{b.step} {b.action}",
                    )
                )
    return out


def _stale_runbooks(
    policies: Mapping[str, Policy], now: datetime, tz: ZoneInfo, max_age: int
) -> list[StaleRunbook]:
    today = now.astimezone(tz).date()
    out: list[StaleRunbook] = []
    for name in sorted(policies):
        reviewed = policies[name].runbook.get("last_reviewed")
        if not isinstance(reviewed, date):
            out.append(StaleRunbook(name, None, None))
            continue
        age = (today - reviewed).days
        if age > max_age:
            out.append(StaleRunbook(name, reviewed, age))
    return out


# -- runbook --------------------------------------------------------------------------


def _fmt_minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:g} h"
    return f"{minutes:g} min"


def _as_lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, Iterable):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]


def render_runbook(
    policies: Mapping[str, Policy],
    name: str | None = None,
    *,
    notifiers: Sequence[str] = (),
    trace_sinks: Sequence[str] = (),
) -> str:
    """The one-page runbook of one policy (or of all, in name order) as Markdown.

    :param policies: the configured policies.
    :param name: the policy to render; ``None`` for all.
    :param notifiers: names of the configured notifiers, mentioned under "Trace".
    :param trace_sinks: names of the configured trace sinks, mentioned under "Trace".
    :raises UnknownPolicyError: when ``name`` is not configured.
    """
    if name is not None and name not in policies:
        raise UnknownPolicyError(name, list(policies))
    names = [name] if name is not None else sorted(policies)
    pages = [_runbook_page(policies[n], notifiers, trace_sinks) for n in names]
    return "\n---\n\n".join(pages)


def _runbook_page(pol: Policy, notifiers: Sequence[str], sinks: Sequence[str]) -> str:
    unset = "_not set_"
    # A blank answer is as unset as a missing one (preflight flags both).
    rb = {k: v for k, v in pol.runbook.items() if not (isinstance(v, str) and not v.strip())}
    pf = {k: v for k, v in pol.preflight.items() if not (isinstance(v, str) and not v.strip())}
    sla = timedelta(minutes=pol.sla_minutes)
    basis = "business" if pol.basis == "business" else "wall-clock"
    calendar = pol.calendar_name or "always open"
    stop = "first response" if pol.stop == "first_response" else "completion"
    consequence = pf.get("consequence") or "; ".join(
        f"at {s.at}: {', '.join(s.raw_actions)}" for s in pol.steps
    )
    trace = pf.get("trace") or unset
    routes = []
    if sinks:
        routes.append(f"trace sinks: {', '.join(sinks)}")
    if notifiers:
        routes.append(f"notifiers: {', '.join(notifiers)}")
    if routes:
        trace = f"{trace} ({'; '.join(routes)})"
    workflow = rb.get("workflow")
    workflow_md = unset
    if isinstance(workflow, str) and workflow:
        workflow_md = _md(workflow)
        if "://" in workflow:  # a link (from the config), its target kept whole
            target = workflow.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
            target = target.replace("|", "%7C")
            workflow_md = f"[{workflow_md}]({target})"
    reviewed = rb.get("last_reviewed")
    lines = [f"# Runbook: {pol.name}", ""]
    if rb.get("description"):
        lines += [f"> {_md(str(rb['description']))}", ""]
    rows = [
        ("Owner", str(rb.get("owner") or unset)),
        (
            "SLA",
            f"{pol.sla_minutes:g} {basis} minutes (calendar: {calendar}); "
            f"the clock stops at {stop}",
        ),
        ("Trigger", pf.get("trigger") or unset),
        ("Target", pf.get("target") or unset),
        ("Timer", pf.get("timer") or f"{pol.sla_minutes:g} {basis} minutes"),
        ("Trace", trace),
        ("Consequence", consequence),
        ("Backup owner", pol.backup_owner or "from each record"),
        ("Workflow", workflow_md),
        ("Last reviewed", reviewed.isoformat() if isinstance(reviewed, date) else "never"),
    ]
    lines += ["| | |", "|---|---|"]
    lines += [f"| **{k}** | {v if k == 'Workflow' else _md(v)} |" for k, v in rows]
    lines += ["", "## Steps", "", "| at | due after start | actions |", "|---|---|---|"]
    for s in sorted(pol.steps, key=lambda s: s.offset_for(sla)):
        lines.append(
            f"| `{s.at}` | {_fmt_minutes(s.offset_for(sla))} ({pol.basis}) "
            f"| {', '.join(s.raw_actions)} |"
        )
    lines += ["", "## Failure modes", ""]
    modes = _as_lines(rb.get("failure_modes"))
    lines += [f"- {m}" for m in modes] if modes else [unset]
    lines += ["", "## Rollback", ""]
    rollback = _as_lines(rb.get("rollback"))
    lines += [f"- {m}" for m in rollback] if len(rollback) > 1 else (rollback or [unset])
    lines += ["", "## When something looks wrong", "", *_CHECKS]
    return "\n".join(lines) + "\n"


#: The same first checks for every policy: is the worker running, did alerts die.
_CHECKS = (
    "- `slakit status`: steps or notifications due for minutes mean no `slakit run` "
    "is working the store; restart it.",
    "- `slakit outbox --state dead`: alerts that failed for good, with the error; fix the "
    "notifier, then `slakit requeue --all --open-only`.",
    "- `slakit show ID`: one handoff's record, escalations, notifications and trace.",
)
