"""What-if replay: stored history under a changed SLA or calendar, the store left untouched."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import slakit
from slakit.errors import InvalidSLAError, UnknownCalendarError, UnknownPolicyError
from slakit.hookspecs import hookimpl
from slakit.plugins import Plugins, get_plugin_manager
from slakit.simulate import simulate, simulate_engine

MON = datetime(2026, 11, 23, 14, tzinfo=UTC)  # Monday 09:00 in New York
HOURS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def config(db: Path | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "calendars": {
            "east": {"timezone": "America/New_York", "hours": HOURS},
            "always": {"timezone": "UTC", "hours": {d: ["00:00-24:00"] for d in HOURS}},
        },
        "policies": {
            "lead": {
                "calendar": "east",
                "sla_minutes": 30,
                "steps": [
                    {"at": "-10m", "do": ["notify:owner"]},
                    {"at": "1x", "do": ["notify:owner"]},
                    {
                        "at": "2x",
                        "do": ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"],
                    },
                ],
            },
            "other": {"sla_minutes": 10},
        },
        "breach_reasons": {"routing_error": "Routed to the wrong team"},
    }
    if db is not None:
        data["store"] = {"adapter": "sqlite", "path": str(db)}
    return data


def drive(engine: slakit.Engine, seed: int, n: int) -> datetime:
    """Random history with a checker running every minute; returns the end instant."""
    rng = random.Random(seed)
    events: list[tuple[datetime, int, str, str]] = []
    for i in range(n):
        start = MON + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        events.append((start, 0, "start", f"h{i}"))
        fate = rng.random()
        at = start + timedelta(minutes=rng.randrange(1, 8 * 60))
        if fate < 0.6:
            events.append((at, 1, "respond", f"h{i}"))
        elif fate < 0.7:
            events.append((at, 1, "cancel", f"h{i}"))
        elif fate < 0.8:
            events.append((at, 1, "pause", f"h{i}"))
            events.append((at + timedelta(minutes=rng.randrange(1, 120)), 2, "resume", f"h{i}"))
            events.append((at + timedelta(minutes=rng.randrange(121, 600)), 3, "complete", f"h{i}"))
    events.sort()
    end = MON + timedelta(days=4)
    t, k = MON, 0
    clock = engine.clock
    assert isinstance(clock, slakit.ManualClock)
    while t <= end:
        clock.set(t)
        while k < len(events) and events[k][0] <= t:
            at, _, kind, hid = events[k]
            if kind == "start":
                engine.start(
                    hid,
                    policy="lead",
                    owner=rng.choice(["ann", "bob"]),
                    backup_owner=rng.choice(["cat", None]),
                    started_at=at,
                    channel="web",
                )
            else:
                getattr(engine, kind)(hid, at=at)
            k += 1
        engine.check(t)
        t += timedelta(minutes=1)
    return end


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[slakit.Engine, datetime]]:
    db = tmp_path_factory.mktemp("sim") / "sim.db"
    engine = slakit.Engine.from_config(config(db), clock=slakit.ManualClock(MON))
    end = drive(engine, seed=3, n=60)
    engine.tag_breach("h1", "routing_error")
    yield engine, end
    engine.close()


def snapshot(store: slakit.RecordStore) -> dict[str, Any]:
    """Everything a store holds, as comparable values."""
    return {
        "count": store.count(),
        "handoffs": [h.to_dict() for h in store.iter_handoffs()],
        "escalations": store.escalations(),
        "outbox": store.outbox(),
        "traces": [t.to_dict() for t in store.traces()],
        "next_wakeup": store.next_wakeup(),
    }


class TestSimulate:
    def test_unchanged_settings_reproduce_the_actual_numbers(
        self, history: tuple[slakit.Engine, datetime]
    ) -> None:
        """Replaying with the configured settings predicts what actually happened."""
        engine, end = history
        result = simulate_engine(engine, "lead", now=end)
        assert result.handoffs == 60
        assert result.predicted == result.actual
        assert result.actual.notifications > 0
        assert result.actual.excluded > 0
        assert result.actual.breached > 0

    @pytest.mark.parametrize(
        "back",
        [
            timedelta(days=3, minutes=7),
            timedelta(days=2),
            timedelta(hours=30, minutes=31),
            timedelta(hours=1),
        ],
    )
    def test_a_past_now_counts_the_actual_side_as_it_stood_then(
        self, history: tuple[slakit.Engine, datetime], back: timedelta
    ) -> None:
        """With the checker running throughout, a replay up to an earlier ``now``
        matches the stored history up to that instant, not the history since."""
        engine, end = history
        result = simulate_engine(engine, "lead", now=end - back)
        assert result.predicted == result.actual

    def test_longer_sla_predicts_fewer_breaches(
        self, history: tuple[slakit.Engine, datetime]
    ) -> None:
        """A longer SLA raises the predicted hit rate and lowers breaches and notifications."""
        engine, end = history
        result = simulate_engine(engine, "lead", sla_minutes=240, now=end)
        a, p = result.actual, result.predicted
        assert a.rate is not None
        assert p.rate is not None
        assert p.rate > a.rate
        assert p.breached < a.breached
        assert p.notifications < a.notifications
        assert p.excluded == a.excluded
        assert result.to_dict()["changes"] == {"sla_minutes": 240.0, "calendar": None}

    def test_calendar_change(self, history: tuple[slakit.Engine, datetime]) -> None:
        """A weekday 24-hour calendar changes the business basis, not the wall basis."""
        engine, end = history
        result = simulate_engine(engine, "lead", calendar="always", now=end)
        assert result.calendar == "always"
        assert result.predicted.wall == result.actual.wall
        assert result.predicted.business != result.actual.business

    def test_window(self, history: tuple[slakit.Engine, datetime]) -> None:
        """Only handoffs started in [since, until) are replayed."""
        engine, end = history
        since, until = MON + timedelta(days=1), MON + timedelta(days=2)
        result = simulate_engine(engine, "lead", since=since, until=until, now=end)
        expected = sum(1 for h in engine.store.iter_handoffs() if since <= h.started_at < until)
        assert result.handoffs == expected
        assert result.predicted == result.actual

    def test_store_is_untouched(self, tmp_path: Path) -> None:
        """Rows and their contents are identical before and after a replay."""
        engine = slakit.Engine.from_config(config(tmp_path / "s.db"), clock=slakit.ManualClock(MON))
        end = drive(engine, seed=11, n=15)
        engine.close()
        engine = slakit.Engine.from_config(config(tmp_path / "s.db"), clock=slakit.ManualClock(end))
        before = snapshot(engine.setup().store)
        simulate_engine(engine, "lead", sla_minutes=5, calendar="always", now=end)
        assert snapshot(engine.store) == before
        engine.close()

    def test_reassigned_owner_is_restored(self) -> None:
        """The replay starts each record with its original owner, undoing reassignments."""
        engine = slakit.Engine.from_config(config(None), clock=slakit.ManualClock(MON))
        engine.start("x", policy="lead", owner="ann", backup_owner="cat", started_at=MON)
        engine.check(MON + timedelta(hours=2))
        assert engine.get("x").owner == "cat"
        result = simulate(
            engine.store, engine.policy("lead"), sla_minutes=600, now=MON + timedelta(hours=2)
        )
        assert result.predicted.notifications == 0
        longer = simulate(engine.store, engine.policy("lead"), now=MON + timedelta(hours=2))
        assert longer.predicted == longer.actual

    def test_observers_do_not_see_the_replay(self, history: tuple[slakit.Engine, datetime]) -> None:
        """Plugin observers are not told about replayed steps."""
        seen: list[str] = []

        class Observer:
            @hookimpl
            def slakit_step_applied(self, handoff: slakit.Handoff, **_: Any) -> None:
                seen.append(handoff.id)

        pm = get_plugin_manager(autoload=False)
        pm.register(Observer(), name="undo-observer")
        engine, end = history
        plugins = Plugins(pm)
        simulate(engine.store, engine.policy("lead"), now=end, plugins=plugins)
        assert seen == []
        # The same plugins on a real engine do hear about steps.
        live = slakit.Engine(clock=slakit.ManualClock(MON), plugins=plugins)
        live.start("y", owner="ann")
        live.check(MON + timedelta(hours=1))
        assert seen == ["y", "y"]

    def test_bad_input(self, history: tuple[slakit.Engine, datetime]) -> None:
        """Unknown policy or calendar and a bad SLA raise, naming the value."""
        engine, end = history
        with pytest.raises(UnknownPolicyError, match="'nope'"):
            simulate_engine(engine, "nope", now=end)
        with pytest.raises(UnknownCalendarError, match="'mars'"):
            simulate_engine(engine, "lead", calendar="mars", now=end)
        with pytest.raises(InvalidSLAError, match="sla_minutes"):
            simulate_engine(engine, "lead", sla_minutes=-5, now=end)

    def test_text_and_rows(self, history: tuple[slakit.Engine, datetime]) -> None:
        """The text table lists the measures with actual and predicted side by side."""
        engine, end = history
        result = simulate_engine(engine, "lead", sla_minutes=60, now=end)
        text = result.to_text()
        assert "hit rate (business)" in text
        assert "notifications" in text
        assert any(r[0] == "step 2x fired" for r in result.rows())

    def test_policy_without_history(self, history: tuple[slakit.Engine, datetime]) -> None:
        """A policy with no stored handoffs replays nothing."""
        engine, end = history
        result = simulate_engine(engine, "other", now=end)
        assert result.handoffs == 0
        assert result.predicted.rate is None


def test_attributes_named_like_start_arguments_replay() -> None:
    """A CRM field called ``owner`` or ``policy`` is an attribute, not an argument."""
    engine = slakit.Engine.from_config(config(None), clock=slakit.ManualClock(MON))
    engine.start(
        "crm-1",
        policy="lead",
        owner="ann",
        started_at=MON,
        attributes={"owner": "crm-user-17", "policy": "gold", "attributes": 1},
    )
    engine.check(MON + timedelta(hours=2))
    result = simulate_engine(engine, "lead", now=MON + timedelta(hours=2))
    assert result.handoffs == 1
    assert result.predicted.to_dict() == result.actual.to_dict()
