"""Preflight: the five decisions, resolvable targets, calendars with open time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import slakit
from slakit.preflight import Gap, preflight, preflight_engine

NOW = datetime(2026, 11, 23, 14, tzinfo=UTC)

DECISIONS = {
    "trigger": "a qualified lead arrives in the CRM",
    "target": "the lead owner replies by e-mail or phone",
    "timer": "30 business minutes on the sales-east calendar",
    "trace": "ops-log.jsonl and the store's trace table",
    "consequence": "at 2x the lead is reassigned to the backup and marked breached",
}
HOURS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def config(**policy: Any) -> dict[str, Any]:
    table = {"calendar": "east", "sla_minutes": 30, **DECISIONS, **policy}
    return {
        "calendars": {"east": {"timezone": "America/New_York", "hours": HOURS}},
        "policies": {"lead": table},
    }


class TestDecisions:
    def test_clean_policy_passes(self) -> None:
        """A policy answering all five decisions with a backup owner has no gap."""
        engine = slakit.Engine.from_config(config(backup_owner="team-lead"))
        report = preflight_engine(engine, now=NOW)
        assert report.ok
        assert report.lines() == []
        assert report.policies == ("lead",)

    def test_each_missing_decision_is_one_line(self) -> None:
        """Every unanswered decision is one line naming the policy and the decision."""
        engine = slakit.Engine.from_config(
            {"policies": {"bare": {"sla_minutes": 30, "backup_owner": "x"}}}
        )
        report = preflight_engine(engine, now=NOW)
        assert [g.field for g in report.gaps] == [
            "trigger",
            "target",
            "timer",
            "trace",
            "consequence",
        ]
        assert all(line.startswith("bare: ") for line in report.lines())
        assert 'trigger = "..." in [policies.bare]' in report.lines()[0]

    def test_blank_text_is_not_an_answer(self) -> None:
        """Whitespace does not answer a decision."""
        engine = slakit.Engine.from_config(config(backup_owner="x", trace="   "))
        report = preflight_engine(engine, now=NOW)
        assert [(g.check, g.field) for g in report.gaps] == [("decision", "trace")]


class TestTargets:
    def test_backup_without_policy_default_or_data(self) -> None:
        """With no backup on the policy and no stored handoff, backup targets are a gap."""
        engine = slakit.Engine.from_config(config())
        report = preflight_engine(engine, now=NOW)
        assert len(report.gaps) == 1
        gap = report.gaps[0]
        assert (gap.policy, gap.check) == ("lead", "target")
        assert "reassign:backup" in gap.field
        assert "notify:backup" in gap.field
        assert "no stored handoff carries one" in gap.message

    def test_backup_present_in_data(self) -> None:
        """Every stored handoff carrying a backup resolves the target."""
        engine = slakit.Engine.from_config(config(), clock=slakit.ManualClock(NOW))
        engine.start("a", owner="ann", backup_owner="bob")
        assert preflight_engine(engine, now=NOW).ok

    def test_backup_missing_on_some_records(self) -> None:
        """Records without a backup are counted in the gap."""
        engine = slakit.Engine.from_config(config(), clock=slakit.ManualClock(NOW))
        engine.start("a", owner="ann", backup_owner="bob")
        engine.start("b", owner="ann")
        (gap,) = preflight_engine(engine, now=NOW).gaps
        assert "1 of 2 stored handoffs have no backup_owner" in gap.message

    def test_owner_missing_on_records(self) -> None:
        """A stored handoff without an owner leaves notify:owner without a target."""
        engine = slakit.Engine.from_config(config(backup_owner="x"), clock=slakit.ManualClock(NOW))
        engine.start("a")
        (gap,) = preflight_engine(engine, now=NOW).gaps
        assert gap.field == "notify:owner"
        assert "1 of 1 stored handoffs have no owner" in gap.message

    def test_handles_always_resolve(self) -> None:
        """``notify:@handle`` and ``reassign:@handle`` need nothing from the data."""
        steps = [{"at": "1x", "do": ["notify:@oncall", "reassign:@team", "mark_breached"]}]
        engine = slakit.Engine.from_config(config(steps=steps))
        assert preflight_engine(engine, now=NOW).ok


class TestCalendar:
    def test_calendar_without_open_time(self) -> None:
        """A calendar with no open time is a gap naming it (add would raise)."""
        data = config(backup_owner="x")
        data["calendars"]["east"] = {"timezone": "UTC", "hours": {}}
        report = preflight_engine(slakit.Engine.from_config(data), now=NOW)
        assert [(g.check, g.policy) for g in report.gaps] == [("calendar", "lead")]
        assert "calendar east has no open time" in report.gaps[0].message


class TestReport:
    def test_to_dict(self) -> None:
        """The JSON form lists each gap with policy, check, field and message."""
        engine = slakit.Engine.from_config(config())
        data = json.loads(json.dumps(preflight_engine(engine, now=NOW).to_dict()))
        assert data["ok"] is False
        assert set(data["gaps"][0]) == {"policy", "check", "field", "message"}

    def test_without_store(self) -> None:
        """Without a store, only the policy's own settings count."""
        engine = slakit.Engine.from_config(config(backup_owner="x"))
        assert preflight(engine.policies, now=NOW).ok

    def test_gap_line(self) -> None:
        """A gap prints as ``policy: field: message``."""
        assert Gap("p", "decision", "trigger", "missing").line == "p: trigger: missing"
