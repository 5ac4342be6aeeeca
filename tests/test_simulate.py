"""What-if replay: stored history under a changed SLA or calendar, the store left untouched."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import slakit
from slakit.errors import (
    InvalidSLAError,
    InvalidTimestampError,
    InvalidTransitionError,
    UnknownCalendarError,
    UnknownPolicyError,
)
from slakit.hookspecs import hookimpl
from slakit.metrics import hit_rate
from slakit.plugins import Plugins, get_plugin_manager
from slakit.simulate import SimulationResult, simulate, simulate_engine
from slakit.testing.store_contract import make_trace

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


def lead_engine() -> slakit.Engine:
    return slakit.Engine.from_config(config(None), clock=slakit.ManualClock(MON))


def same_outcomes(result: SimulationResult) -> bool:
    """Met, missed, pending (both bases) and excluded agree: the record's judgement.
    Notifications may not: no checker ran while these histories were recorded."""
    a, p = result.actual, result.predicted
    return (a.wall, a.business, a.excluded) == (p.wall, p.business, p.excluded)


class TestEventsRecordedOutOfTimeOrder:
    """The engine takes events dated before others already recorded; the replay
    applies each record's events in the order the engine recorded them."""

    def test_a_response_dated_before_a_pause_recorded_first(self) -> None:
        """Paused at 40 minutes, then a response dated 19 minutes: met, no pause
        time. The replay used to apply the response first and fail on the pause."""
        engine = lead_engine()
        engine.start("x", policy="lead", owner="ann", started_at=MON)
        engine.pause("x", at=MON + timedelta(minutes=40))
        h = engine.respond("x", at=MON + timedelta(minutes=19))
        assert h.paused_seconds == 0
        end = MON + timedelta(hours=3)
        for sla in (None, 30):
            result = simulate_engine(engine, "lead", sla_minutes=sla, now=end)
            assert result.handoffs == 1
            assert result.skipped == {}
            assert result.predicted.counts.met == 1
            assert same_outcomes(result)
        shorter = simulate_engine(engine, "lead", sla_minutes=15, now=end)
        assert shorter.predicted.counts.missed == 1

    def test_a_pause_dated_after_the_response_counts_as_the_engine_counted_it(self) -> None:
        """Paused 25-50 minutes, then a response dated 20 minutes: the engine counts
        the closed pause, which moves the deadline to 55 minutes."""
        engine = lead_engine()
        engine.start("x", policy="lead", owner="ann", started_at=MON)
        engine.pause("x", at=MON + timedelta(minutes=25))
        engine.resume("x", at=MON + timedelta(minutes=50))
        h = engine.respond("x", at=MON + timedelta(minutes=20))
        assert h.deadline_at == MON + timedelta(minutes=55)
        end = MON + timedelta(hours=3)
        assert same_outcomes(simulate_engine(engine, "lead", now=end))
        # With a 10-minute SLA the pause begins after the deadline, so it moves nothing.
        assert simulate_engine(engine, "lead", sla_minutes=10, now=end).predicted.missed == 1

    def test_pauses_recorded_out_of_time_order(self) -> None:
        """An empty pause at 15 minutes, then one from 10 to 20: ten minutes paused
        (sorted by time, the second pause would end at 15)."""
        engine = lead_engine()
        engine.start("x", policy="lead", owner="ann", started_at=MON)
        for minute, kind in ((15, "pause"), (15, "resume"), (10, "pause"), (20, "resume")):
            getattr(engine, kind)("x", at=MON + timedelta(minutes=minute))
        h = engine.respond("x", at=MON + timedelta(minutes=38))
        assert h.paused_seconds == 10 * 60
        result = simulate_engine(engine, "lead", now=MON + timedelta(hours=3))
        assert result.actual.counts.met == 1
        assert same_outcomes(result)

    def test_a_cancel_dated_before_a_pause_recorded_first(self) -> None:
        engine = lead_engine()
        engine.start("x", policy="lead", owner="ann", started_at=MON)
        engine.pause("x", at=MON + timedelta(minutes=40))
        engine.cancel("x", at=MON + timedelta(minutes=5))
        result = simulate_engine(engine, "lead", sla_minutes=30, now=MON + timedelta(hours=3))
        assert result.predicted.excluded == 1
        assert same_outcomes(result)

    def test_a_record_that_cannot_be_replayed_is_skipped_and_named(self) -> None:
        """A trace the engine could not have written (a pause after the response
        stopped the clock) leaves that record out of both sides, with a note."""
        engine = lead_engine()
        engine.start("good", policy="lead", owner="ann", started_at=MON)
        engine.respond("good", at=MON + timedelta(minutes=5))
        h = engine.start("bad", policy="lead", owner="ann", started_at=MON)
        engine.respond("bad", at=MON + timedelta(minutes=50))
        engine.store.add_traces(
            [
                make_trace(
                    "bad",
                    "pause",
                    action="pause",
                    trace_id=h.trace_id,
                    policy="lead",
                    at=MON,
                    detail={},
                )
            ]
        )
        result = simulate_engine(engine, "lead", now=MON + timedelta(hours=3))
        assert result.handoffs == 1
        assert list(result.skipped) == ["bad"]
        assert "only a running handoff can be paused" in result.skipped["bad"]
        assert result.actual.counts.met == result.predicted.counts.met == 1
        assert result.actual.missed == result.predicted.missed == 0
        assert result.to_dict()["skipped"] == [{"id": "bad", "reason": result.skipped["bad"]}]
        assert "skipped 1 handoff that could not be replayed" in result.to_text()
        assert "bad:" in result.to_text()


WEEKDAYS = slakit.BusinessCalendar.weekdays("America/New_York")
PROPERTY_POLICIES = {
    (basis, stop): slakit.Policy.from_config(
        {
            "basis": basis,
            "calendar": "weekdays",
            "sla_minutes": 30,
            "stop": stop,
            "steps": [
                {"at": "-10m", "do": ["notify:owner"]},
                {"at": "1x", "do": ["mark_breached", "reassign:backup"]},
            ],
        },
        name="p",
        calendars={"weekdays": WEEKDAYS},
    )
    for basis in ("wall", "business")
    for stop in ("first_response", "completion")
}
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["pause", "resume", "respond", "complete", "cancel"]),
        st.integers(0, 12 * 60),
    ),
    max_size=8,
)


def recorded(policy: slakit.Policy, sla: float, events: list[tuple[str, int]]) -> slakit.Engine:
    """One handoff started at MON with ``events`` sent in list order; the engine
    refuses some (a pause after the clock stopped, a resume before its pause)."""
    engine = slakit.Engine(policies=[policy], clock=slakit.ManualClock(MON + timedelta(days=2)))
    engine.start("x", owner="ann", backup_owner="cat", sla_minutes=sla, started_at=MON)
    for kind, minute in events:
        try:
            getattr(engine, kind)("x", at=MON + timedelta(minutes=minute))
        except (InvalidTransitionError, InvalidTimestampError):
            pass
    engine.check(MON + timedelta(days=2))
    return engine


@given(
    key=st.sampled_from(sorted(PROPERTY_POLICIES)),
    events=EVENTS,
    sla=st.sampled_from([5, 45, 240]),
    minute=st.integers(0, 12 * 60),
)
def test_replay_computes_what_the_engine_stored(
    key: tuple[str, str], events: list[tuple[str, int]], sla: float, minute: int
) -> None:
    """Whatever order the events came in, the replay at the record's own SLA judges
    it as the stored record is judged (both bases), also as it stood at an earlier
    ``now``; and a replay at another SLA as the engine judges the same events sent
    to a record with that SLA."""
    policy = PROPERTY_POLICIES[key]
    end = MON + timedelta(days=2)
    engine = recorded(policy, 30, events)
    stored = hit_rate([engine.get("x")], now=end)
    result = simulate(engine.store, policy, now=end)
    assert result.skipped == {}
    assert (result.predicted.wall, result.predicted.business) == (stored.wall, stored.business)
    assert result.predicted.excluded == stored.total.excluded
    assert same_outcomes(result)
    assert same_outcomes(simulate(engine.store, policy, now=MON + timedelta(minutes=minute)))
    other = hit_rate([recorded(policy, sla, events).get("x")], now=end)
    whatif = simulate(engine.store, policy, sla_minutes=sla, now=end)
    assert (whatif.predicted.wall, whatif.predicted.business) == (other.wall, other.business)
