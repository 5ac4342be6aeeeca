"""The weekly review ("Prune Friday") and the runbook."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import slakit
from slakit.errors import ConfigError, UnknownPolicyError, ValidationError
from slakit.records import OutboxItem
from slakit.review import (
    ReviewSettings,
    WeeklyReview,
    build_review,
    hit_rate_chart,
    parse_week,
    render_runbook,
    review_from_engine,
    week_bounds,
)

MON = datetime(2026, 11, 23, tzinfo=UTC)  # Monday of 2026-W48
NOW = MON + timedelta(days=4, hours=12)  # Friday noon

LEAD_STEPS = [
    {"at": "-10m", "do": ["notify:owner"]},
    {"at": "1x", "do": ["notify:owner"]},
    {"at": "2x", "do": ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"]},
    {"at": "10x", "do": ["notify:@head-of-sales"]},
]

CONFIG: dict[str, Any] = {
    "policies": {
        "lead": {
            "basis": "wall",
            "sla_minutes": 30,
            "steps": LEAD_STEPS,
            "owner": "@sales-ops",
            "trigger": "a qualified lead arrives",
            "trace": "ops-log.jsonl",
            "last_reviewed": "2026-11-25",
            "description": "Every qualified lead gets a human response within 30 minutes.",
            "failure_modes": ["CRM webhook down", "no backup owner"],
            "rollback": "set sla_minutes back to 30",
            "workflow": "https://example.com/flows/lead",
        },
        "ticket": {"basis": "wall", "sla_minutes": 60, "stop": "completion"},
        "old": {"basis": "wall", "sla_minutes": 60, "last_reviewed": "2026-11-01"},
    },
    "breach_reasons": {
        "no_backup": {"description": "No backup owner on the record"},
        "routing_error": {"description": "Routed to the wrong team"},
        "owner_out_of_office": {"description": "Owner away"},
    },
}


def run(
    engine: slakit.Engine,
    events: Iterable[tuple[datetime, str, dict[str, Any]]],
    until: datetime,
    start: datetime,
) -> None:
    """Apply events in time order with a checker running every five minutes in between."""
    pending = sorted(events, key=lambda e: e[0])
    t = start
    i = 0
    while t <= until:
        while i < len(pending) and pending[i][0] <= t:
            at, kind, kw = pending[i]
            getattr(engine, kind)(**kw, **({"at": at} if kind != "start" else {}))
            i += 1
        engine.check(t)
        t += timedelta(minutes=5)


def h(day: int, hour: int, minute: int = 0, base: datetime = MON) -> datetime:
    return base + timedelta(days=day, hours=hour, minutes=minute)


def scenario() -> slakit.Engine:
    engine = slakit.Engine.from_config(CONFIG, clock=slakit.ManualClock(MON))
    events: list[tuple[datetime, str, dict[str, Any]]] = []

    def start(at: datetime, hid: str, **kw: Any) -> None:
        events.append((at, "start", {"id": hid, "policy": "lead", "started_at": at, **kw}))

    # Previous weeks: met, missed, met, cancelled.
    for back, fate in zip((4, 3, 2, 1), ("met", "missed", "met", "cancel"), strict=True):
        at = MON - timedelta(weeks=back) + timedelta(hours=9)
        start(at, f"w{back}", owner="ann", backup_owner="bob")
        if fate == "cancel":
            events.append((at + timedelta(minutes=5), "cancel", {"id": f"w{back}"}))
        else:
            delay = 10 if fate == "met" else 40
            events.append((at + timedelta(minutes=delay), "respond", {"id": f"w{back}"}))
    # This week.
    start(h(0, 9), "h1", owner="ann", backup_owner="bob", channel="web")
    events.append((h(0, 9, 5), "respond", {"id": "h1"}))
    start(h(0, 10), "h2", owner="ann", backup_owner="bob", channel="web")
    events.append((h(0, 11, 30), "respond", {"id": "h2"}))
    start(h(1, 9), "h3", owner="cat", channel="phone")
    events.append((h(1, 10, 30), "respond", {"id": "h3"}))
    start(h(2, 9), "h4", owner="dan", backup_owner="eve", channel="phone")
    events.append((h(2, 9, 45), "respond", {"id": "h4"}))
    start(h(2, 12), "h5", owner="dan", backup_owner="eve")
    events.append((h(2, 12, 5), "cancel", {"id": "h5"}))
    run(engine, events, until=NOW, start=MON - timedelta(weeks=4))
    engine.tag_breach("h2", "routing_error")
    engine.tag_breach("h4", "routing_error")
    return engine


@pytest.fixture(scope="module")
def sheet() -> WeeklyReview:
    engine = scenario()
    return review_from_engine(engine, now=NOW)


class TestParseWeek:
    def test_parses_iso_weeks(self) -> None:
        """``2026-W48`` and ``2026W48`` parse to (2026, 48)."""
        assert parse_week("2026-W48") == (2026, 48)
        assert parse_week("2026w48") == (2026, 48)

    @pytest.mark.parametrize("text", ["2026-48", "W48", "2026-W", "", "2025-W53", "2026-W00"])
    def test_rejects_bad_weeks(self, text: str) -> None:
        """Malformed or non-existent weeks raise, naming ``week``."""
        with pytest.raises(ValidationError, match="week"):
            parse_week(text)


class TestWeekBounds:
    def test_utc_week(self) -> None:
        """A UTC week runs Monday 00:00 to Monday 00:00."""
        start, end = week_bounds(2026, 48)
        assert (start, end) == (MON, MON + timedelta(days=7))

    def test_spring_forward_week_is_167_hours(self) -> None:
        """In New York the week of the spring-forward Sunday is 167 hours long."""
        start, end = week_bounds(2026, 10, "America/New_York")
        assert start == datetime(2026, 3, 2, 5, tzinfo=UTC)
        assert (end - start) == timedelta(hours=167)

    def test_fall_back_week_is_169_hours(self) -> None:
        """The week of the fall-back Sunday is 169 hours long."""
        start, end = week_bounds(2026, 44, "America/New_York")
        assert (end.astimezone(UTC) - start.astimezone(UTC)) == timedelta(hours=169)


class TestReviewSettings:
    def test_defaults(self) -> None:
        """UTC, four weeks, 15 minutes, seven days."""
        s = ReviewSettings.from_config(None)
        assert (s.timezone.key, s.weeks, s.duplicate_minutes, s.runbook_max_age_days) == (
            "UTC",
            4,
            15.0,
            7,
        )

    def test_reads_the_table(self) -> None:
        """Every key of ``[review]`` is read."""
        s = ReviewSettings.from_config(
            {
                "timezone": "Europe/Paris",
                "weeks": 8,
                "duplicate_minutes": 5,
                "runbook_max_age_days": 30,
            }
        )
        assert (s.timezone, s.weeks, s.duplicate_minutes, s.runbook_max_age_days) == (
            ZoneInfo("Europe/Paris"),
            8,
            5.0,
            30,
        )

    @pytest.mark.parametrize(
        ("table", "field"),
        [
            ({"colour": "red"}, "review.colour"),
            ({"timezone": "Mars/Olympus"}, "review.timezone"),
            ({"weeks": 0}, "review.weeks"),
            ({"weeks": True}, "review.weeks"),
            ({"duplicate_minutes": -1}, "review.duplicate_minutes"),
            ({"runbook_max_age_days": 1.5}, "review.runbook_max_age_days"),
        ],
    )
    def test_rejects_bad_values(self, table: dict[str, Any], field: str) -> None:
        """A bad key or value raises a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            ReviewSettings.from_config(table)
        assert info.value.field == field


class TestWeeklyReview:
    def test_breaches_grouped_by_reason(self, sheet: WeeklyReview) -> None:
        """Breaches group by reason with counts and owners; the untagged one is listed as such."""
        assert sorted(b.id for b in sheet.breaches) == ["h2", "h3", "h4"]
        groups = {r.reason: r for r in sheet.reasons}
        assert groups["routing_error"].count == 2
        assert dict(groups["routing_error"].owners) == {"ann": 1, "dan": 1}
        assert groups["routing_error"].description == "Routed to the wrong team"
        assert groups[None].ids == ("h3",)
        assert groups[None].label == "(untagged)"
        assert [b.id for b in sheet.untagged] == ["h3"]

    def test_top_reason(self, sheet: WeeklyReview) -> None:
        """The top reason is the tagged reason with the most breaches."""
        assert sheet.top_reason is not None
        assert sheet.top_reason.reason == "routing_error"

    def test_owner_is_the_one_the_breach_happened_to(self, sheet: WeeklyReview) -> None:
        """A breach that was reassigned to the backup is listed under the original owner."""
        h2 = next(b for b in sheet.breaches if b.id == "h2")
        assert (h2.owner, h2.flagged, h2.missed) == ("ann", True, True)
        h4 = next(b for b in sheet.breaches if b.id == "h4")
        assert (h4.flagged, h4.missed) == (False, True)

    def test_hit_rate_this_week_and_previous(self, sheet: WeeklyReview) -> None:
        """Five weeks of history, oldest first; the previous four are pooled."""
        assert [w.week for w in sheet.history] == [
            "2026-W44",
            "2026-W45",
            "2026-W46",
            "2026-W47",
            "2026-W48",
        ]
        assert [w.wall.rate for w in sheet.history] == [1.0, 0.0, 1.0, None, 0.25]
        assert sheet.this_week.excluded == 1
        assert sheet.previous.met == 2
        assert sheet.previous.rate == pytest.approx(2 / 3)
        assert sheet.previous_business.evaluated == 3

    def test_steps_that_never_fired(self, sheet: WeeklyReview) -> None:
        """Steps with no firing in the last four weeks are listed, with the handoff count."""
        silent = {(s.policy, s.step): s.handoffs for s in sheet.silent_steps}
        assert silent[("lead", "10x")] == 8
        assert silent[("ticket", "1x")] == 0
        assert ("lead", "1x") not in silent
        assert ("lead", "-10m") not in silent

    def test_redundant_notifications(self, sheet: WeeklyReview) -> None:
        """The warning and the 1x notice ten minutes apart to one person count as redundant."""
        pairs = {(d.handoff_id, d.recipient, d.first, d.second) for d in sheet.duplicates}
        assert pairs == {
            ("h2", "ann", "-10m notify:owner", "1x notify:owner"),
            ("h3", "cat", "-10m notify:owner", "1x notify:owner"),
            ("h4", "dan", "-10m notify:owner", "1x notify:owner"),
        }
        assert all(d.gap_minutes == 10 for d in sheet.duplicates)

    def test_reads_only_the_weeks_outbox_rows(self, sheet: WeeklyReview) -> None:
        """Redundant notifications come from the week's outbox rows, selected by the store."""
        engine = scenario()
        store = engine.store
        windows: list[tuple[datetime, datetime]] = []
        whole = store.outbox_window

        def window(*, since: datetime, until: datetime) -> list[OutboxItem]:
            windows.append((since, until))
            return whole(since=since, until=until)

        store.outbox_window = window  # type: ignore[method-assign]
        again = review_from_engine(engine, now=NOW)
        assert windows == [(sheet.start, sheet.end)]
        assert again.duplicates == sheet.duplicates
        # Earlier weeks have rows of their own, which the window leaves out.
        assert any(i.notification.created_at < sheet.start for i in store.outbox())

    def test_stale_runbooks(self, sheet: WeeklyReview) -> None:
        """Runbooks reviewed more than seven days ago, or never, are stale."""
        stale = {s.policy: s for s in sheet.stale_runbooks}
        assert set(stale) == {"old", "ticket"}
        assert stale["old"].age_days == 26
        assert stale["ticket"].last_reviewed is None

    def test_markdown(self, sheet: WeeklyReview) -> None:
        """The Markdown sheet has every section and names the untagged breach."""
        md = sheet.to_markdown()
        for heading in (
            "# Prune Friday: 2026-W48",
            "## Hit rate",
            "## Breaches (3)",
            "## Steps that never fired (last 4 weeks)",
            "## Redundant notifications",
            "## Runbooks not reviewed in 7 days",
        ):
            assert heading in md
        assert "Top reason: **routing_error** (2)" in md
        assert "_(untagged)_ | 1 | cat ×1" in md
        assert "| **2026-W48** | 25.0% (1/4)" in md

    def test_json(self, sheet: WeeklyReview) -> None:
        """The JSON form carries the same numbers."""
        data = json.loads(json.dumps(sheet.to_dict()))
        assert data["week"] == "2026-W48"
        assert data["breach_count"] == 3
        assert data["untagged_count"] == 1
        assert data["top_reason"]["reason"] == "routing_error"
        assert data["hit_rate"]["this_week"]["wall"]["rate"] == 0.25
        assert len(data["hit_rate"]["history"]) == 5

    def test_html_is_self_contained(self, sheet: WeeklyReview) -> None:
        """The HTML page loads nothing from anywhere: no scripts, links or remote sources."""
        page = sheet.to_html()
        assert "<script" not in page
        assert "<link" not in page
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
        assert page.count('class="point wall"') + page.count('class="point empty wall"') == 5
        assert page.count('data-week="2026-W47"') == 2

    def test_weeks_option(self) -> None:
        """``weeks`` sets the history length and the never-fired window."""
        engine = scenario()
        short = review_from_engine(engine, now=NOW, weeks=1)
        assert [w.week for w in short.history] == ["2026-W47", "2026-W48"]

    def test_week_defaults_to_the_one_containing_now(self) -> None:
        """Without a week, the review covers the ISO week containing ``now`` in its zone."""
        engine = slakit.Engine.from_config(
            {**CONFIG, "review": {"timezone": "America/New_York"}},
            clock=slakit.ManualClock(MON),
        )
        # Sunday 23:30 in New York is already Monday in UTC.
        sunday_night = datetime(2026, 11, 29, 23, 30, tzinfo=ZoneInfo("America/New_York"))
        engine.start("late", policy="lead", owner="ann", started_at=sunday_night)
        sheet = review_from_engine(engine, now=sunday_night + timedelta(minutes=10))
        assert sheet.week == "2026-W48"
        assert sheet.timezone == "America/New_York"
        assert sheet.this_week.wall.pending == 1
        utc = build_review(
            engine.store,
            engine.policies,
            week="2026-W48",
            now=sunday_night + timedelta(minutes=10),
        )
        assert utc.this_week.wall.pending == 0

    def test_empty_store(self) -> None:
        """An empty store gives an empty review, not an error."""
        engine = slakit.Engine.from_config(CONFIG, clock=slakit.ManualClock(MON))
        sheet = review_from_engine(engine, now=NOW, week="2026-W48")
        assert sheet.breaches == ()
        assert sheet.top_reason is None
        assert "No breaches this week." in sheet.to_markdown()
        assert "nothing evaluated" in sheet.to_html()

    def test_unknown_reason_is_marked(self) -> None:
        """A reason tagged before the taxonomy changed is shown as not in the taxonomy."""
        engine = scenario()
        sheet = build_review(
            engine.store,
            engine.policies,
            now=NOW,
            breach_reasons={"no_backup": "No backup"},
        )
        group = next(r for r in sheet.reasons if r.reason == "routing_error")
        assert group.known is False
        assert "(not in taxonomy)" in sheet.to_markdown()


class TestChart:
    def test_one_point_per_week_per_series(self, sheet: WeeklyReview) -> None:
        """Each series has exactly one marker per week."""
        svg = hit_rate_chart(sheet.history)
        for series in ("wall", "business"):
            weeks = re.findall(rf'class="point (?:empty )?{series}" data-week="([^"]+)"', svg)
            assert weeks == [w.week for w in sheet.history]


class TestRunbook:
    def test_one_policy(self) -> None:
        """The runbook shows owner, SLA, trigger, trace, consequence, failure modes, rollback."""
        engine = slakit.Engine.from_config(CONFIG)
        text = render_runbook(engine.policies, "lead", trace_sinks=["jsonl"])
        assert text.startswith("# Runbook: lead")
        for needle in (
            "| **Owner** | @sales-ops |",
            "30 wall-clock minutes",
            "| **Trigger** | a qualified lead arrives |",
            "ops-log.jsonl (trace sinks: jsonl)",
            "at 2x: mark_breached, reassign:backup, notify:owner, notify:backup",
            "- CRM webhook down",
            "set sla_minutes back to 30",
            "[https://example.com/flows/lead](https://example.com/flows/lead)",
            "| **Last reviewed** | 2026-11-25 |",
            "| `-10m` | 20 min (wall)",
            "| `10x` | 5 h (wall)",
            "## When something looks wrong",
            "`slakit requeue --all --open-only`",
        ):
            assert needle in text

    def test_all_policies(self) -> None:
        """Without a name, every policy gets a page, in name order; unset fields say so."""
        engine = slakit.Engine.from_config(CONFIG)
        text = render_runbook(engine.policies)
        assert re.findall(r"^# Runbook: (\S+)", text, re.M) == [
            "lead",
            "old",
            "ticket",
        ]
        assert "| **Owner** | _not set_ |" in text
        assert "| **Last reviewed** | never |" in text

    def test_a_blank_answer_shows_as_not_set(self) -> None:
        """Preflight counts an answer of spaces as missing; so does the runbook."""
        policy = slakit.Policy.from_config(
            {"sla_minutes": 30, "trigger": "   ", "target": "", "owner": " "},
            name="a",
        )
        text = render_runbook({"a": policy})
        for field in ("Owner", "Trigger", "Target"):
            assert f"| **{field}** | _not set_ |" in text

    def test_unknown_policy(self) -> None:
        """An unknown policy raises, listing the configured ones."""
        engine = slakit.Engine.from_config(CONFIG)
        with pytest.raises(UnknownPolicyError, match="configured: lead, old, ticket"):
            render_runbook(engine.policies, "nope")


def one_late_lead(config: dict[str, Any] = CONFIG, **record: Any) -> slakit.Engine:
    """An engine where one lead (``p1`` unless ``id`` says otherwise), started Monday at
    09:00, ran to noon without an answer: breached."""
    engine = slakit.Engine.from_config(config, clock=slakit.ManualClock(MON))
    start = {"id": "p1", "policy": "lead", "started_at": h(0, 9), **record}
    run(engine, [(h(0, 9), "start", start)], until=h(0, 12), start=h(0, 9))
    return engine


def test_an_owner_with_a_pipe_keeps_the_markdown_table_whole() -> None:
    """``ops|east`` in the reasons table's owners cell is escaped, as in the breach rows."""
    engine = one_late_lead(owner="ops|east")
    md = review_from_engine(engine, now=NOW).to_markdown()
    row = next(line for line in md.splitlines() if "ops" in line and "×" in line)
    assert "ops\\|east ×1" in row
    assert row.count(" | ") == 3  # four cells: reason, breaches, owners, description


def test_last_reviewed_is_a_date() -> None:
    """``last_reviewed`` arrives as a date from config (the stale check relies on it)."""
    engine = slakit.Engine.from_config(CONFIG)
    assert engine.policies["lead"].runbook["last_reviewed"] == date(2026, 11, 25)


def test_html_and_code_in_records_stay_inert_in_the_markdown() -> None:
    """An owner holding HTML or backticks is escaped, not passed to a Markdown renderer."""
    owner = '<script>alert(1)</script>"`x`&'
    engine = one_late_lead(owner=owner)
    md = review_from_engine(engine, now=NOW).to_markdown()
    assert "<script>" not in md
    assert '&lt;script&gt;alert(1)&lt;/script&gt;"\\`x\\`&amp;' in md


def test_links_images_and_tags_in_records_stay_inert_in_the_markdown() -> None:
    """An owner holding a Markdown image (a tracking pixel when the sheet is viewed) and
    a breach reason holding a script or table pipes: escaped wherever they appear,
    the top-reason line and the reasons table included."""
    config = {k: v for k, v in CONFIG.items() if k != "breach_reasons"}
    owner = "![x](http://evil.example/p.png)"
    engine = one_late_lead(config, owner=owner)
    engine.tag_breach("p1", "<script>alert(2)</script> | `x` \\[y](z)")
    md = review_from_engine(engine, now=NOW).to_markdown()
    assert "![x](" not in md
    assert "!\\[x\\](http://evil.example/p.png)" in md
    assert "<script>" not in md
    top = next(line for line in md.splitlines() if line.startswith("Top reason:"))
    assert top.startswith("Top reason: **&lt;script&gt;alert(2)&lt;/script&gt; \\| \\`x\\`")
    assert "\\\\\\[y\\](z)" in top  # the backslash escaped too, so the bracket stays one
    row = next(line for line in md.splitlines() if line.startswith("| &lt;script"))
    assert row.count(" | ") == 3  # four cells: the pipe in the reason does not split it


def test_a_breach_with_no_owner_stays_nobodys_after_a_reassignment() -> None:
    """Reassigned from no owner to the backup: the breach happened to nobody, not the backup."""
    engine = one_late_lead(id="n1", backup_owner="erin")
    assert engine.get("n1").owner == "erin"
    (breach,) = [b for b in review_from_engine(engine, now=NOW).breaches if b.id == "n1"]
    assert breach.owner is None


NY = ZoneInfo("America/New_York")


def new_york_sheet() -> WeeklyReview:
    """2026-W45 in New York: a lead that arrived at 10:00 local time, and one the week before."""
    config = {**CONFIG, "review": {"timezone": "America/New_York"}}
    engine = slakit.Engine.from_config(config, clock=slakit.ManualClock(MON))
    arrived = datetime(2026, 11, 4, 10, tzinfo=NY)  # 15:00 UTC, after the fall-back Sunday
    events: list[tuple[datetime, str, dict[str, Any]]] = [
        (arrived, "start", {"id": "ny1", "policy": "lead", "started_at": arrived, "owner": "ann"}),
        (arrived + timedelta(minutes=90), "respond", {"id": "ny1"}),
    ]
    earlier = datetime(2026, 10, 28, 10, tzinfo=NY)  # 14:00 UTC, still on daylight time
    events += [
        (earlier, "start", {"id": "ny0", "policy": "lead", "started_at": earlier, "owner": "bob"}),
        (earlier + timedelta(minutes=10), "respond", {"id": "ny0"}),
    ]
    run(engine, events, until=arrived + timedelta(hours=3), start=earlier)
    engine.tag_breach("ny1", "routing_error")
    return review_from_engine(engine, week="2026-W45", now=datetime(2026, 11, 6, 17, tzinfo=UTC))


class TestTimesInTheReviewZone:
    def test_markdown_breach_row_shows_local_times(self) -> None:
        """A lead that arrived at 10:00 in New York is listed as started at 10:00 EST, not 15:00."""
        md = new_york_sheet().to_markdown()
        row = next(line for line in md.splitlines() if line.startswith("| ny1 |"))
        assert row == (
            "| ny1 | lead | ann | routing_error | 2026-11-04 10:00 EST | 2026-11-04 11:30 EST "
            "| 2026-11-04 10:30 EST | breached |"
        )
        assert "15:00" not in md

    def test_markdown_header_shows_generated_in_the_zone(self) -> None:
        """The time the sheet was generated is shown in the review zone too."""
        md = new_york_sheet().to_markdown()
        assert (
            "Week 2026-11-02 to 2026-11-08 (America/New_York); generated 2026-11-06 12:00 EST."
            in md
        )

    def test_daylight_time_is_named(self) -> None:
        """A breach before the fall-back Sunday shows EDT, the offset it happened under."""
        config = {**CONFIG, "review": {"timezone": "America/New_York"}}
        engine = slakit.Engine.from_config(config, clock=slakit.ManualClock(MON))
        at = datetime(2026, 10, 28, 10, tzinfo=NY)
        start = {"id": "d1", "policy": "lead", "started_at": at, "owner": "ann"}
        run(engine, [(at, "start", start)], until=at + timedelta(hours=1), start=at)
        sheet = review_from_engine(engine, week="2026-W44", now=at + timedelta(hours=1))
        row = next(line for line in sheet.to_markdown().splitlines() if line.startswith("| d1 |"))
        assert "| 2026-10-28 10:00 EDT | open | 2026-10-28 10:30 EDT |" in row

    def test_utc_review_says_utc(self, sheet: WeeklyReview) -> None:
        """A review in UTC labels its times UTC."""
        md = sheet.to_markdown()
        row = next(line for line in md.splitlines() if line.startswith("| h2 |"))
        assert "| 2026-11-23 10:00 UTC | 2026-11-23 11:30 UTC | 2026-11-23 10:30 UTC |" in row

    def test_html_header_shows_generated_in_the_zone(self) -> None:
        """The page's header gives the generation time in the review zone."""
        assert "generated 2026-11-06 12:00 EST" in new_york_sheet().to_html()

    def test_json_keeps_iso_instants(self) -> None:
        """``--json`` keeps ISO-8601 instants with their offset (UTC), as before."""
        data = new_york_sheet().to_dict()
        (breach,) = data["breaches"]
        assert breach["started_at"] == "2026-11-04T15:00:00+00:00"
        assert breach["deadline_at"] == "2026-11-04T15:30:00+00:00"
        assert data["now"] == "2026-11-06T17:00:00+00:00"
        assert data["timezone"] == "America/New_York"


class TestHtmlMatchesMarkdown:
    def test_html_shows_local_times(self) -> None:
        """The HTML page shows the same local times, with the instant in machine form."""
        page = new_york_sheet().to_html()
        assert "2026-11-04 10:00 EST" in page
        assert "2026-11-04 11:30 EST" in page
        assert '<time datetime="2026-11-04T15:00:00+00:00">2026-11-04 10:00 EST</time>' in page
        assert "generated 2026-11-06 12:00 EST" in page
        assert "15:00 " not in page

    def test_comparison_lines(self, sheet: WeeklyReview) -> None:
        """The page has the this-week-vs-previous-weeks lines the Markdown has."""
        page = sheet.to_html()
        md = sheet.to_markdown()
        lines = [
            "Absolute: 25.0% this week vs 66.7% over the previous 4 weeks (-41.7 points).",
            "Adjusted: 25.0% this week vs 66.7% over the previous 4 weeks (-41.7 points).",
        ]
        for line in lines:
            assert f"- {line}" in md
            assert f"<li>{line}</li>" in page

    def test_every_breach_has_a_row(self, sheet: WeeklyReview) -> None:
        """Each breach is a row of the page's breach table, with the Markdown's cells."""
        page = sheet.to_html()
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)
        for b in sheet.breaches:
            (row,) = [r for r in rows if r.startswith(f"<td>{b.id}</td>")]
            cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)]
            md_row = next(
                line for line in sheet.to_markdown().splitlines() if line.startswith(f"| {b.id} |")
            )
            assert cells == [c.strip() for c in md_row.strip("|").split("|")]
        h3 = next(r for r in rows if r.startswith("<td>h3</td>"))
        assert "<td>cat</td><td>(untagged)</td>" in h3

    def test_top_reason_and_untagged_hint(self, sheet: WeeklyReview) -> None:
        """The top reason's description and the untagged hint appear on the page too."""
        page = sheet.to_html()
        assert "Top reason: <strong>routing_error</strong> (2): Routed to the wrong team" in page
        assert "tag them with <code>slakit tag ID REASON</code>" in page

    def test_record_text_is_escaped(self) -> None:
        """Ids and owners holding HTML are escaped in the breach rows."""
        owner = '<img src=x onerror=alert(1)>"&'
        engine = one_late_lead(id="<b>x</b>", owner=owner)
        page = review_from_engine(engine, now=NOW).to_html()
        assert "<img" not in page
        assert "<b>x</b>" not in page
        assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in page
        assert "<td>&lt;img src=x onerror=alert(1)&gt;&quot;&amp;</td>" in page
