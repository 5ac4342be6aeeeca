"""Hit rate: classification, grouping, the store and Python paths, golden data and properties."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slakit
from slakit.adapters.memory import MemoryStore
from slakit.errors import NaiveDatetimeError, ValidationError
from slakit.handoff import Handoff
from slakit.metrics import (
    BasisCounts,
    HitRateReport,
    InvalidGroupKeyError,
    Outcome,
    classify,
    hit_rate,
    normalize_by,
)

NY = ZoneInfo("America/New_York")
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def ny_calendar() -> slakit.BusinessCalendar:
    hours = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
    return slakit.BusinessCalendar.from_config(
        {"timezone": "America/New_York", "hours": hours}, name="ny"
    )


def ny_engine(clock_at: datetime = T0) -> tuple[slakit.Engine, slakit.ManualClock]:
    cal = ny_calendar()
    clock = slakit.ManualClock(clock_at)
    lead = slakit.Policy(name="lead", calendar=cal, calendar_name="ny", sla_minutes=30)
    ticket = slakit.Policy(
        name="ticket", calendar=cal, calendar_name="ny", sla_minutes=30, stop="completion"
    )
    return slakit.Engine(policies=[lead, ticket], clock=clock), clock


def sqlite_store(path: Path) -> slakit.RecordStore:
    from slakit.adapters.sqlite import SQLiteStore

    store = SQLiteStore(path)
    store.setup()
    return store


def handoff(**kw: Any) -> Handoff:
    base: dict[str, Any] = {
        "id": "h",
        "policy": "p",
        "started_at": T0,
        "wall_deadline_at": T0 + timedelta(minutes=30),
        "business_deadline_at": T0 + timedelta(minutes=60),
    }
    base["deadline_at"] = base["business_deadline_at"]
    base.update(kw)
    return Handoff(**base)


class TestClassify:
    def test_stop_at_the_deadline_is_met(self) -> None:
        """A stop event exactly at the deadline meets the SLA."""
        h = handoff(stopped_at=T0 + timedelta(minutes=30))
        assert classify(h, "wall", T0) == Outcome.MET

    def test_stop_after_the_deadline_is_missed(self) -> None:
        """A stop event one microsecond after the deadline misses it."""
        h = handoff(stopped_at=T0 + timedelta(minutes=30, microseconds=1))
        assert classify(h, "wall", T0) == Outcome.MISSED
        assert classify(h, "business", T0) == Outcome.MET

    def test_open_before_the_deadline_is_pending(self) -> None:
        """An open handoff is pending until its deadline passes."""
        h = handoff()
        assert classify(h, "wall", T0 + timedelta(minutes=30)) == Outcome.PENDING
        assert classify(h, "wall", T0 + timedelta(minutes=31)) == Outcome.MISSED

    def test_paused_is_pending(self) -> None:
        """A paused handoff is pending even past its deadline (its deadline moves on resume)."""
        h = handoff(paused_at=T0 + timedelta(minutes=5))
        assert classify(h, "wall", T0 + timedelta(hours=5)) == Outcome.PENDING

    def test_cancelled_is_excluded(self) -> None:
        """A cancelled handoff is excluded whatever its timestamps."""
        h = handoff(cancelled_at=T0 + timedelta(hours=3))
        assert classify(h, "wall", T0 + timedelta(hours=5)) == Outcome.EXCLUDED

    def test_without_a_deadline_is_pending(self) -> None:
        """A record with no deadline on the basis cannot be judged, so it is pending."""
        h = Handoff(id="x", policy="p", started_at=T0, stopped_at=T0 + timedelta(hours=1))
        assert classify(h, "wall", T0 + timedelta(days=1)) == Outcome.PENDING

    def test_breached_flag_is_ignored(self) -> None:
        """The ``breached`` flag does not make a handoff missed: timestamps decide."""
        h = handoff(breached=True, stopped_at=T0 + timedelta(minutes=1))
        assert classify(h, "wall", T0) == Outcome.MET

    def test_rejects_a_bad_basis_and_naive_now(self) -> None:
        """An unknown basis or a naive ``now`` raises, naming the field."""
        with pytest.raises(ValidationError, match="basis"):
            classify(handoff(), "calendar", T0)
        with pytest.raises(NaiveDatetimeError, match="now"):
            classify(handoff(), "wall", datetime(2026, 1, 1))


class TestBasisCounts:
    def test_rate_is_none_when_nothing_evaluated(self) -> None:
        """The rate is ``None``, not zero, when nothing was evaluated."""
        assert BasisCounts(0, 0, 5).rate is None
        assert BasisCounts(3, 1, 0).rate == 0.75
        assert BasisCounts(3, 1, 0).evaluated == 4


class TestNormalizeBy:
    def test_accepts_known_keys_and_attributes(self) -> None:
        """Known fields and ``attributes.NAME`` pass; a string is split on commas."""
        assert normalize_by("channel, segment") == ("channel", "segment")
        assert normalize_by(["attributes.region", "owner"]) == ("attributes.region", "owner")
        assert normalize_by("") == ()

    def test_rejects_unknown_keys(self) -> None:
        """An unknown key raises naming it."""
        with pytest.raises(InvalidGroupKeyError, match="'colour'"):
            normalize_by("colour")
        with pytest.raises(InvalidGroupKeyError):
            normalize_by("attributes.")


class TestHitRate:
    def test_window_is_by_started_at_half_open(self) -> None:
        """``since`` is inclusive, ``until`` exclusive, both on ``started_at``."""
        items = [handoff(id=f"h{i}", started_at=T0 + timedelta(hours=i)) for i in range(4)]
        rep = hit_rate(items, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3), now=T0)
        assert rep.total.handoffs == 2

    def test_groups_and_excluded_ids(self) -> None:
        """Groups are keyed by the tuple of ``by`` values; cancelled ids are listed."""
        engine, _ = ny_engine()
        engine.start("a", policy="lead", owner="x", channel="web", region="eu")
        engine.start("b", policy="lead", owner="x", channel="web", region="us")
        engine.start("c", policy="lead", owner="y", channel="phone", region="eu")
        engine.respond("a", at=T0 + timedelta(minutes=10))
        engine.cancel("c", at=T0 + timedelta(minutes=1))
        rep = hit_rate(
            engine.store, by=("channel", "attributes.region"), now=T0 + timedelta(hours=1)
        )
        assert set(rep.groups) == {("web", "eu"), ("web", "us"), ("phone", "eu")}
        assert rep.group("web", "eu").met == 1
        assert rep.group("web", "us").missed == 1
        assert rep.group("phone", "eu").excluded == 1
        assert rep.group("phone", "eu").rate is None
        assert rep.group("nowhere", "x").handoffs == 0
        assert rep.excluded_ids == ("c",)
        assert rep.groups[("web", "eu")].key == ("web", "eu")

    def test_accepts_engine_store_and_iterable(self) -> None:
        """An engine, its store and a list of its handoffs give the same counts."""
        engine, _ = ny_engine()
        engine.start("a", policy="lead", owner="x")
        now = T0 + timedelta(hours=2)
        reports = [
            hit_rate(engine, now=now),
            hit_rate(engine.store, now=now),
            hit_rate(list(engine.store.iter_handoffs()), now=now),
        ]
        assert {(r.wall, r.business) for r in reports} == {(reports[0].wall, reports[0].business)}

    def test_an_engine_source_is_judged_by_its_clock(self) -> None:
        """Without ``now``, an engine's report uses the engine's clock, not the system's."""
        engine, clock = ny_engine()
        engine.start("a", policy="lead", owner="x")  # Monday 09:00 New York, 30-minute SLA
        assert hit_rate(engine).total.pending == 1
        clock.advance(hours=1)
        assert hit_rate(engine).total.missed == 1
        assert hit_rate(engine, now=T0).total.pending == 1

    def test_both_bases_in_one_pass(self) -> None:
        """Both bases are available whichever basis the report reads."""
        h = handoff(stopped_at=T0 + timedelta(minutes=45))
        rep = hit_rate([h], basis="wall", now=T0)
        assert (rep.rate, rep.wall.rate, rep.business.rate) == (0.0, 0.0, 1.0)
        assert rep.with_basis("business").rate == 1.0
        assert rep.total.counts("business").met == 1

    def test_to_dict_is_json(self) -> None:
        """``to_dict`` is plain JSON with counts, rates and the excluded ids."""
        items = [
            handoff(id="a", channel="web", stopped_at=T0),
            handoff(id="b", channel=None, cancelled_at=T0),
        ]
        data = json.loads(json.dumps(hit_rate(items, by="channel", now=T0).to_dict()))
        assert data["total"]["met"] == 1
        assert data["total"]["excluded"] == 1
        assert data["total"]["handoffs"] == 2  # as the table shows it
        assert [g["handoffs"] for g in data["groups"]] == [1, 1]
        assert data["excluded_ids"] == ["b"]
        assert [g["key"] for g in data["groups"]] == [{"channel": "web"}, {"channel": None}]

    def test_rejects_bad_input(self) -> None:
        """A naive bound, an unknown basis or key raises before reading anything."""
        with pytest.raises(NaiveDatetimeError, match="since"):
            hit_rate([], since=datetime(2026, 1, 1))
        with pytest.raises(ValidationError, match="basis"):
            hit_rate([], basis="absolute")
        with pytest.raises(InvalidGroupKeyError):
            hit_rate([], by=("started_at",))

    def test_reports_progress(self) -> None:
        """The progress callback hears the final count."""
        seen: list[int] = []
        hit_rate([handoff(id=str(i)) for i in range(3)], now=T0, progress=seen.append)
        assert seen[-1] == 3

    def test_unhashable_attribute_values_group_as_json(self) -> None:
        """A list-valued attribute groups by its JSON text instead of failing."""
        rep = hit_rate([handoff(attributes={"tags": ["a", "b"]})], by="attributes.tags", now=T0)
        assert list(rep.groups) == [('["a", "b"]',)]


def golden_dataset(engine: slakit.Engine) -> None:
    """Hand-built history with known answers (see docs/metrics.md, "Worked example")."""
    s, r, c, x = engine.start, engine.respond, engine.complete, engine.cancel
    # Stop at first response vs at completion: the same response time, different outcomes.
    s("L1", policy="lead", owner="ann", started_at=ny(2026, 3, 2, 9))
    r("L1", at=ny(2026, 3, 2, 9, 20))
    s("L2", policy="lead", owner="ann", started_at=ny(2026, 3, 2, 9))
    r("L2", at=ny(2026, 3, 2, 9, 40))
    s("T1", policy="ticket", owner="bob", started_at=ny(2026, 3, 2, 9))
    r("T1", at=ny(2026, 3, 2, 9, 10))
    c("T1", at=ny(2026, 3, 2, 9, 50))
    s("T2", policy="ticket", owner="bob", started_at=ny(2026, 3, 2, 10))
    r("T2", at=ny(2026, 3, 2, 10, 5))
    c("T2", at=ny(2026, 3, 2, 10, 25))
    # Cancelled: before the deadline, and after it had already passed.
    s("L3", policy="lead", owner="ann", started_at=ny(2026, 3, 2, 11))
    x("L3", at=ny(2026, 3, 2, 11, 10))
    s("L4", policy="lead", owner="ann", started_at=ny(2026, 3, 2, 12))
    x("L4", at=ny(2026, 3, 2, 13))
    # Open past the deadline: missed on both bases.
    s("L8", policy="lead", owner="cat", started_at=ny(2026, 3, 2, 13))
    # Out-of-hours arrival, answered the next morning inside the business SLA.
    s("L5", policy="lead", owner="cat", started_at=ny(2026, 3, 2, 20))
    r("L5", at=ny(2026, 3, 3, 9, 20))
    # DST week: Friday 16:50 EST, answered Monday 09:15 EDT after the clocks changed.
    s("D1", policy="lead", owner="dan", started_at=ny(2026, 3, 6, 16, 50))
    r("D1", at=ny(2026, 3, 9, 9, 15))
    # Judged at Tuesday 10 March 09:25 EDT: one out-of-hours arrival and one open.
    s("L6", policy="lead", owner="dan", started_at=ny(2026, 3, 10, 8))
    s("L7", policy="lead", owner="dan", started_at=ny(2026, 3, 10, 9, 10))


GOLDEN_NOW = ny(2026, 3, 10, 9, 25)


class TestGolden:
    @pytest.fixture(params=["memory", "sqlite"])
    def engine(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[slakit.Engine]:
        engine, _ = ny_engine()
        if request.param == "sqlite":
            engine = slakit.Engine(
                store=sqlite_store(tmp_path / "golden.db"),
                policies=engine.policies,
                clock=engine.clock,
            )
        golden_dataset(engine)
        yield engine
        engine.close()

    def test_totals(self, engine: slakit.Engine) -> None:
        """Totals on both bases match the hand-computed answers."""
        rep = hit_rate(engine.store, now=GOLDEN_NOW)
        assert rep.wall == BasisCounts(met=2, missed=6, pending=1)
        assert rep.business == BasisCounts(met=4, missed=3, pending=2)
        assert rep.total.excluded == 2
        assert rep.wall.rate == 0.25
        assert rep.business.rate == pytest.approx(4 / 7)
        assert sorted(rep.excluded_ids) == ["L3", "L4"]

    def test_stop_event_per_policy(self, engine: slakit.Engine) -> None:
        """A ticket answered in time but completed late misses; a lead stops at first response."""
        rep = hit_rate(engine.store, by="policy", now=GOLDEN_NOW)
        assert rep.group("ticket").business == BasisCounts(met=1, missed=1, pending=0)
        assert rep.group("lead").business == BasisCounts(met=3, missed=2, pending=2)
        assert rep.group("lead").wall == BasisCounts(met=1, missed=5, pending=1)
        assert classify(engine.get("T1"), "business", GOLDEN_NOW) == Outcome.MISSED

    def test_out_of_hours_arrivals(self, engine: slakit.Engine) -> None:
        """Arrivals outside business hours miss on the wall clock but not on business time."""
        rep = hit_rate(engine.store, by="within_business_hours", now=GOLDEN_NOW)
        closed = rep.group(False)
        assert closed.wall == BasisCounts(met=0, missed=2, pending=0)
        assert closed.business == BasisCounts(met=1, missed=0, pending=1)
        assert rep.group(True).handoffs == 9

    def test_dst_week(self, engine: slakit.Engine) -> None:
        """Across the spring-forward weekend the business deadline is Monday 09:20 EDT."""
        d1 = engine.get("D1")
        assert d1.business_deadline_at == ny(2026, 3, 9, 9, 20)
        assert d1.wall_deadline_at == datetime(2026, 3, 6, 22, 20, tzinfo=UTC)
        week = hit_rate(
            engine.store,
            since=ny(2026, 3, 2),
            until=ny(2026, 3, 9),
            now=GOLDEN_NOW,
        )
        assert week.total.handoffs == 9
        assert (week.wall.rate, week.business.rate) == (2 / 7, 4 / 7)
        # The week is 167 hours long and still holds D1.
        assert ny(2026, 3, 9) - ny(2026, 3, 2) == timedelta(days=7)
        assert (
            ny(2026, 3, 9).astimezone(UTC) - ny(2026, 3, 2).astimezone(UTC)
        ).total_seconds() == 167 * 3600


SEGMENTS = ["smb", "mid", "ent", None]
CHANNELS = ["web", "phone", None]


def random_history(engine: slakit.Engine, rng: random.Random, n: int) -> datetime:
    """Random starts, responses, completions, cancels and pauses; returns a judging instant."""
    for i in range(n):
        start = T0 + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
        hid = f"h{i}"
        engine.start(
            hid,
            policy=rng.choice(["lead", "ticket"]),
            owner=rng.choice(["ann", "bob", None]),
            sla_minutes=rng.choice([15, 30, 240]),
            started_at=start,
            channel=rng.choice(CHANNELS),
            segment=rng.choice(SEGMENTS),
            tier=rng.choice([1, 2]),
            # Every JSON scalar kind, and sometimes no key at all.
            **({"region": ("eu", "us", None, True, False, 2.5)[i % 6]} if i % 7 else {}),
        )
        fate = rng.random()
        at = start + timedelta(minutes=rng.randrange(1, 3 * 24 * 60))
        if fate < 0.35:
            engine.respond(hid, at=at)
        elif fate < 0.6:
            engine.respond(hid, at=at)
            engine.complete(hid, at=at + timedelta(minutes=rng.randrange(0, 600)))
        elif fate < 0.7:
            engine.cancel(hid, at=at)
        elif fate < 0.8:
            engine.pause(hid, at=at)
            if rng.random() < 0.5:
                engine.resume(hid, at=at + timedelta(minutes=rng.randrange(1, 600)))
    return T0 + timedelta(days=5)


@pytest.fixture(scope="module")
def random_sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slakit.Engine]:
    base, _ = ny_engine()
    store = sqlite_store(tmp_path_factory.mktemp("agree") / "agree.db")
    engine = slakit.Engine(store=store, policies=base.policies, clock=base.clock)
    random_history(engine, random.Random(7), 600)
    yield engine
    engine.close()


class TestStoreAndPythonAgree:
    @pytest.fixture
    def engine(self, random_sqlite_engine: slakit.Engine) -> slakit.Engine:
        return random_sqlite_engine

    @pytest.mark.parametrize(
        "by",
        [
            (),
            ("channel",),
            ("segment", "channel"),
            ("policy", "owner"),
            ("within_business_hours",),
            ("attributes.tier",),
            ("attributes.region", "channel"),
            ("attributes.absent",),
        ],
    )
    @pytest.mark.parametrize("window", [(None, None), (2, 5)])
    def test_same_counts(
        self, engine: slakit.Engine, by: tuple[str, ...], window: tuple[int | None, int | None]
    ) -> None:
        """The SQL aggregate and the Python pass give identical groups, counts and exclusions."""
        since = T0 + timedelta(days=window[0]) if window[0] is not None else None
        until = T0 + timedelta(days=window[1]) if window[1] is not None else None
        now = T0 + timedelta(days=4)
        store_rep = hit_rate(engine.store, since=since, until=until, by=by, now=now)
        py_rep = hit_rate(
            list(engine.store.iter_handoffs()), since=since, until=until, by=by, now=now
        )
        assert store_rep.computed_by == "store"
        assert py_rep.computed_by == "python"
        assert store_rep.total == py_rep.total
        assert dict(store_rep.groups) == dict(py_rep.groups)
        assert list(store_rep.groups) == list(py_rep.groups)
        assert sorted(store_rep.excluded_ids) == sorted(py_rep.excluded_ids)

    def test_attribute_groups_keep_their_json_types(self, engine: slakit.Engine) -> None:
        """Attribute groups come back as ints, floats, text, booleans and None, as in Python."""
        rep = hit_rate(engine.store, by="attributes.region", now=T0 + timedelta(days=4))
        assert rep.computed_by == "store"
        assert set(rep.groups) == {("eu",), ("us",), (None,), (True,), (False,), (2.5,)}
        assert {type(k[0]) for k in rep.groups} == {str, type(None), bool, float}
        assert set(hit_rate(engine.store, by="attributes.tier", now=T0).groups) == {(1,), (2,)}

    def test_object_and_array_attributes_fall_back_to_python(self, tmp_path: Path) -> None:
        """A group holding a JSON object or array is keyed in Python, by its sorted JSON."""
        base, _ = ny_engine()
        engine = slakit.Engine(
            store=sqlite_store(tmp_path / "a.db"), policies=base.policies, clock=base.clock
        )
        engine.start("a", policy="lead", started_at=T0, tags=["x", "y"])
        engine.start("b", policy="lead", started_at=T0, tags={"k": 1, "a": 2})
        engine.start("c", policy="lead", started_at=T0, tags="plain")
        rep = hit_rate(engine.store, by="attributes.tags", now=T0)
        assert rep.computed_by == "python"
        assert set(rep.groups) == {('["x", "y"]',), ('{"a": 2, "k": 1}',), ("plain",)}
        # The same with two keys (which SQLite scans and Python counts).
        two = hit_rate(engine.store, by=("policy", "attributes.tags"), now=T0)
        assert two.computed_by == "python"
        assert set(two.groups) == {("lead", k) for (k,) in rep.groups}
        engine.close()


# -- properties ----------------------------------------------------------------------

_EVENT = st.sampled_from(["respond", "complete", "cancel", "pause", "resume", "none"])


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    items = []
    for i in range(draw(st.integers(1, 10))):
        start = draw(st.integers(0, 4 * 24 * 60))
        events = draw(st.lists(st.tuples(_EVENT, st.integers(0, 24 * 60)), min_size=0, max_size=3))
        items.append(
            {
                "id": f"h{i}",
                "policy": draw(st.sampled_from(["lead", "ticket"])),
                "start": start,
                "sla": draw(st.sampled_from([5, 30, 90])),
                "segment": draw(st.sampled_from(SEGMENTS)),
                "channel": draw(st.sampled_from(CHANNELS)),
                "events": sorted(events, key=lambda e: e[1]),
            }
        )
    return items


def apply_event(engine: slakit.Engine, hid: str, kind: str, at: datetime) -> None:
    """Apply an event if the handoff's state allows it (random histories include invalid ones)."""
    h = engine.get(hid)
    if kind == "respond" and h.cancelled_at is None:
        engine.respond(hid, at=at)
    elif kind == "complete" and h.cancelled_at is None:
        engine.complete(hid, at=at)
    elif kind == "cancel" and h.is_active:
        engine.cancel(hid, at=at)
    elif kind == "pause" and h.is_active and h.paused_at is None:
        engine.pause(hid, at=at)
    elif kind == "resume" and h.paused_at is not None and h.is_active:
        engine.resume(hid, at=at)


def build(engine: slakit.Engine, history: list[dict[str, Any]]) -> None:
    for item in history:
        start = T0 + timedelta(minutes=item["start"])
        engine.start(
            item["id"],
            policy=item["policy"],
            sla_minutes=item["sla"],
            started_at=start,
            segment=item["segment"],
            channel=item["channel"],
        )
        for kind, offset in item["events"]:
            apply_event(engine, item["id"], kind, start + timedelta(minutes=offset))


class TestHitRateProperties:
    @given(history=histories(), now_offset=st.integers(0, 6 * 24 * 60))
    @settings(max_examples=60)
    def test_invariants(self, history: list[dict[str, Any]], now_offset: int) -> None:
        """0 ≤ rate ≤ 1; evaluated = met + missed; exclusions stay out; segments sum to total."""
        engine, _ = ny_engine()
        build(engine, history)
        now = T0 + timedelta(minutes=now_offset)
        rep = hit_rate(engine.store, by="segment", now=now)
        cancelled = [h.id for h in engine.store.iter_handoffs() if h.cancelled_at is not None]
        assert sorted(rep.excluded_ids) == sorted(cancelled)
        assert rep.total.excluded == len(cancelled)
        for basis in ("wall", "business"):
            c = rep.total.counts(basis)
            assert c.evaluated == c.met + c.missed
            assert c.evaluated + c.pending + rep.total.excluded == len(history)
            assert c.rate is None or 0 <= c.rate <= 1
            summed = BasisCounts()
            for g in rep.groups.values():
                summed = summed + g.counts(basis)
                gc = g.counts(basis)
                assert gc.rate is None or 0 <= gc.rate <= 1
            assert summed == c
        assert sum(g.excluded for g in rep.groups.values()) == rep.total.excluded

    @given(
        history=histories(),
        checkpoints=st.lists(st.integers(0, 6 * 24 * 60), min_size=2, max_size=6),
    )
    @settings(max_examples=40)
    def test_pending_moves_only_on_deadline_or_stop(
        self, history: list[dict[str, Any]], checkpoints: list[int]
    ) -> None:
        """Pending turns met/missed only when the deadline passes or the stop event arrives."""
        engine, _ = ny_engine()
        build(engine, history)
        final = {h.id: h for h in engine.store.iter_handoffs()}
        times = [T0 + timedelta(minutes=m) for m in sorted(set(checkpoints))]
        for h in final.values():
            for basis in ("wall", "business"):
                deadline = h.wall_deadline_at if basis == "wall" else h.business_deadline_at
                assert deadline is not None
                prev: str | None = None
                prev_t: datetime | None = None
                for t in times:
                    # The record as it stood at ``t``: events after ``t`` have not happened.
                    as_of = _as_of(h, t)
                    if as_of is None:
                        prev = None
                        continue
                    cur = classify(as_of, basis, t)
                    if prev == Outcome.PENDING and cur in (Outcome.MET, Outcome.MISSED):
                        assert prev_t is not None
                        stopped_now = as_of.stopped_at is not None and as_of.stopped_at > prev_t
                        passed = prev_t <= deadline < t
                        assert stopped_now or passed
                    if prev == Outcome.MET:
                        assert cur == Outcome.MET
                    prev, prev_t = cur, t

    @given(history=histories(), now_offset=st.integers(0, 6 * 24 * 60))
    @settings(max_examples=40)
    def test_business_equals_wall_on_a_24_7_calendar(
        self, history: list[dict[str, Any]], now_offset: int
    ) -> None:
        """On an always-open calendar a handoff meets on business time iff it meets on wall time."""
        cal = slakit.BusinessCalendar.always_open("America/New_York")
        engine = slakit.Engine(
            store=MemoryStore(),
            policies=[
                slakit.Policy(name="lead", calendar=cal, sla_minutes=30),
                slakit.Policy(name="ticket", calendar=cal, sla_minutes=30, stop="completion"),
            ],
            clock=slakit.ManualClock(T0),
        )
        build(engine, history)
        now = T0 + timedelta(minutes=now_offset)
        for h in engine.store.iter_handoffs():
            assert classify(h, "business", now) == classify(h, "wall", now)
        rep = hit_rate(engine.store, now=now)
        assert rep.wall == rep.business


def _as_of(h: Handoff, t: datetime) -> Handoff | None:
    """The handoff as it stood at ``t`` when its only events are a start and a stop/cancel.

    Histories with pauses are skipped: their deadline moved over time.
    """
    if h.started_at > t:
        return None
    if h.paused_seconds or h.paused_at is not None:
        return None
    changes: dict[str, Any] = {}
    if h.stopped_at is not None and h.stopped_at > t:
        changes["stopped_at"] = None
    if h.cancelled_at is not None and h.cancelled_at > t:
        changes["cancelled_at"] = None
    return attrs.evolve(h, **changes) if changes else h


class TestReportType:
    def test_report_is_frozen(self) -> None:
        """A report is a frozen value."""
        rep = hit_rate([], now=T0)
        assert isinstance(rep, HitRateReport)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            rep.basis = "wall"  # type: ignore[misc]

    def test_lazy_exports(self) -> None:
        """``slakit.hit_rate`` and ``slakit.HitRateReport`` are the metrics module's names."""
        assert slakit.hit_rate is hit_rate
        assert slakit.HitRateReport is HitRateReport


class TestPausedAroundTheDeadline:
    def _engine(self, store: object) -> tuple[slakit.Engine, slakit.ManualClock]:
        t0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
        clock = slakit.ManualClock(t0)
        return slakit.Engine(
            store=store,  # type: ignore[arg-type]
            policies=[slakit.Policy.default(basis="wall")],
            clock=clock,
        ), clock

    @pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
    def test_pause_after_the_deadline_stays_missed(self, store_kind: str, tmp_path: Path) -> None:
        """A handoff paused after its deadline counts as missed; one paused before is pending."""
        from slakit.adapters.sqlite import SQLiteStore

        store = MemoryStore() if store_kind == "memory" else SQLiteStore(tmp_path / "p.db")
        engine, clock = self._engine(store)
        engine.start("early", owner="a")
        engine.start("late", owner="a")
        clock.advance(minutes=10)
        engine.pause("early")
        clock.advance(minutes=30)
        engine.pause("late")
        clock.advance(hours=5)
        report = slakit.hit_rate(engine.store, now=clock.now(), basis="wall")
        assert (report.total.met, report.total.missed, report.total.pending) == (0, 1, 1)
        engine.close()


class TestBooleanAndNumberGroups:
    @pytest.mark.parametrize(
        "values",
        [[True, 1], [1, True], [True, 1.0, False, 0], [False, True], [0, False, True, True]],
    )
    def test_memory_and_sqlite_label_them_alike(self, tmp_path: Path, values: list[Any]) -> None:
        """JSON true and the number 1 fall in one group (Python keys them as one); the
        group is labelled by the number, whatever the order, as SQL labels it."""
        reports = []
        for store in (MemoryStore(), sqlite_store(tmp_path / "b.db")):
            engine = slakit.Engine(
                store=store,
                policies=[slakit.Policy.default(basis="wall")],
                clock=slakit.ManualClock(T0),
            )
            for i, v in enumerate(values):
                engine.start(f"h{i}", tier=v, started_at=T0)
            rep = hit_rate(engine.store, by="attributes.tier", now=T0)
            reports.append(
                {k: (tuple(map(type, k)), g.wall.pending) for k, g in rep.groups.items()}
            )
            engine.close()
        python, sql = reports
        assert {k: n for k, (_, n) in python.items()} == {k: n for k, (_, n) in sql.items()}
        for key, (types, _) in python.items():
            assert (types[0] is bool) == (sql[key][0][0] is bool), key
            mixed = {type(v) for v in values if v == key[0]}
            assert (types[0] is bool) == (mixed == {bool})

    @pytest.mark.parametrize("by", ["attributes.account", "policy,attributes.account"])
    def test_integers_past_64_bits_stay_apart(self, tmp_path: Path, by: str) -> None:
        """SQLite's json_extract rounds them to one float; such a report is counted in
        Python, so two accounts stay two groups."""
        engine = slakit.Engine(
            store=sqlite_store(tmp_path / "i.db"),
            policies=[slakit.Policy.default(basis="wall")],
            clock=slakit.ManualClock(T0),
        )
        for i, account in enumerate((2**63, 2**63 + 1, -(2**63) - 1, 5)):
            engine.start(f"h{i}", account=account, started_at=T0)
        rep = hit_rate(engine.store, by=by, now=T0)
        assert rep.computed_by == "python"
        assert sorted(k[-1] for k in rep.groups) == [-(2**63) - 1, 5, 2**63, 2**63 + 1]
        engine.close()


def test_an_attribute_name_with_a_control_character_groups_alike_in_every_store(
    tmp_path: Path,
) -> None:
    """SQLite's JSON paths cannot name it; such a name is counted in Python there."""
    from slakit.adapters.memory import MemoryStore
    from slakit.adapters.sqlite import SQLiteStore

    groups = []
    for store in (SQLiteStore(tmp_path / "x.db"), MemoryStore()):
        engine = slakit.Engine(
            store, policies=[slakit.Policy.default(basis="wall")], clock=slakit.ManualClock(T0)
        )
        engine.start("a", owner="x", **{"a\nb": "v1"})
        engine.start("b", owner="x", **{"a\nb": "v2"})
        groups.append(
            sorted(slakit.hit_rate(engine, by=["attributes.a\nb", "attributes.c\x00"]).groups)
        )
    assert groups[0] == groups[1] == [("v1", None), ("v2", None)]


@pytest.mark.parametrize(
    "values", [[False, 0.0], [True, 1.0], [0.0, False], [1, 1.0], [1.0, 1], [False, 0, 0.0]]
)
@pytest.mark.parametrize("by", [["attributes.a"], ["attributes.a", "channel"]])
def test_a_group_of_a_float_and_an_integer_or_flag_is_labelled_alike_in_every_store(
    tmp_path: Path, values: list[Any], by: list[str]
) -> None:
    from slakit.adapters.memory import MemoryStore
    from slakit.adapters.sqlite import SQLiteStore

    labels = []
    for store in (SQLiteStore(tmp_path / "x.db"), MemoryStore()):
        engine = slakit.Engine(
            store, policies=[slakit.Policy.default(basis="wall")], clock=slakit.ManualClock(T0)
        )
        for i, value in enumerate(values):
            engine.start(f"h{i}", owner="x", started_at=T0 + timedelta(minutes=i), a=value)
        groups = slakit.hit_rate(engine, by=by).groups
        labels.append([(k, [type(v).__name__ for v in k]) for k in groups])
    assert labels[0] == labels[1]


class TestLocalTimes:
    def test_a_fall_back_hour_is_judged_by_instants_in_every_path(self, tmp_path: Path) -> None:
        """Times in one local zone compare by wall clock in Python, fold ignored: a record
        built with New York times in the repeated hour must still count by instants, the
        same in classify, in Python over a list or the memory store, and in SQL."""
        from slakit.adapters.sqlite import SQLiteStore

        ny = ZoneInfo("America/New_York")
        deadline = datetime(2026, 11, 1, 1, 50, tzinfo=ny)  # 01:50 EDT = 05:50Z
        answered = datetime(2026, 11, 1, 1, 40, fold=1, tzinfo=ny)  # 01:40 EST = 06:40Z
        h = Handoff(
            id="x",
            policy="p",
            started_at=datetime(2026, 11, 1, 1, 20, tzinfo=ny),
            sla_minutes=30,
            first_response_at=answered,
            stopped_at=answered,
            deadline_at=deadline,
            wall_deadline_at=deadline,
            business_deadline_at=deadline,
        )
        now = datetime(2026, 11, 2, tzinfo=UTC)
        assert classify(h, "wall", now) == "missed"
        paused = attrs.evolve(
            h, first_response_at=None, stopped_at=None, paused_at=answered
        )  # paused 50 minutes after the deadline: it cannot un-miss it
        assert classify(paused, "wall", now) == "missed"
        memory = MemoryStore()
        sqlite = SQLiteStore(tmp_path / "fold.db")
        for store in (memory, sqlite):
            store.insert(h)
        reports = [
            slakit.hit_rate([h], now=now),
            slakit.hit_rate(memory, now=now),
            slakit.hit_rate(sqlite, now=now),
        ]
        assert [r.computed_by for r in reports][-1] == "store"
        assert [(r.total.wall.met, r.total.wall.missed) for r in reports] == [(0, 1)] * 3
        # The window reads its bounds as instants too: 01:30 EST (fold=1) is 06:30Z.
        since = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ny)
        assert slakit.hit_rate([h], since=since, now=now).total.handoffs == 0
        assert slakit.hit_rate([h], until=since, now=now).total.handoffs == 1
