"""Stops, cancels and resumes on a paused clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slakit
from slakit.errors import InvalidTimestampError, InvalidTransitionError
from slakit.metrics import classify

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, 09:00 in New York


def engine(basis: str, stop: str = "first_response") -> slakit.Engine:
    policy = slakit.Policy.from_config(
        {
            "basis": basis,
            "calendar": "weekdays",
            "sla_minutes": 30,
            "stop": stop,
            "steps": [{"at": "1x", "do": ["notify:owner"]}],
        },
        name="p",
        calendars={"weekdays": slakit.BusinessCalendar.weekdays("America/New_York")},
    )
    return slakit.Engine(policies=[policy], clock=slakit.ManualClock(T0))


class TestStopWhilePaused:
    def test_response_during_a_pause_is_judged_on_the_running_time(self) -> None:
        """Paused after 10 minutes, answered 40 minutes later: 10 minutes ran, met."""
        e = engine("wall")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=10))
        h = e.respond("A", at=T0 + timedelta(minutes=50))
        assert h.status == "stopped"
        assert h.paused_at is None
        assert h.paused_seconds == 40 * 60
        assert h.wall_elapsed_seconds == 10 * 60
        assert h.wall_deadline_at == T0 + timedelta(minutes=70)
        assert classify(h, "wall", T0 + timedelta(hours=5)) == "met"
        trace = next(t for t in e.store.traces("A") if t.action == "respond")
        assert trace.detail["met"] is True

    def test_a_pause_after_the_deadline_cannot_rescue_the_record(self) -> None:
        e = engine("wall")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=40))
        h = e.complete("A", at=T0 + timedelta(minutes=90))
        assert h.wall_elapsed_seconds == 40 * 60
        assert classify(h, "wall", T0 + timedelta(hours=5)) == "missed"

    @settings(max_examples=200, deadline=None)
    @given(
        basis=st.sampled_from(["wall", "business"]),
        paused=st.integers(0, 3 * 24 * 60),
        length=st.integers(0, 3 * 24 * 60),
        event=st.sampled_from(["respond", "complete"]),
    )
    def test_a_stop_while_paused_equals_a_resume_then_the_stop(
        self, basis: str, paused: int, length: int, event: str
    ) -> None:
        """A stop during a pause leaves the record a resume and then the stop would."""
        pause_at = T0 + timedelta(minutes=paused)
        stop_at = pause_at + timedelta(minutes=length)
        stopped, resumed = engine(basis), engine(basis)
        for e in (stopped, resumed):
            e.start("A", owner="a")
            e.pause("A", at=pause_at)
        resumed.resume("A", at=stop_at)
        one = getattr(stopped, event)("A", at=stop_at)
        two = getattr(resumed, event)("A", at=stop_at)
        fields = (
            "stopped_at",
            "paused_at",
            "paused_seconds",
            "paused_business_seconds",
            "deadline_at",
            "wall_deadline_at",
            "business_deadline_at",
            "wall_elapsed_seconds",
            "business_elapsed_seconds",
            "next_due_at",
        )
        assert {f: getattr(one, f) for f in fields} == {f: getattr(two, f) for f in fields}
        for b in ("wall", "business"):
            assert classify(one, b, stop_at) == classify(two, b, stop_at)
        # The pause's start decides: the clock ran until then.
        if basis == "wall":
            assert classify(one, "wall", stop_at) == ("met" if paused <= 30 else "missed")

    def test_a_response_that_does_not_stop_the_clock_keeps_the_pause(self) -> None:
        e = engine("wall", stop="completion")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=10))
        h = e.respond("A", at=T0 + timedelta(minutes=20))
        assert h.status == "paused"
        assert h.paused_at == T0 + timedelta(minutes=10)


class TestResumeAndCancel:
    def test_resume_is_refused_once_stopped_or_cancelled(self) -> None:
        e = engine("wall")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=10))
        e.respond("A", at=T0 + timedelta(minutes=20))
        e.start("B", owner="a")
        e.pause("B", at=T0 + timedelta(minutes=10))
        e.cancel("B", at=T0 + timedelta(minutes=20))
        e.start("C", owner="a")
        e.cancel("C", at=T0 + timedelta(minutes=5))
        for hid in ("A", "B", "C"):
            before = e.get(hid)
            with pytest.raises(InvalidTransitionError, match="cannot be resumed"):
                e.resume(hid, at=T0 + timedelta(hours=8))
            assert e.get(hid) == before

    def test_cancel_while_paused_ends_the_pause(self) -> None:
        e = engine("wall")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=10))
        h = e.cancel("A", at=T0 + timedelta(minutes=25))
        assert h.status == "cancelled"
        assert h.paused_at is None
        assert h.paused_seconds == 15 * 60
        assert h.next_due_at is None
        assert classify(h, "wall", T0 + timedelta(hours=1)) == "excluded"


class TestAPauseAfterTheDeadline:
    def test_it_cannot_rescue_a_record_whose_deadline_fell_at_closing_time(self) -> None:
        """Deadline Monday 17:00 (closing); paused at 18:00, resumed and answered Tuesday
        09:30: late on both bases, though no business minute passed between 17:00 and 18:00."""
        from zoneinfo import ZoneInfo

        ny = ZoneInfo("America/New_York")
        e = engine("business")
        h = e.start("P1", owner="a", started_at=datetime(2026, 11, 23, 16, 30, tzinfo=ny))
        assert h.business_deadline_at == datetime(2026, 11, 23, 17, 0, tzinfo=ny)
        e.pause("P1", at=datetime(2026, 11, 23, 18, 0, tzinfo=ny))
        resumed = e.resume("P1", at=datetime(2026, 11, 24, 9, 30, tzinfo=ny))
        assert resumed.business_deadline_at == h.business_deadline_at
        assert resumed.wall_deadline_at == h.wall_deadline_at
        assert resumed.next_due_at is not None  # the steps still move by the pause
        done = e.respond("P1", at=datetime(2026, 11, 24, 9, 30, tzinfo=ny))
        later = datetime(2026, 11, 25, tzinfo=UTC)
        assert classify(done, "business", later) == "missed"
        assert classify(done, "wall", later) == "missed"

    @pytest.mark.parametrize("basis", ["business", "wall"])
    def test_paused_exactly_at_the_deadline_it_is_judged_at_the_resume(self, basis: str) -> None:
        """Deadline Monday 16:00; paused at 16:00 and resumed at 20:00, after closing. The
        clock had nothing left: the deadline is the resume on both bases (the business
        one used to land on 17:00, inside the pause, late the instant the clock restarted),
        so an answer at the resume meets it and one a minute later misses it."""
        from zoneinfo import ZoneInfo

        ny = ZoneInfo("America/New_York")
        resume_at = datetime(2026, 11, 23, 20, 0, tzinfo=ny)
        for answer, outcome in ((resume_at, "met"), (resume_at + timedelta(minutes=1), "missed")):
            e = engine(basis)
            h = e.start("P1", owner="a", started_at=datetime(2026, 11, 23, 15, 30, tzinfo=ny))
            assert h.business_deadline_at == datetime(2026, 11, 23, 16, 0, tzinfo=ny)
            e.pause("P1", at=h.business_deadline_at)
            resumed = e.resume("P1", at=resume_at)
            assert resumed.business_deadline_at == resume_at
            assert resumed.deadline_at == (
                resumed.wall_deadline_at if basis == "wall" else resume_at
            )
            assert classify(resumed, "business", resume_at) == "pending"
            done = e.respond("P1", at=answer)
            later = datetime(2026, 11, 25, tzinfo=UTC)
            assert classify(done, "business", later) == outcome
            assert slakit.hit_rate([done], now=later).total.business.met == (outcome == "met")

    @settings(max_examples=200, deadline=None)
    @given(
        basis=st.sampled_from(["wall", "business"]),
        start=st.integers(0, 7 * 24 * 60),
        paused=st.integers(0, 3 * 24 * 60),
        length=st.integers(0, 3 * 24 * 60),
        answer=st.integers(0, 3 * 24 * 60),
        resume=st.booleans(),
    )
    def test_a_pause_moves_a_deadline_only_when_it_began_by_then(
        self, basis: str, start: int, paused: int, length: int, answer: int, resume: bool
    ) -> None:
        e = engine(basis)
        begun = T0 + timedelta(minutes=start)
        h = e.start("A", owner="a", started_at=begun)
        pause_at = begun + timedelta(minutes=paused)
        end = pause_at + timedelta(minutes=length)
        e.pause("A", at=pause_at)
        if resume:
            e.resume("A", at=end)
        done = e.respond("A", at=end + timedelta(minutes=answer if resume else 0))
        cal = e.policy("p").calendar
        for b, before in (("wall", h.wall_deadline_at), ("business", h.business_deadline_at)):
            assert before is not None
            after = done.wall_deadline_at if b == "wall" else done.business_deadline_at
            if pause_at > before:
                assert after == before
                assert classify(done, b, end) == "missed"
            elif b == "wall":
                assert after == before + (end - pause_at)
            else:
                # Never before the resume: a clock paused as it ran out has no time left.
                assert after == max(cal.add(before, cal.elapsed(pause_at, end)), end)


class TestPausesDoNotOverlap:
    def test_a_pause_dated_before_the_last_resume_is_refused(self) -> None:
        """Paused 10-20, then a pause dated 15: the five minutes would count twice."""
        e = engine("wall")
        e.start("A", owner="a")
        e.pause("A", at=T0 + timedelta(minutes=10))
        e.resume("A", at=T0 + timedelta(minutes=20))
        before = e.get("A")
        with pytest.raises(InvalidTimestampError, match="before the last resume") as err:
            e.pause("A", at=T0 + timedelta(minutes=15))
        assert err.value.field == "paused_at"
        assert e.get("A") == before
        again = e.pause("A", at=T0 + timedelta(minutes=20))
        done = e.resume("A", at=T0 + timedelta(minutes=25))
        assert done.paused_seconds == 15 * 60
        assert again.paused_at == T0 + timedelta(minutes=20)
