"""The engine against a small reference model, under random event sequences."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import slakit
from slakit.adapters.memory import MemoryStore
from slakit.calendar import BusinessCalendar
from slakit.errors import InvalidTransitionError
from slakit.testing import capture_notifications, capture_traces

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)

POLICIES = [
    slakit.Policy.default("playbook", basis="wall"),
    slakit.Policy.from_config(
        {
            "basis": "wall",
            "coalesce": True,
            "steps": [
                {"at": "-5m", "do": ["notify:owner"]},
                {"at": "1x", "do": ["notify:owner", "notify:@lead"]},
                {"at": "1x+15m", "do": ["mark_breached", "reassign:backup"]},
                {"at": "3x", "do": ["notify:backup"]},
            ],
        },
        name="coalescing",
    ),
    slakit.Policy.from_config(
        {
            "basis": "wall",
            "stop": "completion",
            "steps": [
                {"at": "50%", "do": ["notify:owner"]},
                {"at": "2x", "do": ["mark_breached", "notify:backup"]},
            ],
        },
        name="completion",
    ),
    slakit.Policy(
        name="business",
        calendar=BusinessCalendar.from_config(
            {
                "timezone": "America/New_York",
                "hours": {d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu")}
                | {"fri": ["22:00-06:00"]},
                "holidays": {"country": "US"},
            }
        ),
        basis="business",
        sla_minutes=45,
    ),
]


@attrs.define
class ModelHandoff:
    policy: slakit.Policy
    started_at: datetime
    sla: timedelta
    stopped_at: datetime | None = None
    cancelled_at: datetime | None = None
    paused_at: datetime | None = None
    paused: timedelta = timedelta(0)
    paused_business: timedelta = timedelta(0)
    responded: bool = False
    completed: bool = False

    @property
    def active(self) -> bool:
        return self.stopped_at is None and self.cancelled_at is None

    def due_times(self) -> list[datetime]:
        offsets = sorted(s.offset_for(self.sla) for s in self.policy.steps)
        if self.policy.basis == "business":
            cal = self.policy.calendar
            return [cal.add(self.started_at, o + self.paused_business) for o in offsets]
        return [self.started_at + o + self.paused for o in offsets]


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = slakit.ManualClock(T0)
        self.engine = slakit.Engine(
            store=MemoryStore(), policies=POLICIES, clock=self.clock, backoff_base=1
        )
        self.model: dict[str, ModelHandoff] = {}
        self.applied: list[tuple[str, int]] = []
        self.counter = 0
        self._notes = capture_notifications()
        self._traces = capture_traces()
        self.sent = self._notes.__enter__()
        self.traces = self._traces.__enter__()

    def teardown(self) -> None:
        self._notes.__exit__(None, None, None)
        self._traces.__exit__(None, None, None)

    def now(self) -> datetime:
        return self.clock.now()

    @rule(policy=st.sampled_from(POLICIES), sla=st.integers(1, 120), backup=st.booleans())
    def start(self, policy: slakit.Policy, sla: int, backup: bool) -> None:
        self.counter += 1
        hid = f"h{self.counter}"
        self.engine.start(
            hid,
            policy=policy.name,
            owner="owner",
            backup_owner="backup" if backup else None,
            sla_minutes=sla,
        )
        self.model[hid] = ModelHandoff(policy, self.now(), timedelta(minutes=sla))

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model)))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def respond(self, data: st.DataObject) -> None:
        hid = self._pick(data)
        m = self.model[hid]
        if m.cancelled_at is not None:
            with pytest.raises(InvalidTransitionError):
                self.engine.respond(hid)
            return
        self.engine.respond(hid)
        if not m.responded:
            m.responded = True
            if m.policy.stop == "first_response" and m.stopped_at is None:
                self._end_pause(m)
                m.stopped_at = self.now()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        hid = self._pick(data)
        m = self.model[hid]
        if m.cancelled_at is not None:
            with pytest.raises(InvalidTransitionError):
                self.engine.complete(hid)
            return
        self.engine.complete(hid)
        if not m.completed:
            m.completed = True
            if m.stopped_at is None:
                self._end_pause(m)
                m.stopped_at = self.now()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        hid = self._pick(data)
        m = self.model[hid]
        if m.stopped_at is not None:
            with pytest.raises(InvalidTransitionError):
                self.engine.cancel(hid)
            return
        self.engine.cancel(hid, reason="test")
        if m.cancelled_at is None:
            self._end_pause(m)
            m.cancelled_at = self.now()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        hid = self._pick(data)
        m = self.model[hid]
        if not m.active:
            with pytest.raises(InvalidTransitionError):
                self.engine.pause(hid)
            return
        self.engine.pause(hid)
        if m.paused_at is None:
            m.paused_at = self.now()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        hid = self._pick(data)
        m = self.model[hid]
        if not m.active:
            # A stop or cancel ended any pause; the clock stays where it ended.
            with pytest.raises(InvalidTransitionError):
                self.engine.resume(hid)
            return
        self.engine.resume(hid)
        self._end_pause(m)

    def _end_pause(self, m: ModelHandoff) -> None:
        """The model's pause, if any, ended now: as a resume, a stop or a cancel end it."""
        if m.paused_at is None:
            return
        m.paused += self.now() - m.paused_at
        m.paused_business += m.policy.calendar.elapsed(m.paused_at, self.now())
        m.paused_at = None

    @rule(minutes=st.integers(0, 240), seconds=st.integers(0, 59))
    def advance(self, minutes: int, seconds: int) -> None:
        self.clock.advance(minutes=minutes, seconds=seconds)

    @rule()
    def check(self) -> None:
        now = self.now()
        result = self.engine.check()
        again = self.engine.check()
        assert again.applied == (), "check twice at the same instant applied more"
        for step in result.applied:
            m = self.model[step.handoff_id]
            # No step fires for a handoff whose stop event (or cancel/pause) came first.
            assert m.active, f"step fired on stopped/cancelled {step}"
            assert m.paused_at is None, f"step fired while paused {step}"
            assert step.due_at <= now
            self.applied.append((step.handoff_id, step.stage))
        assert len(self.applied) == len(set(self.applied)), "a (handoff, stage) applied twice"
        # Completeness: every due step of a running handoff has happened.
        for hid, m in self.model.items():
            if not m.active or m.paused_at is not None:
                continue
            due = [k for k, t in enumerate(m.due_times()) if t <= now]
            done = {e.stage for e in self.engine.store.escalations(hid)}
            assert set(due) <= done, f"{hid}: due stages {due} but done {sorted(done)}"

    @rule()
    def deliver(self) -> None:
        self.engine.deliver()

    @invariant()
    def pauses_match_the_model(self) -> None:
        for hid, m in self.model.items():
            h = self.engine.get(hid)
            assert h.paused_at == m.paused_at, hid
            assert h.paused_seconds == pytest.approx(m.paused.total_seconds()), hid
            assert h.paused_business_seconds == pytest.approx(m.paused_business.total_seconds()), (
                hid
            )

    @invariant()
    def breached_only_via_a_step(self) -> None:
        for h in self.engine.store.iter_handoffs():
            if h.breached:
                actions = {a for e in self.engine.store.escalations(h.id) for a in e.actions}
                applied = [e for e in self.engine.store.escalations(h.id) if e.outcome == "applied"]
                assert "mark_breached" in actions, f"{h.id} breached without a step"
                assert applied, f"{h.id} breached without an applied step"

    @invariant()
    def skips_are_traced(self) -> None:
        for e in self.engine.store.escalations():
            if e.outcome == "skipped":
                assert any(
                    t.handoff_id == e.handoff_id
                    and t.action == "skip"
                    and t.detail.get("stage") == e.stage
                    for t in self.traces
                ), f"skipped {e} without a trace line"

    @invariant()
    def notifications_unique_per_key(self) -> None:
        keys = [n.idempotency_key for n in self.sent]
        assert len(keys) == len(set(keys))


EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("SLAKIT_STATEFUL_EXAMPLES", "500")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineStateful = EngineMachine.TestCase


class TestThreads:
    def test_eight_threads_apply_ten_thousand_steps_exactly_once(self) -> None:
        """8 threads checking one memory store apply each of 10,000 due steps exactly once."""
        clock = slakit.ManualClock(T0)
        policy = slakit.Policy.from_config(
            {"basis": "wall", "steps": [{"at": "1x", "do": ["notify:owner"]}]}, name="p"
        )
        store = MemoryStore()
        seed = slakit.Engine(store=store, policies=[policy], clock=clock)
        seed.start_many([{"id": f"h{i}", "owner": f"o{i % 50}"} for i in range(10_000)])
        now = T0 + timedelta(hours=1)
        results: list[list[tuple[str, int]]] = [[] for _ in range(8)]
        barrier = threading.Barrier(8)

        def worker(i: int) -> None:
            engine = slakit.Engine(
                store=store, policies=[policy], clock=clock, batch_size=64, worker_id=f"w{i}"
            )
            barrier.wait()
            while True:
                res = engine.check(now)
                results[i].extend((a.handoff_id, a.stage) for a in res.applied)
                if not res.applied and store.next_wakeup() is None:
                    break
                if not res.applied:
                    break

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        applied = [x for r in results for x in r]
        assert len(applied) == 10_000
        assert len(set(applied)) == 10_000
        assert len(store.escalations()) == 10_000
        keys = [o.notification.idempotency_key for o in store.outbox()]
        assert len(keys) == len(set(keys)) == 10_000
