"""The public test helpers work as documented."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given

import slakit
from slakit.handoff import Handoff
from slakit.testing import capture_notifications, capture_traces
from slakit.testing.strategies import events, handoffs, policies


class TestCaptures:
    def test_captures_nest_and_restore(self, slakit_engine: slakit.Engine) -> None:
        """The innermost capture receives notifications; outer trace captures see all lines."""
        slakit_engine.start("L1", owner="alice")
        now = slakit_engine.clock.now() + timedelta(minutes=30)
        with capture_traces() as outer, capture_notifications() as outer_sent:
            with capture_notifications() as inner:
                slakit_engine.check(now)
                slakit_engine.deliver(now)
        assert [n.recipient for n in inner] == ["alice"]
        assert outer_sent == []
        assert any(t.outcome == "sent" for t in outer)

    def test_fixtures_drive_a_playbook_engine(
        self, slakit_engine: slakit.Engine, slakit_clock: slakit.ManualClock
    ) -> None:
        """slakit_engine runs the default policy on the slakit_clock."""
        h = slakit_engine.start("L1", owner="a")
        assert h.started_at == slakit_clock.now()


class TestStrategies:
    @given(handoffs())
    def test_handoffs_are_valid(self, h: Handoff) -> None:
        """Generated handoffs are valid and aware."""
        assert h.started_at.utcoffset() is not None

    @given(policies(), events())
    def test_policies_run_event_sequences(
        self, policy: slakit.Policy, seq: list[tuple[str, object]]
    ) -> None:
        """Generated policies accept any generated event sequence without internal errors."""
        clock = slakit.ManualClock(slakit.ManualClock().now())
        engine = slakit.Engine(policies=[policy], clock=clock)
        engine.start("h", owner="a", backup_owner="b")
        for name, arg in seq:
            if name == "advance":
                assert isinstance(arg, timedelta)
                clock.advance(arg)
            elif name == "check":
                engine.check()
            else:
                try:
                    getattr(engine, name)("h")
                except slakit.SlakitError:
                    pass
        stages = [e.stage for e in engine.store.escalations("h")]
        assert len(stages) == len(set(stages))
