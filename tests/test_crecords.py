"""slakit._crecords: compiled record builders and time conversions, against the Python ones."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slakit
from slakit import _build, _time
from slakit.handoff import Handoff


@pytest.fixture(autouse=True)
def _compiled() -> None:
    """Skip without the module on a laptop; under CI its absence is a failure."""
    if _time.ACCELERATED:
        return
    pure = os.environ.get("SLAKIT_PURE", "").strip() not in ("", "0")
    why = (
        "slakit._crecords is turned off by SLAKIT_PURE" if pure else "slakit._crecords is not built"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must test the compiled path")
    pytest.skip(why)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: datetime's whole range, in microseconds from the epoch.
FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(
    microseconds=1
)
ZONES = ["UTC", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Europe/Dublin"]


def c_from_us(n: int) -> datetime:
    from slakit import _crecords

    return _crecords.from_us(n)


def c_to_us(value: datetime) -> int:
    from slakit import _crecords

    return _crecords.to_us(value)


@settings(max_examples=2000)
@given(st.integers(min_value=FIRST_US, max_value=LAST_US))
def test_from_us_matches_the_python_arithmetic(n: int) -> None:
    """Every instant in datetime's range: the same aware UTC datetime, and back."""
    got = c_from_us(n)
    want = _time.python_from_us(n)
    assert (got, got.tzinfo, got.fold) == (want, want.tzinfo, want.fold)
    assert type(got) is datetime
    assert c_to_us(got) == n == _time.python_to_us(got)


@settings(max_examples=1000)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(ZONES).map(ZoneInfo),
    ),
    st.booleans(),
)
def test_to_us_matches_in_every_zone_and_fold(value: datetime, fold: bool) -> None:
    """Local times with any offset and either fold count as the Python code counts them."""
    value = value.replace(fold=int(fold))
    assert c_to_us(value) == _time.python_to_us(value)
    fixed = value.replace(tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    assert c_to_us(fixed) == _time.python_to_us(fixed)


@pytest.mark.parametrize("n", [LAST_US + 1, FIRST_US - 1, 2**63 - 1, -(2**63)])
def test_out_of_range_is_an_overflow_both_ways(n: int) -> None:
    with pytest.raises(OverflowError):
        _time.python_from_us(n)
    with pytest.raises(OverflowError):
        c_from_us(n)


@pytest.mark.parametrize("bad", [datetime(2026, 3, 2, 14), "2026-03-02", None, 1.5])
def test_to_us_refuses_what_python_refuses(bad: object) -> None:
    """A naive datetime or a non-datetime: the same TypeError and message."""
    with pytest.raises(TypeError) as python:
        _time.python_to_us(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError) as compiled:
        c_to_us(bad)  # type: ignore[arg-type]
    assert str(compiled.value) == str(python.value)


def test_from_us_takes_other_ints_as_python_does() -> None:
    """bool and int subclasses go through the Python arithmetic; other types are refused."""
    assert c_from_us(True) == _time.python_from_us(True)
    with pytest.raises(TypeError):
        c_from_us("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c_from_us(None)  # type: ignore[arg-type]


def test_the_module_is_in_use() -> None:
    """When it is built (always under CI), the engine's hot path uses it."""
    from slakit import _crecords
    from slakit.adapters import sqlite

    assert _build.ACCELERATED
    assert _time.to_us is _crecords.to_us
    assert sqlite.from_us is _crecords.from_us


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "SLAKIT_PURE"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**base, **env},
    )
    return done.stdout.strip()


def test_slakit_pure_turns_it_off() -> None:
    code = "import slakit._build as b, slakit._time as t; print(b.ACCELERATED, t.ACCELERATED)"
    assert _run(code, SLAKIT_PURE="1") == "False False"
    assert _run(code) == "True True"


def test_an_engine_writes_the_same_rows_either_way() -> None:
    """Starts, both steps and deliveries on SQLite: identical rows, pure or compiled."""
    code = """
import json, slakit
from datetime import datetime, timedelta, UTC
from slakit.adapters.sqlite import SQLiteStore
from slakit.testing import capture_notifications
clock = slakit.ManualClock(datetime(2026, 3, 8, 6, 59, 59, 999999, tzinfo=UTC))
store = SQLiteStore(":memory:")
engine = slakit.Engine(store, policies=[slakit.Policy.default(basis="wall")], clock=clock)
engine.start_many({"id": f"L{i}", "owner": "a", "backup_owner": "b", "trace_id": f"{i:032x}",
                   "started_at": clock.now() - timedelta(minutes=7 * i)} for i in range(40))
clock.advance(hours=1)
with capture_notifications():
    engine.check()
    engine.deliver()
rows = {t: store.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("handoffs", "escalations")}
rows["outbox"] = store.query("SELECT * FROM outbox ORDER BY seq")
rows["traces"] = store.query("SELECT * FROM traces ORDER BY seq")
rows["handoff"] = engine.get("L7").to_dict()
print(json.dumps(rows, default=str, sort_keys=True))
"""
    pure, compiled = _run(code, SLAKIT_PURE="1"), _run(code)
    assert pure == compiled
    assert '"stage": 2' in compiled


def _field_values() -> st.SearchStrategy[list[object]]:
    """Every Handoff field with a value of its kind, valid or not (the codec does not judge)."""
    from slakit.handoff import _DATETIME_FIELDS, _FIELD_NAMES

    instants = st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
    text = st.text(max_size=8)
    # Attribute values are JSON data every store keeps: no NaN, infinities, NUL or
    # lone surrogates (every store refuses them).
    finite = st.floats(allow_nan=False, allow_infinity=False)
    json_text = st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8
    )
    scalar = json_text | st.integers() | finite | st.booleans() | st.none()
    kinds: list[st.SearchStrategy[object]] = []
    for name in _FIELD_NAMES:
        if name in _DATETIME_FIELDS:
            kinds.append(st.none() | instants if name != "started_at" else instants)
        elif name == "breached":
            kinds.append(st.booleans())
        elif name == "within_business_hours":
            kinds.append(st.none() | st.booleans())
        elif name == "attributes":
            kinds.append(
                st.dictionaries(json_text, scalar, max_size=3).map(
                    lambda d: MappingProxyType(d) if d else MappingProxyType({})
                )
            )
        elif name in ("stage", "version"):
            kinds.append(st.integers(0, 10**6))
        elif name in ("sla_minutes",) or name.endswith("seconds"):
            kinds.append(st.none() | st.floats(0, 1e6))
        else:
            kinds.append(st.none() | text)
    return st.tuples(*kinds).map(list)


@settings(max_examples=1500)
@given(_field_values())
def test_the_row_codec_matches_the_python_one(values: list[object]) -> None:
    """A handoff's row and the handoff read back from it: the same either way."""
    from slakit.adapters import sqlite

    h = _build.python_packed(slakit.Handoff, [a.name for a in attrs.fields(slakit.Handoff)])(values)
    row = sqlite._python_handoff_values(h)
    assert sqlite._handoff_values(h) == row
    assert [type(v) for v in sqlite._handoff_values(h)] == [type(v) for v in row]
    back = sqlite._handoff_from_row(row)
    assert back == sqlite._python_handoff_from_row(row)
    assert [getattr(back, a.name) for a in attrs.fields(slakit.Handoff)] == [
        getattr(sqlite._python_handoff_from_row(row), a.name) for a in attrs.fields(slakit.Handoff)
    ]


def test_the_row_codec_reports_a_bad_attribute_as_python_does() -> None:
    """An attribute JSON cannot hold: the same ValidationError naming it."""
    from slakit.adapters import sqlite
    from slakit.errors import ValidationError

    h = slakit.Handoff(
        id="L1", policy="p", started_at=datetime(2026, 1, 1, tzinfo=UTC), attributes={"x": {1, 2}}
    )
    with pytest.raises(ValidationError, match=r"attributes\['x'\] of handoff 'L1'"):
        sqlite._handoff_values(h)
    nul = attrs.evolve(h, attributes={"x": "a\x00b"})
    with pytest.raises(ValidationError, match=r"attributes\['x'\] of handoff 'L1' holds a NUL"):
        sqlite._handoff_values(nul)
    lone = attrs.evolve(h, attributes={"x": ["a\ud800"]})
    with pytest.raises(ValidationError, match=r"attributes\['x'\] of handoff 'L1' holds a lone"):
        sqlite._handoff_values(lone)


@settings(max_examples=500)
@given(_field_values(), st.sampled_from(["owner", "stage", "breached", "next_due_at"]))
def test_replace_matches_the_python_one(values: list[object], name: str) -> None:
    """A copy with changed fields, without __init__; unknown names are a KeyError."""
    from slakit.handoff import _FIELD_NAMES, replace_fields

    h = _build.python_packed(slakit.Handoff, _FIELD_NAMES)(values)
    python = _build.python_replacer(slakit.Handoff, _FIELD_NAMES)
    changed = {name: None if name != "stage" else 7}
    got, want = replace_fields(h, **changed), python(h, **changed)
    assert type(got) is slakit.Handoff
    assert [getattr(got, n) for n in _FIELD_NAMES] == [getattr(want, n) for n in _FIELD_NAMES]
    assert getattr(got, name) == changed[name]
    assert replace_fields(h) == h
    assert replace_fields(h) is not h
    for replace in (replace_fields, python):
        with pytest.raises(KeyError):
            replace(h, colour="blue")
        with pytest.raises(TypeError):
            replace(object())


# -- step rows: trace, outbox and escalation rows read and encoded in C --------


def _instants() -> st.SearchStrategy[datetime]:
    """Aware instants in UTC and in other zones (the rows hold UTC microseconds)."""
    return st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, ZoneInfo("America/New_York"), timezone(timedelta(hours=5))]
        ),
    )


_DETAIL_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
)
_DETAILS = st.dictionaries(st.text(max_size=6), _DETAIL_VALUES, max_size=4).map(MappingProxyType)


@st.composite
def _traces(draw: st.DrawFn) -> list[slakit.TraceRecord]:
    """A step's trace lines: some share one detail object and one time, as the engine's do."""
    shared_detail, shared_at = draw(_DETAILS), draw(_instants())
    out = []
    for i in range(draw(st.integers(0, 12))):
        detail = shared_detail if draw(st.booleans()) else draw(_DETAILS)
        at = shared_at if draw(st.booleans()) else draw(_instants())
        out.append(
            slakit.TraceRecord._trusted(
                "t" * 32,
                f"h{i}",
                "default",
                "step:1x",
                draw(st.text(max_size=5)),
                "engine",
                at,
                "ok",
                detail,
            )
        )
    return out


@settings(max_examples=500)
@given(_traces())
def test_trace_rows_match_the_python_ones(traces: list[slakit.TraceRecord]) -> None:
    from slakit.adapters import sqlite

    want = sqlite._python_trace_rows(traces)
    assert sqlite._trace_rows(traces) == want
    assert sqlite._trace_rows(tuple(traces)) == want
    assert sqlite._trace_rows(iter(traces)) == want  # any iterable
    assert [type(v) for r in sqlite._trace_rows(traces) for v in r] == [
        type(v) for r in want for v in r
    ]


@pytest.mark.parametrize("distinct", [1, 12, 13, 100, 50_000])
def test_trace_rows_remember_each_detail_however_many(distinct: int) -> None:
    """Details shared across a batch are encoded once each, whether a handful or more
    than the table holds (past 49,152 it encodes again rather than remembering)."""
    from slakit.adapters import sqlite

    at = datetime(2026, 1, 1, tzinfo=UTC)
    details = [MappingProxyType({"n": i}) for i in range(distinct)]
    traces = [
        slakit.TraceRecord._trusted("t", "h", "p", "r", "a", "engine", at, "ok", d) for d in details
    ]
    calls: list[object] = []

    def text(detail: object) -> str:
        calls.append(detail)
        return sqlite._detail_json(detail)  # type: ignore[arg-type]

    rows = sqlite._c_trace_rows(traces + traces, sqlite._TRACE_SPEC, text)
    assert [r[-1] for r in rows] == [f'{{"n":{i}}}' for i in range(distinct)] * 2
    remembered = min(distinct, 49_152)
    assert len(calls) == distinct + (distinct - remembered)


@st.composite
def _notifications(
    draw: st.DrawFn,
) -> tuple[list[slakit.Notification], Handoff, tuple[object, ...]]:
    from slakit.adapters import sqlite
    from slakit.records import StepPayload

    h = slakit.Handoff(
        id=draw(st.text("abc:é", min_size=1, max_size=5)),
        policy="default",
        started_at=draw(_instants()),
        owner=draw(st.none() | st.text('xyz"', min_size=1, max_size=4)),
        attributes=draw(st.dictionaries(st.text("ké", max_size=3), st.integers(), max_size=2)),
    )
    shared = StepPayload(h, "2x", 1, draw(st.text(max_size=5)))
    other = StepPayload(attrs.evolve(h, owner="x"), "1x", 0, "")
    payloads = st.sampled_from([shared, other, MappingProxyType({}), MappingProxyType({"k": 1})])
    created = draw(_instants())
    out = [
        slakit.Notification._trusted(
            f"{h.id}:1:notify:owner:{i}",
            draw(st.sampled_from(["slack", "smtp"])),
            draw(st.text(max_size=4)),
            h.id,
            1,
            "2x",
            "notify:owner",
            "subject",
            draw(st.text(max_size=8)),
            "t" * 32,
            "default",
            created if draw(st.booleans()) else draw(_instants()),
            draw(payloads),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    return out, h, sqlite._python_handoff_values(h)


@settings(max_examples=300)
@given(_notifications())
def test_outbox_rows_match_the_python_ones(
    case: tuple[list[slakit.Notification], Handoff, tuple[object, ...]],
) -> None:
    from slakit.adapters import sqlite

    notifications, h, row = case
    for args in ((notifications,), (notifications, h, row), (tuple(notifications), h, ())):
        want = sqlite._python_outbox_rows(*args)
        assert sqlite._outbox_rows(*args) == want
        assert all(len(r) == 14 and r[-1] == r[11] for r in want)  # first attempt due at creation


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 50),
            _instants(),
            st.sampled_from(["applied", "skipped"]),
            st.lists(st.text(max_size=6), max_size=3).map(tuple),
        ),
        max_size=5,
    )
)
def test_escalation_rows_match_the_python_ones(
    values: list[tuple[int, datetime, str, tuple[str, ...]]],
) -> None:
    from slakit.adapters import sqlite
    from slakit.records import Escalation

    escalations = [
        Escalation._trusted("h1", stage, "1x", at, outcome, actions)
        for stage, at, outcome, actions in values
    ]
    assert sqlite._escalation_rows(escalations) == sqlite._python_escalation_rows(escalations)


def test_rows_refuse_what_they_cannot_read() -> None:
    """Other classes, a spec naming no slot and odd specs are errors, not garbage."""
    from slakit import _crecords
    from slakit.records import Escalation

    names = tuple(a.name for a in attrs.fields(Escalation))
    rows = _crecords.Builder(Escalation, names).rows
    e = Escalation._trusted("h1", 0, "1x", datetime(2026, 1, 1, tzinfo=UTC), "applied", ("a",))
    assert rows([e], bytes([0, ord("o"), 3, ord("d")]), str) == [("h1", 1767225600000000)]
    with pytest.raises(TypeError, match="needs Escalation objects, got str"):
        rows(["x"], bytes([0, ord("o")]), str)
    with pytest.raises(ValueError, match="spec names slot 6 of 6"):
        rows([e], bytes([6, ord("o")]), str)
    with pytest.raises(TypeError, match="spec must be bytes"):
        rows([e], bytes([0]), str)
    with pytest.raises(ValueError, match="unknown kind"):
        rows([e], bytes([0, ord("?")]), str)
    with pytest.raises(ZeroDivisionError):  # text's own error comes through
        rows([e], bytes([5, ord("j")]), lambda v: 1 / 0)


def test_trace_rows_of_another_class_fall_back_to_python() -> None:
    """A subclass of TraceRecord is not read slot by slot; the Python rows serve it."""
    from slakit.adapters import sqlite

    @attrs.frozen(kw_only=True)
    class Tagged(slakit.TraceRecord):
        tag: str = "x"

    t = Tagged(
        trace_id="t",
        handoff_id="h",
        policy="p",
        rule="r",
        action="a",
        actor="engine",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        outcome="ok",
        detail={"k": 1},
    )
    assert sqlite._trace_rows([t]) == sqlite._python_trace_rows([t])
