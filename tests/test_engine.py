"""The engine: events, checks, deliveries, and their rules."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slakit
from slakit._time import parse_duration
from slakit.abc import Notifier
from slakit.adapters.memory import MemoryStore
from slakit.errors import (
    ConfigError,
    DuplicateHandoffError,
    InvalidSLAError,
    InvalidStepError,
    InvalidTimestampError,
    InvalidTransitionError,
    NaiveDatetimeError,
    PermanentNotifyError,
    TransientNotifyError,
    UnknownBreachReasonError,
    UnknownHandoffError,
    UnknownPolicyError,
    ValidationError,
)
from slakit.policy import Step
from slakit.records import Notification, OutboxItem
from slakit.testing import capture_notifications, capture_traces

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def wall_engine(**kw: Any) -> tuple[slakit.Engine, slakit.ManualClock]:
    clock = slakit.ManualClock(T0)
    policies = kw.pop("policies", [slakit.Policy.default(basis="wall")])
    engine = slakit.Engine(policies=policies, clock=clock, **kw)
    return engine, clock


class Recorder(Notifier):
    """A notifier that records, and can fail the first N sends."""

    def __init__(self, fail: int = 0, permanent: bool = False, retry_after: float | None = None):
        self.name = "recorder"
        self.sent: list[Notification] = []
        self.calls = 0
        self.fail = fail
        self.permanent = permanent
        self.retry_after = retry_after

    def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            if self.permanent:
                raise PermanentNotifyError("user_not_found")
            raise TransientNotifyError("503 from peer", retry_after=self.retry_after)
        self.sent.append(notification)


class TestStart:
    def test_start_computes_deadlines_and_first_due(self) -> None:
        """A started handoff carries its 1x deadline and its first step's due time."""
        engine, _ = wall_engine()
        h = engine.start("L1", owner="alice", backup_owner="bob")
        assert h.started_at == T0
        assert h.sla_minutes == 30
        assert h.deadline_at == T0 + timedelta(minutes=30)
        assert h.next_due_at == T0 + timedelta(minutes=30)
        assert h.within_business_hours is True
        assert len(h.trace_id) == 32
        assert h.version == 1

    def test_prepared_records_equal_validated_ones(self) -> None:
        """The engine builds plain records without re-running validators; same values."""
        engine, _ = wall_engine()
        records: list[dict[str, Any]] = [
            {"id": "a", "owner": "alice", "backup_owner": "bob", "channel": "web"},
            {"id": "b", "sla_minutes": 5, "segment": "smb", "region": "EMEA", "n": 1},
            {"id": "c", "trace_id": "0af7651916cd43dd8448eb211c80319c", "attributes": {"x": 1}},
            {"id": "d", "started_at": T0 - timedelta(hours=1), "first_response_at": T0},
        ]
        for record in records:
            h, _traces = engine.prepare(record)
            assert attrs.evolve(h) == h  # through Handoff.__init__ and every validator
            assert type(h.sla_minutes) is float
            assert type(h.attributes) is type(attrs.evolve(h).attributes)

    def test_fast_and_validated_builds_agree_field_by_field(self) -> None:
        """The positional fast path puts every value in the field Handoff(...) would."""

        class Text(str):  # a str subclass sends the build through Handoff(...)
            pass

        # Business hours and a 75% step, so every deadline and the first due time differ.
        cal = slakit.BusinessCalendar.weekdays("America/New_York", "09:00-17:00")
        policy = slakit.Policy.from_config(
            {
                "calendar": cal,
                "basis": "business",
                "sla_minutes": 30,
                "steps": [{"at": "75%", "do": ["notify:owner"]}],
            },
            name="lead",
        )
        engine = slakit.Engine(policies=[policy], clock=slakit.ManualClock(T0))
        record = {
            "id": "a",
            "owner": "alice",
            "backup_owner": "bob",
            "sla_minutes": 45,
            "started_at": T0 - timedelta(hours=3),
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "channel": "web",
            "segment": "smb",
            "region": "EMEA",
        }
        fast, _ = engine.prepare(record, now=T0)
        slow, _ = engine.prepare({**record, "owner": Text("alice")}, now=T0)
        assert len({fast.deadline_at, fast.wall_deadline_at, fast.next_due_at}) == 3
        assert attrs.asdict(fast) == attrs.asdict(slow)

    def test_odd_values_get_the_validators_messages(self) -> None:
        """A value of an unexpected type is refused by the record's own validators."""
        engine, _ = wall_engine()
        with pytest.raises(ValidationError, match="owner must be a string, got 5") as e:
            engine.prepare({"id": "a", "owner": 5})
        assert e.value.field == "owner"
        with pytest.raises(ValidationError, match="trace_id must be a non-empty string"):
            engine.prepare({"id": "a", "trace_id": "  "})
        with pytest.raises(ValidationError, match="attributes of record 'a' must be a mapping"):
            engine.prepare({"id": "a", "attributes": "region=EMEA"})

    def test_trace_ids_do_not_follow_the_random_module(self) -> None:
        """Seeding ``random`` elsewhere (tests, simulations) cannot repeat trace ids."""
        import random

        from slakit.handoff import is_w3c_trace_id, new_trace_id

        random.seed(7)
        first = new_trace_id()
        random.seed(7)
        second = new_trace_id()
        assert first != second
        assert is_w3c_trace_id(first)
        assert is_w3c_trace_id(second)

    def test_a_forked_child_draws_other_trace_ids(self) -> None:
        """A worker forked from a parent does not repeat the parent's trace ids."""
        import os
        import subprocess
        import sys

        if not hasattr(os, "fork"):
            pytest.skip("no fork() on this platform")
        # Forked from a fresh single-threaded interpreter (forking the test
        # process itself, which has threads, is unsafe).
        code = (
            "import os\n"
            "from slakit.handoff import new_trace_id\n"
            "new_trace_id()\n"
            "read, write = os.pipe()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.write(write, new_trace_id().encode())\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "print(os.read(read, 64).decode(), new_trace_id())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        child, parent = out
        assert len(child) == len(parent) == 32
        assert child != parent

    def test_record_sla_overrides_policy_default(self) -> None:
        """sla_minutes on the record wins over the policy's default."""
        engine, _ = wall_engine()
        h = engine.start("L1", owner="a", sla_minutes=5)
        assert h.deadline_at == T0 + timedelta(minutes=5)

    def test_start_is_idempotent_for_same_content(self) -> None:
        """Starting the same id with the same content returns the stored record."""
        engine, clock = wall_engine()
        first = engine.start("L1", owner="a", email="x@example.com")
        clock.advance(minutes=1)
        again = engine.start("L1", owner="a", email="x@example.com")
        assert again == first
        assert len(engine.store.traces("L1")) == 1

    def test_start_is_idempotent_after_a_step_moved_the_owners(self) -> None:
        """A retried start matches the owners the record started with, not today's."""
        engine, clock = wall_engine()
        engine.start("A", owner="alice", backup_owner="bob", started_at=T0)
        engine.start_many([{"id": "B", "owner": "alice", "backup_owner": "bob", "started_at": T0}])
        clock.advance(minutes=61)
        engine.check()
        for hid in ("A", "B"):
            assert (engine.get(hid).owner, engine.get(hid).backup_owner) == ("bob", "alice")
            again = engine.start(hid, owner="alice", backup_owner="bob", started_at=T0)
            assert again == engine.get(hid)
            with pytest.raises(DuplicateHandoffError, match="owner: stored 'alice', given 'carol'"):
                engine.start(hid, owner="carol", backup_owner="bob", started_at=T0)
            assert len([t for t in engine.store.traces(hid) if t.action == "start"]) == 1

    def test_start_with_different_content_raises_and_writes_nothing(self) -> None:
        """A duplicate id with different content raises, naming the differing field."""
        engine, _ = wall_engine()
        engine.start("L1", owner="a")
        with pytest.raises(DuplicateHandoffError, match="owner"):
            engine.start("L1", owner="b")
        assert engine.get("L1").owner == "a"

    @pytest.mark.parametrize("bad", [0, -5, math.inf, math.nan, "30", True, 5_259_601, 1e8])
    def test_bad_sla_raises_and_writes_nothing(self, bad: Any) -> None:
        """A non-positive, non-finite or over-ten-years SLA raises InvalidSLAError naming
        the value (a typo such as 1e8 would keep a business calendar busy for minutes)."""
        engine, _ = wall_engine()
        with pytest.raises(InvalidSLAError, match="sla_minutes"):
            engine.start("L1", owner="a", sla_minutes=bad)
        with pytest.raises(UnknownHandoffError):
            engine.get("L1")

    def test_ten_years_is_the_longest_sla_and_step_offset(self) -> None:
        engine, _ = wall_engine()
        assert engine.start("L1", owner="a", sla_minutes=5_259_600).sla_minutes == 5_259_600
        for at in ("3653d", "521w6d", "99999999999m", "9" * 30 + "w", "1x+3653d"):
            with pytest.raises(ValidationError, match="at most ten years"):
                slakit.Policy.from_config({"steps": [{"at": at, "do": ["notify:owner"]}]}, name="p")
        with pytest.raises(ValidationError, match="up to 100x"):
            slakit.Policy.from_config({"steps": [{"at": "101x", "do": ["notify:owner"]}]}, name="p")
        for sla in (5_259_601, 1e8):
            with pytest.raises(InvalidSLAError, match=r"policies\.p\.sla_minutes"):
                slakit.Policy.from_config({"sla_minutes": sla}, name="p")

    def test_naive_started_at_raises(self) -> None:
        """A naive datetime raises NaiveDatetimeError naming the field."""
        engine, _ = wall_engine()
        with pytest.raises(NaiveDatetimeError, match="started_at"):
            engine.start("L1", owner="a", started_at=datetime(2026, 3, 2, 9))
        assert engine.store.count() == 0

    def test_unknown_policy_raises(self) -> None:
        """An unknown policy name raises UnknownPolicyError listing the configured ones."""
        engine, _ = wall_engine()
        with pytest.raises(UnknownPolicyError, match=r"'nope'.*default"):
            engine.start("L1", policy="nope", owner="a")

    def test_policy_may_be_omitted_when_only_one(self) -> None:
        """With one policy configured, start() uses it."""
        engine, _ = wall_engine()
        assert engine.start("L1", owner="a").policy == "default"

    def test_attributes_are_kept(self) -> None:
        """Extra keyword arguments are stored as attributes."""
        engine, _ = wall_engine()
        h = engine.start("L1", owner="a", email="x@example.com", score=3)
        assert dict(engine.get(h.id).attributes) == {"email": "x@example.com", "score": 3}

    def test_an_attributes_mapping_is_merged_as_start_many_does(self) -> None:
        """start(..., attributes={...}) keeps the mapping's keys, not one key named
        "attributes"; keyword attributes win; a non-mapping is refused, nothing written."""
        engine, _ = wall_engine()
        h = engine.start(
            "L1", owner="a", attributes={"email": "x@example.com", "score": 1}, score=3
        )
        assert dict(engine.get(h.id).attributes) == {"email": "x@example.com", "score": 3}
        engine.start_many([{"id": "L2", "owner": "a", "attributes": {"email": "y@example.com"}}])
        assert dict(engine.get("L2").attributes) == {"email": "y@example.com"}
        with pytest.raises(
            ValidationError, match="attributes of record 'L3' must be a mapping"
        ) as bad:
            engine.start("L3", owner="a", attributes="region=EMEA")
        assert (bad.value.field, bad.value.value) == ("attributes", "region=EMEA")
        with pytest.raises(slakit.errors.UnknownHandoffError):
            engine.get("L3")
        # The same start again is the same content: idempotent, not a conflict.
        assert engine.start("L1", owner="a", attributes={"email": "x@example.com"}, score=3) == h

    @pytest.mark.parametrize(
        ("field", "kwargs"),
        [
            ("id", {"id": "L1\nL2"}),
            ("id", {"id": "L1\x00"}),
            ("owner", {"id": "L1", "owner": "al\tice"}),
            ("backup_owner", {"id": "L1", "backup_owner": "bob\r"}),
            ("channel", {"id": "L1", "channel": "web\x1b[31m"}),
            ("owner", {"id": "L1", "owner": "ann\x9b31mRED"}),
            ("segment", {"id": "L1", "segment": "smb\u202eesirpretne"}),
            ("segment", {"id": "L1", "segment": "smb\tenterprise"}),
        ],
    )
    def test_control_characters_are_refused(self, field: str, kwargs: dict[str, Any]) -> None:
        """A newline or another control character in an id or an owner would split a
        log line, a CSV row or a chat message: refused, naming the field."""
        engine, _ = wall_engine()
        record = {"owner": "a", **kwargs}
        with pytest.raises(ValidationError, match="must not contain control characters") as e:
            engine.start(**record)
        assert (e.value.field, e.value.value) == (field, record[field])
        with pytest.raises(ValidationError):
            engine.start_many([{"id": "ok", "owner": "a"}, record])
        assert engine.store.count() == 0
        assert engine.start("L1 (non-breaking\u00a0space)", owner="a").id.startswith("L1")

    @pytest.mark.parametrize(
        ("field", "kwargs"),
        [
            ("owner", {"owner": ""}),
            ("owner", {"owner": "   "}),
            ("backup_owner", {"owner": "a", "backup_owner": ""}),
        ],
    )
    def test_blank_owners_are_refused(self, field: str, kwargs: dict[str, Any]) -> None:
        """An owner of "" would send every alert nowhere: refused, naming the field."""
        engine, _ = wall_engine()
        with pytest.raises(ValidationError, match="must not be empty") as e:
            engine.start("L1", **kwargs)
        assert e.value.field == field
        with pytest.raises(ValidationError):
            engine.start_many([{"id": "ok", "owner": "a"}, {"id": "L1", **kwargs}])
        assert engine.store.count() == 0

    def test_event_texts_are_one_line(self) -> None:
        """Who responded, why cancelled, the breach reason: a control character is refused."""
        engine, _ = wall_engine()
        engine.start("L1", owner="a")
        before = engine.get("L1")
        calls = [
            ("responded_by", lambda: engine.respond("L1", by="ann\tlee")),
            ("cancel_reason", lambda: engine.cancel("L1", reason="spam\nreally")),
            ("reason", lambda: engine.tag_breach("L1", "slow\x00")),
            (
                "cancel_reason",
                lambda: engine.start_many(
                    [{"id": "L2", "cancelled_at": T0, "cancel_reason": "a\x1b"}]
                ),
            ),
        ]
        for field, call in calls:
            with pytest.raises(ValidationError, match="control characters") as e:
                call()
            assert e.value.field == field
        assert engine.get("L1") == before
        assert engine.store.count() == 1
        assert engine.respond("L1", by="Ann\u00a0Lee").responded_by == "Ann\u00a0Lee"

    def test_start_many_is_all_or_nothing(self) -> None:
        """start_many writes every record or, on a bad one, none."""
        engine, _ = wall_engine()
        good = [{"id": f"L{i}", "owner": "a"} for i in range(5)]
        assert engine.start_many(good) == 5
        bad = [{"id": "N1", "owner": "a"}, {"id": "N2", "owner": "a", "sla_minutes": -1}]
        with pytest.raises(InvalidSLAError):
            engine.start_many(bad)
        assert engine.store.count() == 5

    def test_start_many_takes_history(self) -> None:
        """Backfilled records with a response are stopped with elapsed times written."""
        engine, _ = wall_engine()
        engine.start_many(
            [
                {
                    "id": "old",
                    "owner": "a",
                    "started_at": T0 - timedelta(days=2),
                    "first_response_at": T0 - timedelta(days=2) + timedelta(minutes=12),
                }
            ]
        )
        h = engine.get("old")
        assert h.stopped_at == T0 - timedelta(days=2) + timedelta(minutes=12)
        assert h.wall_elapsed_seconds == 12 * 60
        assert h.next_due_at is None

    def test_instants_out_of_range_are_named_errors(self) -> None:
        """Times near datetime.max are refused naming the field; nothing is written."""
        from zoneinfo import ZoneInfo

        engine, _ = wall_engine()
        far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
        cases: list[tuple[Any, str]] = [
            (lambda: engine.start("A", started_at=far), "started_at"),
            (
                lambda: engine.start(
                    "A", started_at=datetime(9999, 12, 31, 23, tzinfo=ZoneInfo("America/New_York"))
                ),
                "started_at",
            ),
            (lambda: engine.start_many([{"id": "A", "started_at": far}]), "started_at"),
            (lambda: engine.check(far), "now"),
            (lambda: engine.deliver(far), "now"),
        ]
        for call, field in cases:
            with pytest.raises(InvalidTimestampError) as e:
                call()
            assert e.value.field == field
        with pytest.raises(InvalidSLAError, match="at most ten years") as sla:
            engine.start("A", sla_minutes=1e12)
        assert sla.value.field == "sla_minutes"
        assert engine.store.count() == 0
        engine.start("B")
        with pytest.raises(InvalidTimestampError, match=r"^at 9999"):
            engine.respond("B", at=far)
        assert engine.get("B").first_response_at is None

    def test_a_start_outside_the_calendar_years_names_started_at(self) -> None:
        cal = slakit.BusinessCalendar.weekdays("America/New_York")
        policy = slakit.Policy.from_config({"calendar": cal}, name="lead")
        engine, _ = wall_engine(policies=[policy])
        with pytest.raises(InvalidTimestampError, match="covers years") as e:
            engine.start("old", started_at=datetime(1, 3, 2, 14, tzinfo=UTC))
        assert e.value.field == "started_at"
        assert engine.store.count() == 0

    def test_a_step_past_the_year_9999_does_not_stop_the_check(self) -> None:
        """A stored record whose later step falls past 9999 (an SLA written before the
        ten-year limit) is reported in the check's errors; the others' steps are applied."""
        policy = slakit.Policy.from_config(
            {
                "basis": "wall",
                "steps": [
                    {"at": "1x", "do": ["notify:owner"]},
                    {"at": "2x", "do": ["notify:owner"]},
                ],
            },
            name="long",
        )
        engine, _ = wall_engine(policies=[policy])
        far = engine.start("far", started_at=datetime(7000, 1, 1, tzinfo=UTC))
        # About 1,900 years: 1x lands in 8901, 2x past 9999.
        huge = far._replace(sla_minutes=1e9, next_due_at=datetime(8901, 1, 1, tzinfo=UTC))
        engine.store.update(huge, far.version)
        engine.start("near", sla_minutes=1)
        result = engine.check(datetime(8999, 1, 1, tzinfo=UTC))
        assert [(a.handoff_id, a.stage) for a in result.applied] == [("near", 0), ("near", 1)]
        assert len(result.errors) == 1
        assert "far" in result.errors[0]
        assert "9999" in result.errors[0]

    @pytest.mark.parametrize("stop", ["first_response", "completion"])
    def test_history_is_applied_in_time_order_as_the_events(self, stop: str) -> None:
        """Completed at +20 min, answered at +90: the clock stops at the completion,
        imported or recorded live."""
        policy = attrs.evolve(slakit.Policy.default(basis="wall"), stop=stop)
        engine, _ = wall_engine(policies=[policy])
        start = T0 - timedelta(days=1)
        done, answered = start + timedelta(minutes=20), start + timedelta(minutes=90)
        engine.start("live", started_at=start)
        engine.complete("live", at=done)
        engine.respond("live", at=answered)
        engine.start_many(
            [
                {
                    "id": "imported",
                    "started_at": start,
                    "completed_at": done,
                    "first_response_at": answered,
                }
            ]
        )
        live, imported = engine.get("live"), engine.get("imported")
        fields = ("stopped_at", "first_response_at", "completed_at", "wall_elapsed_seconds")
        assert {f: getattr(imported, f) for f in fields} == {f: getattr(live, f) for f in fields}
        assert imported.stopped_at == done
        actions = [t.action for t in engine.store.traces("imported")]
        assert actions == ["start", "complete", "respond"]

    def test_cancelled_history_follows_the_event_rules(self) -> None:
        """A cancel with a response or completion is refused where the events would be."""
        start = T0 - timedelta(days=1)
        answered, cancelled = start + timedelta(minutes=90), start + timedelta(minutes=100)
        engine, _ = wall_engine()
        refused: list[tuple[dict[str, Any], str]] = [
            # The response stopped the clock: a later cancel would flatter the hit rate.
            ({"first_response_at": answered, "cancelled_at": cancelled}, "cancelled_at"),
            # Nothing is recorded after a cancel.
            ({"first_response_at": cancelled, "cancelled_at": answered}, "first_response_at"),
            ({"completed_at": answered, "cancelled_at": cancelled}, "cancelled_at"),
            ({"completed_at": cancelled, "cancelled_at": answered}, "cancelled_at"),
        ]
        for extra, field in refused:
            with pytest.raises(InvalidTransitionError) as e:
                engine.start_many([{"id": "L", "started_at": start, **extra}])
            assert e.value.field == field
            assert engine.store.count() == 0
        # The same histories as events are refused as well.
        engine.start("E", started_at=start)
        engine.respond("E", at=answered)
        with pytest.raises(InvalidTransitionError):
            engine.cancel("E", at=cancelled)

        # A response that left the clock running may precede the cancel.
        policy = slakit.Policy.default(basis="wall")
        lenient = attrs.evolve(policy, stop="completion")
        engine, _ = wall_engine(policies=[lenient])
        engine.start_many(
            [
                {
                    "id": "L",
                    "started_at": start,
                    "first_response_at": answered,
                    "responded_by": "ann",
                    "cancelled_at": cancelled,
                }
            ]
        )
        h = engine.get("L")
        assert (h.first_response_at, h.responded_by, h.cancelled_at) == (answered, "ann", cancelled)
        assert [t.action for t in engine.store.traces("L")] == ["start", "respond", "cancel"]

    def test_history_values_are_checked(self) -> None:
        """History times before the start, and non-text names, are refused naming the field."""
        engine, _ = wall_engine()
        start = T0 - timedelta(days=1)
        cases: list[tuple[dict[str, Any], type[Exception], str]] = [
            (
                {"first_response_at": start - timedelta(minutes=1)},
                InvalidTimestampError,
                "first_response_at",
            ),
            ({"completed_at": start - timedelta(seconds=1)}, InvalidTimestampError, "completed_at"),
            ({"cancelled_at": start - timedelta(hours=1)}, InvalidTimestampError, "cancelled_at"),
            ({"first_response_at": start, "responded_by": 7}, ValidationError, "responded_by"),
            ({"cancelled_at": start, "cancel_reason": ["x"]}, ValidationError, "cancel_reason"),
            ({"completed_at": datetime(2026, 3, 1, 12, 0)}, NaiveDatetimeError, "completed_at"),
        ]
        for extra, error, field in cases:
            with pytest.raises(error, match=field) as e:
                engine.prepare({"id": "old", "started_at": start, **extra})
            assert e.value.field == field  # type: ignore[attr-defined]
        h, traces = engine.prepare(
            {"id": "old", "started_at": start, "cancelled_at": start, "cancel_reason": "spam"}
        )
        assert (h.cancelled_at, h.cancel_reason, h.next_due_at) == (start, "spam", None)
        assert [t.rule for t in traces] == ["start", "cancel"]
        assert attrs.evolve(h) == h

    def test_start_prepared_writes_what_prepare_built(self) -> None:
        """start_prepared writes prepared records and their traces, all or nothing."""
        engine, _ = wall_engine()
        prepared = [engine.prepare({"id": f"P{i}", "owner": "a"}) for i in range(3)]
        with capture_traces() as traces:
            assert engine.start_prepared(prepared) == 3
        assert [t.handoff_id for t in traces] == ["P0", "P1", "P2"]
        assert engine.get("P1") == prepared[1][0]
        again = [engine.prepare({"id": "P3"}), engine.prepare({"id": "P0"})]
        with pytest.raises(DuplicateHandoffError, match="'P0'"):
            engine.start_prepared(again)
        assert engine.store.count() == 3


class TestSteps:
    def test_playbook_policy_alerts_then_reassigns_and_breaches(self) -> None:
        """At 1x the owner is told; at 2x the record is breached, reassigned, and both told."""
        engine, clock = wall_engine()
        engine.start("L1", owner="alice", backup_owner="bob")
        with capture_notifications() as sent:
            clock.advance(minutes=29, seconds=59)
            assert engine.check().count == 0
            clock.advance(seconds=1)
            assert engine.check().count == 1
            engine.deliver()
            assert [(n.recipient, n.action) for n in sent] == [("alice", "notify:owner")]
            clock.advance(minutes=30)
            assert engine.check().count == 1
            engine.deliver()
        h = engine.get("L1")
        assert h.breached is True
        assert h.owner == "bob"
        assert h.backup_owner == "alice"
        assert h.next_due_at is None
        assert [(n.recipient, n.action) for n in sent[1:]] == [
            ("bob", "notify:owner"),
            ("alice", "notify:backup"),
        ]
        assert [n.idempotency_key for n in sent] == [
            "L1:0:notify:owner:alice",
            "L1:1:notify:owner:bob",
            "L1:1:notify:backup:alice",
        ]

    def test_check_twice_at_same_instant_equals_once(self) -> None:
        """A second check at the same instant applies nothing."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a", backup_owner="b")
        clock.advance(hours=2)
        first = engine.check()
        second = engine.check()
        assert first.count == 2
        assert second.count == 0
        assert len(engine.store.escalations("L1")) == 2

    def test_response_before_due_cancels_steps(self) -> None:
        """A response that lands before a step is claimed stops every later step."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a", backup_owner="b")
        clock.advance(minutes=10)
        h = engine.respond("L1", by="a")
        assert h.stopped_at == T0 + timedelta(minutes=10)
        assert h.wall_elapsed_seconds == 600
        clock.advance(hours=5)
        assert engine.check().count == 0
        assert engine.store.escalations("L1") == []
        assert engine.get("L1").breached is False

    def test_response_between_claim_and_apply_wins(self) -> None:
        """If a response is written after a checker claimed the record, the step is not applied."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        clock.advance(minutes=31)
        (claimed,) = engine.store.claim_due(clock.now(), 10, "w", 60)
        plan = engine._plan_next(claimed, clock.now())
        assert plan is not None
        engine.respond("L1")
        assert engine.store.apply_steps([plan.app]) == [False]
        assert engine.store.escalations() == []
        assert engine.check().count == 0

    def test_overdue_steps_fire_in_order_after_downtime(self) -> None:
        """After downtime, each overdue step fires in order, each once."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a", backup_owner="b")
        clock.advance(days=3)
        result = engine.check()
        assert [(a.stage, a.step, a.outcome) for a in result.applied] == [
            (0, "1x", "applied"),
            (1, "2x", "applied"),
        ]

    def test_a_handoffs_due_steps_are_planned_in_the_round_that_claims_it(self) -> None:
        """Each handoff behind by two steps is claimed once; both steps are written,
        in order, the second planned on the record the first leaves."""
        engine, clock = wall_engine()
        for i in range(3):
            engine.start(f"L{i}", owner="a", backup_owner="b")
        claims: list[int] = []
        claim_due = engine.store.claim_due

        def counting(*args: Any) -> Any:
            got = claim_due(*args)
            claims.append(len(got))
            return got

        engine.store.claim_due = counting  # type: ignore[method-assign]
        clock.advance(hours=3)
        with capture_notifications() as sent:
            result = engine.check()
            engine.deliver()
        assert claims == [3, 0]
        assert [(a.handoff_id, a.stage) for a in result.applied] == [
            (f"L{i}", k) for i in range(3) for k in (0, 1)
        ]
        assert result.lost == 0
        h = engine.get("L0")
        assert (h.stage, h.owner, h.breached, h.next_due_at) == (2, "b", True, None)
        assert [e.stage for e in engine.store.escalations("L0")] == [0, 1]
        # The 1x alert went to the owner of the time; the 2x step saw its own change.
        assert next((n.stage, n.recipient) for n in sent if n.handoff_id == "L0") == (0, "a")

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    def test_steps_caught_up_together_read_as_steps_fired_one_by_one(
        self, store: str, tmp_path: Path
    ) -> None:
        """Three overdue built-in steps planned in one round give the texts, rows and
        record that three checks, one at each due time, give."""
        from slakit.adapters.sqlite import SQLiteStore

        message = (
            "{id} {policy} {owner} {backup_owner} {breached} {stage} {sla_minutes} "
            "{segment} {channel} {attributes} {step} {recipient} {action}"
        )
        policy = slakit.Policy.from_config(
            {
                "basis": "wall",
                "steps": [
                    {"at": "1x", "do": ["notify:owner"], "message": message},
                    {
                        "at": "2x",
                        "do": ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"],
                        "message": message,
                    },
                    {"at": "3x", "do": ["notify:owner", "notify:@lead"], "message": message},
                ],
            },
            name="p",
        )
        runs = []
        for i, when in enumerate(([4], [1, 2, 3])):
            chosen = MemoryStore() if store == "memory" else SQLiteStore(tmp_path / f"{i}.db")
            engine, _clock = wall_engine(policies=[policy], store=chosen)
            engine.start(
                "L1",
                owner="a",
                backup_owner="b",
                sla_minutes=45,
                segment="smb",
                channel="web",
                attributes={"tier": 2, "tags": ["x"], "score": 1.5},
                trace_id="0af7651916cd43dd8448eb211c80319c",
            )
            applied = []
            with capture_notifications() as sent:
                for times in when:
                    applied += engine.check(T0 + timedelta(minutes=45 * times)).applied
                engine.deliver(T0 + timedelta(hours=4))
            runs.append(
                (
                    sorted(
                        (
                            n.stage,
                            n.recipient,
                            n.text,
                            n.notification.subject,
                            json.dumps(dict(n.notification.payload), sort_keys=True, default=str),
                        )
                        for n in sent
                    ),
                    [(a.stage, a.outcome) for a in applied],
                    engine.get("L1"),
                    [(e.stage, e.actions) for e in engine.store.escalations("L1")],
                )
            )
            engine.close()
        assert runs[0] == runs[1]
        assert len(runs[0][0]) == 5

    def test_a_run_lost_to_another_writer_counts_one_lost_step(self) -> None:
        """When another writer changes the handoff between claim and write, its first
        planned step is lost to that writer; the one planned on it is not counted."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a", backup_owner="b")
        apply_steps = engine.store.apply_steps

        def meddling(apps: Any) -> list[bool]:
            h = engine.store.get("L1")
            engine.store.update(attrs.evolve(h, segment="moved"), h.version)
            return apply_steps(apps)

        engine.store.apply_steps = meddling  # type: ignore[method-assign]
        clock.advance(hours=3)
        result = engine.check()
        assert (result.count, result.lost) == (0, 1)
        engine.store.apply_steps = apply_steps  # type: ignore[method-assign]
        assert [a.stage for a in engine.check().applied] == [0, 1]
        assert engine.get("L1").segment == "moved"

    def test_coalesce_skips_to_latest_and_traces_the_skip(self) -> None:
        """With coalesce, only the latest due step runs; earlier ones are traced as skipped."""
        policy = slakit.Policy.from_config({"basis": "wall", "coalesce": True}, name="p")
        engine, clock = wall_engine(policies=[policy])
        engine.start("L1", owner="a", backup_owner="b")
        clock.advance(days=1)
        with capture_traces() as traces, capture_notifications() as sent:
            result = engine.check()
            engine.deliver()
        assert [(a.stage, a.outcome) for a in result.applied] == [(0, "skipped"), (1, "applied")]
        assert any(t.action == "skip" and t.outcome == "skipped" for t in traces)
        assert {n.stage for n in sent} == {1}
        assert [e.outcome for e in engine.store.escalations("L1")] == ["skipped", "applied"]

    def test_warning_step_before_deadline(self) -> None:
        """A '-10m' step fires ten minutes before the deadline."""
        policy = slakit.Policy.from_config(
            {
                "basis": "wall",
                "steps": [
                    {"at": "-10m", "do": ["notify:owner"]},
                    {"at": "1x", "do": ["mark_breached"]},
                ],
            },
            name="p",
        )
        engine, clock = wall_engine(policies=[policy])
        engine.start("L1", owner="a")
        clock.advance(minutes=20)
        with capture_notifications() as sent:
            assert engine.check().count == 1
            engine.deliver()
        assert "due in 10 min" in sent[0].text
        assert engine.get("L1").breached is False

    def test_pause_moves_the_deadline(self) -> None:
        """Paused time is added to the deadline; no step fires while paused."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        clock.advance(minutes=10)
        engine.pause("L1")
        clock.advance(hours=3)
        assert engine.check().count == 0
        h = engine.resume("L1")
        assert h.paused_seconds == 3 * 3600
        assert h.deadline_at == T0 + timedelta(minutes=30, hours=3)
        clock.advance(minutes=19)
        assert engine.check().count == 0
        clock.advance(minutes=1)
        assert engine.check().count == 1

    def test_cancel_stops_steps(self) -> None:
        """A cancelled handoff never escalates, and cannot be responded to."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        engine.cancel("L1", reason="spam")
        clock.advance(hours=2)
        assert engine.check().count == 0
        with pytest.raises(InvalidTransitionError, match="cancelled"):
            engine.respond("L1")

    def test_respond_before_start_raises(self) -> None:
        """A response timestamped before the start raises and writes nothing."""
        engine, _ = wall_engine()
        engine.start("L1", owner="a")
        with pytest.raises(InvalidTimestampError, match="first_response_at"):
            engine.respond("L1", at=T0 - timedelta(minutes=1))
        assert engine.get("L1").first_response_at is None

    def test_second_response_is_ignored(self) -> None:
        """Only the first response counts."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        clock.advance(minutes=5)
        engine.respond("L1", by="a")
        clock.advance(minutes=5)
        assert engine.respond("L1", by="b").responded_by == "a"

    def test_completion_stop(self) -> None:
        """With stop = completion, a response does not stop the clock; completion does."""
        policy = slakit.Policy.from_config({"basis": "wall", "stop": "completion"}, name="p")
        engine, clock = wall_engine(policies=[policy])
        engine.start("L1", owner="a")
        clock.advance(minutes=5)
        assert engine.respond("L1").stopped_at is None
        clock.advance(minutes=30)
        assert engine.check().count == 1
        assert engine.complete("L1").stopped_at == T0 + timedelta(minutes=35)

    def test_missing_backup_skips_and_traces(self) -> None:
        """notify:backup without a backup owner is traced as skipped, not an error."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        clock.advance(hours=1)
        with capture_traces() as traces:
            engine.check()
        skipped = [t for t in traces if t.outcome == "skipped"]
        assert {t.action for t in skipped} == {"reassign:backup", "notify:backup"}

    def test_tag_breach_checks_taxonomy(self) -> None:
        """tag_breach accepts configured reasons and rejects others, naming them."""
        engine, _ = wall_engine(breach_reasons={"no_backup": "nobody covered"})
        engine.start("L1", owner="a")
        assert engine.tag_breach("L1", "no_backup").breach_reason == "no_backup"
        with pytest.raises(UnknownBreachReasonError, match=r"'typo'.*no_backup"):
            engine.tag_breach("L1", "typo")

    def test_step_applied_hook_is_called(self) -> None:
        """Observers registered for slakit_step_applied see every applied step."""
        seen: list[tuple[str, int, str]] = []

        class Observer:
            @slakit.hookimpl
            def slakit_step_applied(
                self, handoff: slakit.Handoff, stage: int, step: str, actions: list[str]
            ) -> None:
                seen.append((handoff.id, stage, step))

        from slakit.plugins import Plugins

        pm = slakit.get_plugin_manager(autoload=False)
        pm.register(Observer(), name="undo-observer")
        try:
            engine, clock = wall_engine(plugins=Plugins(pm))
            engine.start("L1", owner="a", backup_owner="b")
            clock.advance(hours=1)
            engine.check()
        finally:
            pm.unregister(name="undo-observer")
        assert seen == [("L1", 0, "1x"), ("L1", 1, "2x")]


class TestDelivery:
    def test_transient_failures_retry_with_backoff_then_send_once(self) -> None:
        """A notifier failing twice is retried with growing delays and delivered once."""
        rec = Recorder(fail=2)
        engine, clock = wall_engine(notifiers=[rec], backoff_base=10, backoff_cap=100)
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        r1 = engine.deliver()
        assert (r1.sent, r1.retried) == (0, 1)
        (row,) = engine.store.outbox()
        assert row.next_attempt_at is not None
        wait1 = (row.next_attempt_at - clock.now()).total_seconds()
        assert 5 <= wait1 <= 10
        assert engine.deliver().sent == 0  # not yet due
        clock.set(row.next_attempt_at)
        assert engine.deliver().retried == 1
        (row,) = engine.store.outbox()
        assert row.next_attempt_at is not None
        wait2 = (row.next_attempt_at - clock.now()).total_seconds()
        assert 10 <= wait2 <= 20
        clock.set(row.next_attempt_at)
        assert engine.deliver().sent == 1
        assert len(rec.sent) == 1
        outcomes = [t.outcome for t in engine.store.traces("L1") if t.actor.startswith("notif")]
        assert outcomes == ["retry", "retry", "sent"]

    def test_a_notifier_may_take_the_key_as_a_second_argument(self) -> None:
        """send(notification, idempotency_key), as the design's data flow writes it, works;
        a second parameter with a default and another name is left alone."""
        got: dict[str, list[tuple[Any, ...]]] = {"keyed": [], "optional": [], "other": []}

        class Keyed(Notifier):
            name = "keyed"

            def send(self, notification: Notification, idempotency_key: str) -> None:  # type: ignore[override]
                got["keyed"].append((notification.recipient, idempotency_key))

        class Optional(Notifier):
            name = "optional"

            def send(  # type: ignore[override]
                self, notification: Notification, idempotency_key: str | None = None
            ) -> None:
                got["optional"].append((notification.recipient, idempotency_key))

        class Other(Notifier):
            name = "other"

            def send(self, notification: Notification, colour: str = "red") -> None:  # type: ignore[override]
                got["other"].append((notification.recipient, colour))

        engine, clock = wall_engine(notifiers=[Keyed(), Optional(), Other()])
        engine.start("L1", owner="ann")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().sent == 3
        key = "L1:0:notify:owner:ann"
        assert got == {
            "keyed": [("ann", key)],
            "optional": [("ann", key)],
            "other": [("ann", "red")],
        }

    def test_retry_after_is_a_floor(self) -> None:
        """A peer's Retry-After is never undercut by the backoff."""
        rec = Recorder(fail=1, retry_after=900)
        engine, clock = wall_engine(notifiers=[rec], backoff_base=1)
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        engine.deliver()
        (row,) = engine.store.outbox()
        assert row.next_attempt_at is not None
        assert (row.next_attempt_at - clock.now()).total_seconds() >= 900

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    def test_a_huge_retry_after_waits_a_day(self, store: str, tmp_path: Any) -> None:
        """Retry-After: 10^12 seconds would overflow the calendar; it is honoured up to a day,
        and the next rows are still sent in the same delivery."""
        from slakit.adapters.sqlite import SQLiteStore

        rec = Recorder(fail=1, retry_after=1e12)
        chosen = MemoryStore() if store == "memory" else SQLiteStore(tmp_path / "d.db")
        engine, clock = wall_engine(store=chosen, notifiers=[rec])
        engine.start("L1", owner="a")
        engine.start("L2", owner="b")
        clock.advance(minutes=30)
        engine.check()
        result = engine.deliver()
        assert (result.retried, result.sent) == (1, 1)
        row = next(r for r in engine.store.outbox() if r.state == "pending")
        assert row.next_attempt_at == clock.now() + timedelta(seconds=slakit.engine.MAX_RETRY_AFTER)

    @pytest.mark.parametrize("store", ["memory", "sqlite"])
    def test_error_text_is_kept_storable(self, store: str, tmp_path: Any) -> None:
        """A peer's error with NUL (PostgreSQL text refuses it) or megabytes of body is
        kept spelt out and cut to MAX_ERROR_TEXT, on the row and its trace line."""
        from slakit.adapters.sqlite import SQLiteStore

        class Noisy(Notifier):
            name = "noisy"

            def send(self, notification: Notification) -> None:
                raise TransientNotifyError("upstream \x00 failed " + "x" * 10_000)

        chosen = MemoryStore() if store == "memory" else SQLiteStore(tmp_path / "e.db")
        engine, clock = wall_engine(store=chosen, notifiers=[Noisy()])
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().retried == 1
        (row,) = engine.store.outbox()
        assert row.last_error is not None
        assert row.last_error.startswith("upstream \\x00 failed xxx")
        assert len(row.last_error) == slakit.engine.MAX_ERROR_TEXT
        trace = [t for t in engine.store.traces("L1") if t.outcome == "retry"][-1]
        assert trace.detail["error"] == row.last_error

    def test_permanent_failure_dead_letters_at_once(self) -> None:
        """A permanent failure is not retried; the row is dead and traced."""
        rec = Recorder(fail=5, permanent=True)
        engine, clock = wall_engine(notifiers=[rec])
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().dead == 1
        assert rec.calls == 1
        (row,) = engine.store.outbox()
        assert row.state == "dead"
        assert row.last_error == "user_not_found"

    def test_attempts_run_out_into_dead_letter(self) -> None:
        """After max_attempts transient failures the row is dead-lettered."""
        rec = Recorder(fail=100)
        engine, clock = wall_engine(notifiers=[rec], max_attempts=3, backoff_base=1)
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        for _ in range(5):
            engine.deliver()
            clock.advance(hours=1)
        assert rec.calls == 3
        assert engine.store.outbox()[0].state == "dead"

    def _dead_letters(
        self, *ids: str, notifiers: int = 1
    ) -> tuple[slakit.Engine, slakit.ManualClock, list[Recorder]]:
        """An engine whose first notifications all died of a permanent failure."""
        recs = [Recorder(fail=len(ids), permanent=True) for _ in range(notifiers)]
        for i, rec in enumerate(recs[1:], 1):
            rec.name = f"recorder{i}"
        engine, clock = wall_engine(notifiers=recs)
        for hid in ids:
            engine.start(hid, owner="a")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().dead == len(ids) * notifiers
        return engine, clock, recs

    def test_requeue_dead_sends_again_with_a_fresh_budget(self) -> None:
        """A dead row requeued is delivered by the next deliver, once, with its key."""
        engine, clock, (rec,) = self._dead_letters("L1")
        (dead,) = engine.store.outbox(state="dead")
        clock.advance(hours=2)
        with capture_traces() as emitted:
            (requeued,) = engine.requeue_dead(by="ops@example.com")
        assert requeued.key == dead.key
        (row,) = engine.store.outbox()
        assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, clock.now())
        assert row.last_error == "user_not_found"  # until the next attempt
        (line,) = [t for t in engine.store.traces("L1") if t.outcome == "requeued"]
        assert emitted == [line]  # handed to the sinks too
        assert (line.rule, line.action, line.actor) == (
            "step:1x",
            "notify:owner",
            "ops@example.com",
        )
        assert dict(line.detail) == {
            "idempotency_key": dead.notification.idempotency_key,
            "notifier": "recorder",
            "recipient": "a",
            "attempts": 1,
            "error": "user_not_found",
        }
        assert engine.deliver().sent == 1
        assert [n.idempotency_key for n in rec.sent] == [dead.notification.idempotency_key]
        assert engine.requeue_dead() == []  # nothing dead any more
        # The key of a row that is no longer dead selects nothing; it is not an error.
        assert engine.requeue_dead(keys=[dead.notification.idempotency_key]) == []
        outcomes = [t.outcome for t in engine.store.traces("L1") if t.rule == "step:1x"]
        assert outcomes == ["ok", "dead", "requeued", "sent"]

    def test_requeue_dead_narrows_by_key_handoff_and_notifier(self) -> None:
        """Only the chosen dead rows come back; a dry run changes nothing."""
        engine, _, _ = self._dead_letters("L1", "L2", "L3", notifiers=2)
        key2 = next(i.notification.idempotency_key for i in engine.store.outbox("L2"))
        assert len(engine.requeue_dead(dry_run=True)) == 6
        assert len(engine.store.outbox(state="dead")) == 6
        assert [t for t in engine.store.traces() if t.outcome == "requeued"] == []
        by_key = engine.requeue_dead(keys=key2, notifier="recorder1")
        assert [(i.notification.handoff_id, i.notification.notifier) for i in by_key] == [
            ("L2", "recorder1")
        ]
        by_handoff = engine.requeue_dead(handoff_id="L3")
        assert {(i.notification.handoff_id, i.notification.notifier) for i in by_handoff} == {
            ("L3", "recorder"),
            ("L3", "recorder1"),
        }
        left = {
            (i.notification.handoff_id, i.notification.notifier)
            for i in engine.store.outbox(state="dead")
        }
        assert left == {("L1", "recorder"), ("L1", "recorder1"), ("L2", "recorder")}
        actors = {t.actor for t in engine.store.traces() if t.outcome == "requeued"}
        assert actors == {"operator"}

    def test_requeue_dead_open_only_leaves_moot_alerts(self) -> None:
        """open_only skips rows whose handoff stopped or was cancelled since they died."""
        engine, _, _ = self._dead_letters("L1", "L2", "L3")
        engine.respond("L1")
        engine.cancel("L2")
        moot = engine.requeue_dead(open_only=True, dry_run=True)
        assert [i.notification.handoff_id for i in moot] == ["L3"]
        assert [i.notification.handoff_id for i in engine.requeue_dead(open_only=True)] == ["L3"]
        assert {i.notification.handoff_id for i in engine.store.outbox(state="dead")} == {
            "L1",
            "L2",
        }

    def test_requeue_dead_rejects_unknown_keys_and_handoffs(self) -> None:
        """A typo is an error that names it, and nothing is requeued."""
        engine, _, _ = self._dead_letters("L1", "L2")
        with pytest.raises(ValidationError, match="'L1:9:nope' names no outbox row") as err:
            engine.requeue_dead(
                keys=[engine.store.outbox("L1")[0].notification.idempotency_key, "L1:9:nope"]
            )
        assert err.value.field == "key"
        with pytest.raises(UnknownHandoffError):
            engine.requeue_dead(handoff_id="L9")
        with pytest.raises(ValidationError, match="of handoff 'L2'"):
            engine.requeue_dead(
                handoff_id="L2", keys=[engine.store.outbox("L1")[0].notification.idempotency_key]
            )
        with pytest.raises(NaiveDatetimeError):
            engine.requeue_dead(now=datetime(2026, 3, 2, 15, 0))
        assert len(engine.store.outbox(state="dead")) == 2

    def test_requeue_dead_leaves_rows_another_operator_took(self) -> None:
        """A row requeued (and sent) between the listing and the write is not touched."""
        engine, _, (rec,) = self._dead_letters("L1")
        (dead,) = engine.store.outbox(state="dead")
        assert engine.store.requeue_outbox([dead], now=engine.clock.now()) == [True]
        rec.fail = 0
        assert engine.deliver().sent == 1
        assert engine.store.requeue_outbox([dead], now=engine.clock.now()) == [False]
        assert engine.store.outbox()[0].state == "sent"

    def test_requeue_dead_on_a_store_that_cannot(self) -> None:
        """A store keeping the default says so with a StoreError."""

        class Plain(MemoryStore):
            requeue_outbox = slakit.abc.RecordStore.requeue_outbox

        engine, clock = wall_engine(store=Plain(), notifiers=[Recorder(fail=1, permanent=True)])
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        engine.deliver()
        with pytest.raises(slakit.errors.StoreError, match="cannot requeue outbox rows"):
            engine.requeue_dead()

    def test_summary_at_the_engines_clock(self) -> None:
        """engine.summary() judges at the clock: due steps, their age, then the outbox."""
        engine, clock = wall_engine(notifiers=[Recorder()])
        engine.start("L1", owner="a")
        assert engine.summary().due == 0
        clock.advance(minutes=40)
        s = engine.summary()
        assert (s.now, s.due, s.step_lag) == (clock.now(), 1, timedelta(minutes=10))
        engine.check()
        s = engine.summary()
        assert (s.due, s.outbox_due, s.delivery_lag) == (0, 1, timedelta(0))
        assert s.next_due_at == T0 + timedelta(minutes=60)
        assert engine.summary(now=T0).outbox_due == 0  # created after T0

    def test_purge_runs_in_batches_and_refuses_the_future(self) -> None:
        """engine.purge takes ended handoffs batch by batch; a cutoff after now is an error."""
        engine, clock = wall_engine()
        for i in range(5):
            engine.start(f"L{i}", owner="a")
        engine.start("open", owner="a")
        clock.advance(minutes=10)
        for i in range(5):
            engine.respond(f"L{i}")
        clock.advance(minutes=10)
        assert engine.purge(clock.now(), dry_run=True).handoffs == 5
        batches: list[int] = []
        done = engine.purge(
            clock.now(), batch_size=2, progress=lambda c: batches.append(c.handoffs)
        )
        assert batches == [2, 2, 1]
        assert (done.handoffs, done.traces) == (5, 10)  # a start and a respond line each
        assert engine.store.count() == 1
        with pytest.raises(ValidationError, match="after now") as err:
            engine.purge(clock.now() + timedelta(seconds=1))
        assert err.value.field == "before"
        with pytest.raises(ValidationError, match="batch_size"):
            engine.purge(clock.now(), batch_size=0)

    def test_backoff_is_capped_and_jittered(self) -> None:
        """Delays double from the base, stay within [d/2, d], and never pass the cap."""
        engine, _ = wall_engine(backoff_base=30, backoff_cap=600)
        for attempt in range(1, 12):
            d = min(600, 30 * 2 ** (attempt - 1))
            for _ in range(20):
                assert d / 2 <= engine.backoff(attempt) <= d

    def test_every_notifier_gets_its_own_row(self) -> None:
        """Two notifiers each get the notification, with the same idempotency key."""
        a, b = Recorder(), Recorder()
        b.name = "other"
        engine, clock = wall_engine(notifiers=[a, b])
        engine.start("L1", owner="x")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().sent == 2
        assert a.sent[0].idempotency_key == b.sent[0].idempotency_key

    def test_a_slow_batch_stops_sending_before_its_lease_runs_out(self) -> None:
        """No send starts once half the outbox lease has gone; the rest is claimed afresh."""

        class Slow(Recorder):
            def send(self, notification: Notification) -> None:
                time.sleep(0.05)
                super().send(notification)

        rec = Slow()
        engine, clock = wall_engine(notifiers=[rec], outbox_lease=0.4)
        claims: list[tuple[float, list[str]]] = []
        claim = engine.store.claim_outbox

        def recording(*args: Any) -> list[OutboxItem]:
            started = time.monotonic()
            items = claim(*args)
            claims.append((started, [i.notification.idempotency_key for i in items]))
            return items

        engine.store.claim_outbox = recording  # type: ignore[method-assign]
        sent_at: dict[str, float] = {}
        send = rec.send

        def timed(notification: Notification) -> None:
            sent_at[notification.idempotency_key] = time.monotonic()
            send(notification)

        rec.send = timed  # type: ignore[method-assign]
        for i in range(12):
            engine.start(f"L{i}", owner="a")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().sent == 12  # one call: unreached rows are handed back
        keys = [n.idempotency_key for n in rec.sent]
        assert len(keys) == len(set(keys)) == 12
        assert len(claims) >= 3  # several claims, each sending what half the lease allows
        for key, at in sent_at.items():  # each send began within half the lease of its claim
            claimed_at = max(s for s, claimed in claims if key in claimed and s <= at)
            assert at - claimed_at < 0.2
        assert all(item.lease_token is None for item in engine.store.outbox())

    def test_later_claims_of_a_long_delivery_get_whole_leases(self) -> None:
        """A delivery takes its time once and claims batch after batch against it; each
        later claim's lease is lengthened by the time since, so it still lasts
        ``outbox_lease`` from the claim (and other workers, whose time has moved on,
        do not take the rows over while they are being sent)."""

        class Slow(Recorder):
            def send(self, notification: Notification) -> None:
                time.sleep(0.03)
                super().send(notification)

        engine, clock = wall_engine(notifiers=[Slow()], outbox_lease=10, batch_size=2)
        claims: list[tuple[float, float]] = []
        claim = engine.store.claim_outbox

        def recording(now: datetime, limit: int, worker: str, lease: float) -> list[OutboxItem]:
            claims.append((time.monotonic(), lease))
            return claim(now, limit, worker, lease)

        engine.store.claim_outbox = recording  # type: ignore[method-assign]
        for i in range(10):
            engine.start(f"L{i}", owner="a")
        clock.advance(minutes=30)
        engine.check()
        assert engine.deliver().sent == 10
        assert len(claims) >= 5
        first = claims[0][0]
        for at, lease in claims:
            assert lease >= 10 + (at - first) - 0.005
        assert claims[-1][1] >= 10 + 0.1  # four batches of two sends of 30 ms went before

    def test_later_claims_of_a_long_check_get_whole_leases(self) -> None:
        engine, clock = wall_engine(claim_lease=10, batch_size=2)
        claims: list[tuple[float, float]] = []
        claim, apply = engine.store.claim_due, engine.store.apply_steps

        def recording(now: datetime, limit: int, worker: str, lease: float) -> list[Any]:
            claims.append((time.monotonic(), lease))
            return claim(now, limit, worker, lease)

        def slow_apply(applications: Any) -> list[bool]:
            time.sleep(0.03)
            return apply(applications)

        engine.store.claim_due = recording  # type: ignore[method-assign]
        engine.store.apply_steps = slow_apply  # type: ignore[method-assign]
        for i in range(8):
            engine.start(f"L{i}", owner="a")
        clock.advance(minutes=30)
        assert engine.check().count == 8
        first = claims[0][0]
        for at, lease in claims:
            assert lease >= 10 + (at - first) - 0.005
        assert claims[-1][1] >= 10 + 0.1

    def test_tick_without_a_time_takes_the_clock_for_each_half(self) -> None:
        """A long check must not age the delivery's time (and so its leases)."""

        class Ticking(slakit.ManualClock):
            def now(self) -> datetime:
                self.advance(seconds=1)
                return super().now()

        engine = slakit.Engine(policies=[slakit.Policy.default(basis="wall")], clock=Ticking(T0))
        checked, delivered = engine.tick()
        assert delivered.now > checked.now
        at = T0 + timedelta(hours=1)
        checked, delivered = engine.tick(at)
        assert checked.now == delivered.now == at

    def test_release_outbox_is_fenced(self) -> None:
        """Handing back rows clears only leases still held under the same token."""
        engine, clock = wall_engine(notifiers=[Recorder()])
        engine.start("L1", owner="a")
        clock.advance(minutes=30)
        engine.check()
        store = engine.store
        (item,) = store.claim_outbox(clock.now(), 10, "w1", 60)
        assert store.release_outbox([item]) == 1
        assert store.release_outbox([item]) == 0  # already handed back
        (again,) = store.claim_outbox(clock.now(), 10, "w2", 60)  # at once, new token
        assert again.lease_token != item.lease_token
        assert store.release_outbox([item]) == 0  # the old token no longer holds it
        assert not store.complete_outbox(
            item, state="sent", attempts=1, next_attempt_at=None, error=None
        )


class TestEvents:
    def test_events_on_unknown_id_raise(self) -> None:
        """Every event on an unknown id raises UnknownHandoffError."""
        engine, _ = wall_engine()
        for call in (engine.respond, engine.complete, engine.cancel, engine.pause, engine.resume):
            with pytest.raises(UnknownHandoffError, match="ghost"):
                call("ghost")

    def test_pause_twice_and_resume_unpaused(self) -> None:
        """Pausing a paused record and resuming a running one change nothing."""
        engine, _ = wall_engine()
        h = engine.start("L1", owner="a")
        p = engine.pause("L1")
        assert engine.pause("L1") == p
        r = engine.resume("L1")
        assert engine.resume("L1") == r
        assert r.deadline_at == h.deadline_at

    def test_cannot_cancel_a_stopped_handoff(self) -> None:
        """A handled handoff cannot be cancelled out of the hit rate."""
        engine, _ = wall_engine()
        engine.start("L1", owner="a")
        engine.respond("L1")
        with pytest.raises(InvalidTransitionError, match="already stopped"):
            engine.cancel("L1")

    def test_every_event_is_traced(self) -> None:
        """Each lifecycle event writes one trace line with the record's trace id."""
        engine, clock = wall_engine()
        h = engine.start("L1", owner="a", trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
        for call in (engine.pause, engine.resume, engine.respond, engine.complete):
            clock.advance(minutes=1)
            call("L1")
        rules = [t.rule for t in engine.store.traces("L1")]
        assert rules == ["start", "pause", "resume", "respond", "complete"]
        assert {t.trace_id for t in engine.store.traces("L1")} == {h.trace_id}

    def test_run_loop_stops(self) -> None:
        """run() returns after max_ticks, having checked and delivered."""
        engine, clock = wall_engine()
        engine.start("L1", owner="a")
        clock.advance(hours=1)
        with capture_notifications() as sent:
            assert engine.run(interval=0.01, max_ticks=2) == 2
        assert len(sent) == 2

    def test_run_loop_backs_off_from_due_work_it_cannot_take(self) -> None:
        """A due handoff this worker cannot process (its policy was removed; or leased
        by a worker that died) keeps the next wake-up in the past. The loop backs off
        1, 2, 4… s (at most claim_lease) instead of spinning: it ran 400 ticks in 5 s."""
        import threading
        import time as _time

        engine, clock = wall_engine(claim_lease=60)
        h = engine.start("L1", owner="a")
        engine.store.update(h._replace(policy="gone"), h.version)
        clock.advance(hours=1)
        ticks: list[float] = []
        runner = threading.Thread(
            target=lambda: engine.run(
                interval=60, on_tick=lambda c, d: ticks.append(_time.monotonic())
            )
        )
        runner.start()
        _time.sleep(2.5)
        engine.stop()
        runner.join(5)
        assert not runner.is_alive()
        assert 2 <= len(ticks) <= 3  # at 0 s, 1 s and 3 s: not hundreds
        assert ticks[1] - ticks[0] >= 0.9

    def test_run_loop_rides_out_a_store_outage(self, caplog: pytest.LogCaptureFixture) -> None:
        """A tick failing with StoreError is logged and tried again; work resumes after."""
        import threading

        from slakit.errors import SchemaVersionError, StoreUnavailableError

        class Flaky(MemoryStore):
            fail = 3

            def claim_due(self, *args: Any, **kw: Any) -> list[slakit.Handoff]:
                if self.fail:
                    self.fail -= 1
                    raise StoreUnavailableError("PostgreSQL at db:5432 is unavailable")
                return super().claim_due(*args, **kw)

        engine, clock = wall_engine(store=Flaky())
        engine.start("L1", owner="a")
        clock.advance(hours=1)
        ticks: list[int] = []

        def on_tick(c: slakit.CheckResult, d: slakit.DeliveryResult) -> None:
            ticks.append(c.count)
            engine.stop()

        with capture_notifications() as sent, caplog.at_level("INFO", "slakit.engine"):
            runner = threading.Thread(target=lambda: engine.run(interval=0.02, on_tick=on_tick))
            runner.start()
            runner.join(10)
        assert not runner.is_alive()
        assert ticks == [2]  # the first tick that went through applied both steps
        assert len(sent) == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 3
        assert warnings[0].startswith("tick failed (1 in a row), trying again in 0 s: PostgreSQL")
        assert "the store answers again after 3 failed tick(s)" in caplog.text
        # One tick asked for: the error is the caller's; a newer schema is never retried.
        engine.store.fail = 1  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailableError):
            engine.run(interval=0.01, max_ticks=1)

        class Newer(MemoryStore):
            def next_wakeup(self) -> datetime | None:
                raise SchemaVersionError("schema 9 is newer than 4")

        newer, _ = wall_engine(store=Newer())
        with pytest.raises(SchemaVersionError):
            newer.run(interval=0.01)

    def test_check_pauses_the_collector_and_restores_it(self) -> None:
        """The cyclic collector is off while a check works and as it was afterwards,
        also when the check fails; an application's choice to keep it off stays."""
        import gc

        from slakit.errors import StoreUnavailableError

        seen: list[bool] = []

        class Watching(MemoryStore):
            broken = False

            def apply_steps(self, applications: Any) -> list[bool]:
                seen.append(gc.isenabled())
                if self.broken:
                    raise StoreUnavailableError("gone")
                return super().apply_steps(applications)

        store = Watching()
        engine, clock = wall_engine(store=store)
        engine.start("L1", owner="a")
        engine.start("L2", owner="a")
        clock.advance(minutes=40)
        assert gc.isenabled()
        assert engine.check().count == 2
        assert seen == [False]
        assert gc.isenabled()
        store.broken = True
        clock.advance(minutes=30)
        with pytest.raises(StoreUnavailableError):
            engine.check()
        assert gc.isenabled()
        gc.disable()
        try:
            store.broken = False
            engine.check()
            assert not gc.isenabled()
        finally:
            gc.enable()

    def test_store_and_model_roundtrip(self) -> None:
        """Handoff.to_dict / from_dict round-trip."""
        engine, _ = wall_engine()
        h = engine.start("L1", owner="a", email="e")
        assert slakit.Handoff.from_dict(h.to_dict()) == h
        assert attrs.evolve(h, version=2) != h

    def test_engine_defaults_to_memory_store(self) -> None:
        """An engine built with no store uses the in-memory store."""
        engine = slakit.Engine()
        assert isinstance(engine.store, MemoryStore)


class FlakySink(slakit.TraceSink):
    """A trace sink that fails its first ``fail`` calls, keeping what it is given after."""

    def __init__(self, fail: int) -> None:
        self.name = "flaky"
        self.fail = fail
        self.calls = 0
        self.lines: list[slakit.TraceRecord] = []

    def emit(self, records: Any) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise OSError("collector unreachable")
        self.lines.extend(records)


class TestSinkBacklog:
    def test_a_failing_sink_gets_its_lines_later_in_order(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Lines a sink refused are held and sent again before the next ones, in order;
        a sink that works is not held back by one that fails."""
        flaky, steady = FlakySink(fail=2), FlakySink(fail=0)
        engine, _ = wall_engine(trace_sinks=[flaky, steady])
        for hid in ("L1", "L2", "L3"):
            engine.start(hid, owner="a")
        assert [t.handoff_id for t in flaky.lines] == ["L1", "L2", "L3"]
        assert [t.handoff_id for t in steady.lines] == ["L1", "L2", "L3"]
        assert flaky.calls == 3  # L1 refused, L1+L2 refused, L1+L2+L3 taken
        failed = [r for r in caplog.records if "trace sink 'flaky' failed" in r.getMessage()]
        assert len(failed) == 1
        assert failed[0].exc_info is None  # one line, no traceback
        assert "holding 1 line(s) to send again" in failed[0].getMessage()
        assert "trace sink 'flaky' works again: 2 held line(s) sent late" in caplog.text

    def test_the_run_loop_resends_on_an_idle_tick(self) -> None:
        """With nothing new to trace, a tick still sends what a sink missed."""
        flaky = FlakySink(fail=1)
        engine, _ = wall_engine(trace_sinks=[flaky])
        engine.start("L1", owner="a")
        assert flaky.lines == []
        assert engine.run(interval=0.01, max_ticks=1) == 1
        assert [t.handoff_id for t in flaky.lines] == ["L1"]

    def test_close_gives_held_lines_one_last_try(self) -> None:
        flaky = FlakySink(fail=1)
        engine, _ = wall_engine(trace_sinks=[flaky])
        engine.start("L1", owner="a")
        engine.close()
        assert [t.handoff_id for t in flaky.lines] == ["L1"]

    def test_lines_still_refused_at_close_are_named_with_their_resend_window(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sink that still fails at close: an ERROR line with the window that resends
        the held lines from the store, so none is lost without a word."""
        flaky = FlakySink(fail=10)
        engine, clock = wall_engine(trace_sinks=[flaky])
        for i, hid in enumerate(("L1", "L2")):
            clock.set(T0 + timedelta(minutes=i))
            engine.start(hid, owner="a")
        engine.close()
        assert flaky.lines == []
        [record] = [r for r in caplog.records if "still failed at close" in r.getMessage()]
        assert record.levelname == "ERROR"
        assert (
            "trace sink 'flaky' still failed at close; of its 2 held line(s) it took none or "
            "only a first part; the store keeps them all: slakit traces --emit --since "
            "2026-03-02T14:00:00+00:00 --until 2026-03-02T14:01:00.000001+00:00 sends them "
            "again"
        ) in record.getMessage()
        assert engine._sink_backlog == {}

    def test_the_backlog_is_capped_and_says_how_to_resend(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past SINK_BACKLOG the oldest held lines go, with the command that resends them
        from the store."""
        monkeypatch.setattr(slakit.engine, "SINK_BACKLOG", 2)
        flaky = FlakySink(fail=10)
        engine, clock = wall_engine(trace_sinks=[flaky])
        for i, hid in enumerate(("L1", "L2", "L3", "L4")):
            clock.set(T0 + timedelta(minutes=i))
            engine.start(hid, owner="a")
        assert [t.handoff_id for t in engine._sink_backlog[id(flaky)]] == ["L3", "L4"]
        # L1 went when L3 came, L2 when L4 came: each with the window that resends it.
        for minute in ("00", "01"):
            assert (
                "trace sink 'flaky': dropped its 1 oldest held line(s); the store keeps them: "
                f"slakit traces --emit --since 2026-03-02T14:{minute}:00+00:00 "
                f"--until 2026-03-02T14:{minute}:00.000001+00:00 sends them again"
            ) in caplog.text
        assert len(engine.store.traces()) == 4


class TestPolicyChoice:
    def test_no_policy_with_several_configured_says_so(self) -> None:
        """Omitting the policy when several exist names the choices."""
        engine, _ = wall_engine(
            policies=[slakit.Policy.default("a", basis="wall"), slakit.Policy.default("b")]
        )
        with pytest.raises(UnknownPolicyError, match=r"no policy given.*a, b"):
            engine.start("L1", owner="x")

    def test_a_calendar_object_can_drive_a_policy_built_in_code(self) -> None:
        """``calendar`` may be a BusinessCalendar; anything else that is not one is named."""
        cal = slakit.BusinessCalendar.weekdays("America/New_York", "09:00-17:00")
        policy = slakit.Policy.from_config({"calendar": cal, "sla_minutes": 30}, name="lead")
        engine, _ = wall_engine(policies={"lead": policy})
        # Monday 2026-03-02 16:45 New York: 15 minutes today, 15 on Tuesday morning.
        h = engine.start("L1", owner="x", started_at=datetime(2026, 3, 2, 21, 45, tzinfo=UTC))
        assert h.deadline_at == datetime(2026, 3, 3, 14, 15, tzinfo=UTC)
        assert h.within_business_hours is True
        with pytest.raises(ConfigError, match=r"policies\.lead\.calendar .* got 42"):
            slakit.Policy.from_config({"calendar": 42}, name="lead")


class TestPolicyBuiltInCode:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"stop": "first-response"}, "stop"),
            ({"basis": "walls"}, "basis"),
            ({"sla_minutes": 0}, "sla_minutes"),
            ({"sla_minutes": float("nan")}, "sla_minutes"),
            ({"coalesce": "yes"}, "coalesce"),
            ({"steps": ()}, "steps"),
            ({"steps": ("1x",)}, "steps"),
        ],
    )
    def test_bad_fields_are_refused_as_from_config_refuses_them(
        self, kwargs: dict[str, Any], field: str
    ) -> None:
        """A typo in a keyword (``stop="first-response"``) would fire every step after
        the response and count each lead missed: refused, naming the field."""
        with pytest.raises(slakit.errors.SlakitError) as err:
            slakit.Policy.default(**kwargs)
        assert err.value.field == field
        assert repr(kwargs[field])[:20] in str(err.value)
        with pytest.raises(slakit.errors.SlakitError):
            slakit.Policy(name="p", **kwargs)

    def test_steps_from_any_iterable_are_kept(self) -> None:
        """A generator of steps is made a tuple before it is checked, not used up by it."""
        steps = slakit.Policy.default().steps
        p = slakit.Policy(name="p", steps=(s for s in steps))
        assert p.steps == steps

    def test_a_blank_name_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="name must be a non-empty string") as err:
            slakit.Policy(name=" ")
        assert err.value.field == "name"

    def test_good_fields_are_kept(self) -> None:
        """Valid values pass unchanged, and a list of steps becomes a tuple."""
        steps = list(slakit.Policy.default().steps)
        p = slakit.Policy(
            name="p", basis="wall", stop="completion", sla_minutes=5, coalesce=True, steps=steps
        )
        assert (p.basis, p.stop, p.sla_minutes, p.coalesce) == ("wall", "completion", 5, True)
        assert p.steps == tuple(steps)


class TestWallTimersInAnyZone:
    @settings(max_examples=200, deadline=None)
    @given(
        zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]),
        change=st.sampled_from(
            # Around DST changes: New York and London, spring and fall; Lord Howe's half hour.
            [
                datetime(2026, 3, 8, 7),
                datetime(2026, 11, 1, 6),
                datetime(2026, 3, 29, 1),
                datetime(2026, 10, 25, 1),
                datetime(2026, 4, 4, 15),
                datetime(2026, 10, 3, 16),
            ]
        ),
        minutes=st.integers(-3 * 24 * 60, 60),
        sla=st.integers(1, 3 * 24 * 60),
        paused=st.integers(0, 24 * 3600),
    )
    def test_a_zoned_start_gives_the_instants_of_its_utc_form(
        self, zone: str, change: datetime, minutes: int, sla: int, paused: int
    ) -> None:
        """Wall time is elapsed time: a start in a zone with DST changes nothing."""
        from zoneinfo import ZoneInfo

        policy = slakit.Policy.default(basis="wall")
        utc = change.replace(tzinfo=UTC) + timedelta(minutes=minutes)
        zoned = utc.astimezone(ZoneInfo(zone))
        assert policy.timers(zoned, sla, paused_seconds=paused) == policy.timers(
            utc, sla, paused_seconds=paused
        )
        later = (utc + timedelta(minutes=sla)).astimezone(ZoneInfo(zone))
        assert policy.calendar.elapsed(zoned, later) == timedelta(minutes=sla)
        assert policy.calendar.add(zoned, timedelta(minutes=sla)) == later
        for p in (0, paused):
            one = slakit.Handoff(
                id="a",
                policy=policy.name,
                started_at=zoned,
                sla_minutes=sla,
                trace_id="t",
                paused_seconds=p,
            )
            two = attrs.evolve(one, started_at=utc)
            assert [s.due_at for s in policy.schedule(one)] == [
                s.due_at for s in policy.schedule(two)
            ]


class TestEngineSettings:
    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("batch_size", 0),
            ("batch_size", -1),
            ("batch_size", 2.5),
            ("max_attempts", "8"),
            ("max_attempts", 2.5),
            ("claim_lease", -5),
            ("outbox_lease", 0),
            ("backoff_base", "x"),
            ("backoff_cap", math.inf),
            ("worker_id", "a\nb"),
        ],
    )
    def test_a_bad_engine_setting_is_a_config_error_naming_it(self, key: str, value: Any) -> None:
        """``batch_size = 0`` used to be taken, and then no due step ever fired."""
        with pytest.raises(slakit.errors.ConfigError) as err:
            slakit.Engine.from_config({"engine": {key: value}, "policies": {"p": {}}})
        assert err.value.field == f"engine.{key}"
        assert str(err.value).startswith(f"[engine] {key} must be")
        with pytest.raises(ValidationError) as direct:
            slakit.Engine(policies=[slakit.Policy.default()], **{key: value})
        assert direct.value.field == key


class TestConfigText:
    """slakit.toml as people write it."""

    def test_an_inline_table_may_span_lines(self, tmp_path: Path) -> None:
        """TOML 1.1: a long `hours` inline table over two lines loads (the design's example)."""
        config = tmp_path / "slakit.toml"
        config.write_text(
            """
[store]
adapter = "memory"

[calendars.sales-east]
timezone = "America/New_York"
hours = { mon = ["09:00-17:00"], tue = ["09:00-17:00"], wed = ["09:00-17:00"],
          thu = ["09:00-17:00"], fri = ["09:00-17:00"] }
holidays = { country = "US" }

[policies.speed-to-lead]
calendar = "sales-east"
sla_minutes = 30
steps = [
  { at = "1x", do = ["notify:owner"] },
  { at = "2x", do = ["mark_breached", "reassign:backup", "notify:owner", "notify:backup"] },
]
""",
            encoding="utf-8",
        )
        engine = slakit.Engine.from_config(config)
        cal = engine.policy("speed-to-lead").calendar
        friday = datetime(2026, 11, 27, 16, 45, tzinfo=ZoneInfo("America/New_York"))
        assert cal.add(friday, timedelta(minutes=30)) == datetime(
            2026, 11, 30, 9, 15, tzinfo=ZoneInfo("America/New_York")
        )

    @pytest.mark.parametrize(
        ("iso", "short"),
        [
            ("PT1H30M", "1h30m"),
            ("pt45m", "45m"),
            ("P1D", "1d"),
            ("1x+PT15M", "1x+15m"),
            ("2x-PT5M", "2x-5m"),
            ("-PT10M", "-10m"),
            ("75%+PT1M", "75%+1m"),
        ],
    )
    def test_step_offsets_take_iso_durations(self, iso: str, short: str) -> None:
        """`at` reads ISO-8601 durations as the docs say durations are read."""
        assert Step.parse_at(iso) == Step.parse_at(short)

    def test_long_labels_and_durations_are_refused_at_once(self) -> None:
        """Over 64 characters is a mistake; refused before the patterns get slow on it."""
        started = time.perf_counter()
        with pytest.raises(InvalidStepError):
            Step.parse_at("1" + " " * 40_000 + "!")
        with pytest.raises(ValidationError, match="40000 characters"):
            parse_duration("step", "1" * 40_000)
        assert time.perf_counter() - started < 5  # was 5 s and 42 s

    @pytest.mark.parametrize("bad", ["P", "PT", "pizza", "1xPT5M", "PT-5M"])
    def test_malformed_iso_labels_name_the_label(self, bad: str) -> None:
        with pytest.raises(InvalidStepError, match=repr(bad)):
            Step.parse_at(bad)


class TestEventOrdering:
    def test_a_cancel_dated_before_the_response_is_refused(self) -> None:
        """No history has a response after its cancel (import refuses one), so a
        backdated cancel of a responded handoff is refused and nothing changes."""
        policy = slakit.Policy.default(basis="wall", stop="completion")
        engine, clock = wall_engine(policies=[policy])
        engine.start("a", owner="x", started_at=T0)
        engine.respond("a", at=T0 + timedelta(minutes=10))
        before = engine.get("a")
        with pytest.raises(InvalidTimestampError, match=r"cancelled_at .* is before first_resp"):
            engine.cancel("a", at=T0 + timedelta(minutes=5))
        assert engine.get("a") == before
        clock.advance(timedelta(minutes=20))
        assert engine.cancel("a", at=T0 + timedelta(minutes=10)).cancelled_at is not None

    def test_the_default_event_time_is_read_after_the_record(self) -> None:
        """Without ``at``, an event reads the clock after the record, so a start that
        committed just before (in another thread) is never later than the event."""
        calls: list[str] = []

        class Watched(MemoryStore):
            def get(self, handoff_id: str) -> slakit.Handoff:
                calls.append("get")
                return super().get(handoff_id)

        class Clock(slakit.ManualClock):
            def now(self) -> datetime:
                calls.append("now")
                return super().now()

        engine = slakit.Engine(
            Watched(), policies=[slakit.Policy.default(basis="wall")], clock=Clock(T0)
        )
        engine.start("a", owner="x")
        events = [
            lambda: engine.pause("a"),
            lambda: engine.resume("a"),
            lambda: engine.tag_breach("a", "slow"),
            lambda: engine.respond("a"),
            lambda: engine.complete("a"),
        ]
        for event in events:
            calls.clear()
            event()
            assert calls.index("get") < calls.index("now"), calls
        engine.start("b", owner="x")
        calls.clear()
        engine.cancel("b")
        assert calls.index("get") < calls.index("now"), calls


class TestBadInputIsNamed:
    def test_lone_surrogates_are_refused_by_every_store(self, tmp_path: Path) -> None:
        """Text UTF-8 cannot encode is a ValidationError naming the field, on the memory
        and SQLite stores alike, and nothing is written."""
        from slakit.adapters.sqlite import SQLiteStore

        for store in (MemoryStore(), SQLiteStore(tmp_path / "s.db")):
            engine, _ = wall_engine(store=store)
            bad = [
                ("id", lambda e=engine: e.start("x\ud800", owner="a")),
                ("owner", lambda e=engine: e.start("x", owner="\udc00")),
                ("attributes.s", lambda e=engine: e.start("x", owner="a", s="\ud800")),
                ("attributes.k", lambda e=engine: e.start("x", owner="a", k={"\ud800": 1})),
                (
                    "attributes.s",
                    lambda e=engine: e.start_many(
                        [{"id": "ok", "owner": "a"}, {"id": "y", "owner": "a", "s": "\ud800"}]
                    ),
                ),
            ]
            for field, call in bad:
                with pytest.raises(ValidationError) as err:
                    call()
                assert err.value.field == field
            assert engine.store.count() == 0
            engine.start("r", owner="a")
            with pytest.raises(ValidationError) as err:
                engine.respond("r", by="\ud800")
            assert err.value.field == "responded_by"
            assert engine.get("r").first_response_at is None

    def test_attributes_nested_too_deeply_are_named(self, tmp_path: Path) -> None:
        """A value nested past what JSON encoding can walk is a ValidationError, not a
        RecursionError."""
        from slakit.adapters.sqlite import SQLiteStore

        deep: list[Any] = []
        inner = deep
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]
        for store in (MemoryStore(), SQLiteStore(tmp_path / "d.db")):
            engine, _ = wall_engine(store=store)
            with pytest.raises(ValidationError, match="nested too deeply") as err:
                engine.start("x", owner="a", d=deep)
            assert err.value.field == "attributes.d"
            with pytest.raises(ValidationError, match="nested too deeply"):
                engine.start_many([{"id": "y", "owner": "a", "d": deep}])
            assert engine.store.count() == 0

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"policies": [1]}, "policies"),
            ({"policies": {"p": "wall"}}, "policies"),
            ({"clock": "x"}, "clock"),
            ({"notifiers": [object()]}, "notifiers"),
            ({"trace_sinks": ["log"]}, "trace_sinks"),
        ],
    )
    def test_engine_arguments_of_the_wrong_kind(self, kwargs: dict[str, Any], field: str) -> None:
        """The wrong kind of object is a ConfigError at construction, not an
        AttributeError at the first start."""
        with pytest.raises(ConfigError) as err:
            slakit.Engine(**kwargs)
        assert err.value.field == field

    def test_a_start_many_record_that_is_not_a_mapping(self) -> None:
        engine, _ = wall_engine()
        with pytest.raises(ValidationError, match="must be a mapping") as err:
            engine.start_many([{"id": "ok", "owner": "a"}, 1])  # type: ignore[list-item]
        assert err.value.field == "record"
        assert engine.store.count() == 0
