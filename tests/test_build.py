"""The generated constructors the engine uses for its own values."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs
import pytest

from slakit import _build
from slakit.handoff import Handoff, _from_values, _values_of
from slakit.records import Escalation, Notification, StepPayload, TraceRecord

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def test_packed_handoff_equals_the_validated_one() -> None:
    """A handoff rebuilt from its own values equals it, field for field."""
    h = Handoff(
        id="L1",
        policy="lead",
        started_at=T0,
        owner="alice",
        sla_minutes=30,
        attributes={"region": "EMEA"},
        version=3,
    )
    copy = _from_values(_values_of(h))
    assert copy == h
    assert copy is not h
    assert attrs.evolve(copy) == h  # and it passes the validators as it is


def test_positional_records_equal_init_ones() -> None:
    """Each record's positional constructor gives what __init__ gives."""
    detail = MappingProxyType({"stage": 0})
    t = TraceRecord._trusted(
        "0" * 31 + "1", "L1", "lead", "step:1x", "notify:owner", "engine", T0, "ok", detail
    )
    assert t == TraceRecord(
        trace_id="0" * 31 + "1",
        handoff_id="L1",
        policy="lead",
        rule="step:1x",
        action="notify:owner",
        actor="engine",
        at=T0,
        outcome="ok",
        detail={"stage": 0},
    )
    e = Escalation._trusted("L1", 0, "1x", T0, "applied", ("notify:owner",))
    assert e == Escalation(
        handoff_id="L1",
        stage=0,
        step="1x",
        applied_at=T0,
        outcome="applied",
        actions=("notify:owner",),
    )
    h = Handoff(id="L1", policy="lead", started_at=T0)
    payload = StepPayload(h, "1x", 0, "")
    n = Notification._trusted(
        "L1:0:notify:owner:alice",
        "console",
        "alice",
        "L1",
        0,
        "1x",
        "notify:owner",
        "s",
        "t",
        h.trace_id,
        "lead",
        T0,
        payload,
    )
    assert n.payload is payload
    assert dict(n.payload) == {"handoff": h.to_dict(), "step": "1x", "stage": 0, "link": ""}


BUILDERS = [
    pytest.param((_build.python_positional, _build.python_packed), id="python"),
    pytest.param(
        (_build.positional, _build.packed),
        id="compiled",
        marks=pytest.mark.skipif(not _build.ACCELERATED, reason="slakit._crecords not built"),
    ),
]


@pytest.mark.parametrize("builders", BUILDERS)
def test_wrong_number_of_values_is_refused(builders: tuple[Any, Any]) -> None:
    """A builder given too few or too many values raises instead of leaving a slot unset."""
    positional, packed = builders
    build = positional(Escalation, ["handoff_id", "stage"])
    with pytest.raises(TypeError):
        build("L1")
    with pytest.raises(TypeError):
        build("L1", 0, "extra")
    pack = packed(Escalation, ["handoff_id", "stage"])
    with pytest.raises(ValueError):
        pack(("L1", 0, "extra"))
    with pytest.raises(ValueError):
        pack(["L1"])


@pytest.mark.parametrize("builders", BUILDERS)
def test_every_record_class_builds_alike(builders: tuple[Any, Any]) -> None:
    """Both builders set every slot as __init__ would, and build the exact class."""
    positional, packed = builders
    h = Handoff(id="L1", policy="lead", started_at=T0, owner="a", attributes={"k": 1}, version=2)
    names = [a.name for a in attrs.fields(Handoff)]
    again = packed(Handoff, names)(_values_of(h))
    assert type(again) is Handoff
    assert again == h
    assert attrs.asdict(again, recurse=False) == attrs.asdict(h, recurse=False)
    trace_names = [a.name for a in attrs.fields(TraceRecord)]
    values = ("t" * 32, "L1", "lead", "start", "start", "engine", T0, "ok", MappingProxyType({}))
    built = positional(TraceRecord, trace_names)(*values)
    assert type(built) is TraceRecord
    assert [getattr(built, n) for n in trace_names] == list(values)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.outcome = "changed"  # type: ignore[misc]


def test_the_compiled_builder_refuses_what_it_cannot_build() -> None:
    """Only plain object slots of a class made by object.__new__."""
    if not _build.ACCELERATED:
        pytest.skip("slakit._crecords not built")
    with pytest.raises(TypeError, match="'status' of Handoff is not one of its slots"):
        _build.positional(Handoff, ["status"])
    with pytest.raises(TypeError, match=r"int must be created by object\.__new__"):
        _build.positional(int, [])
    with pytest.raises(TypeError, match="keyword"):
        _build.positional(Escalation, ["handoff_id"])(handoff_id="L1")
    assert "Handoff, 31 slots, packed" in repr(_build.packed(Handoff, attrs.fields_dict(Handoff)))


def test_a_lazy_payload_pickles_as_its_mapping() -> None:
    """A payload sent to another process arrives as the plain mapping it stands for."""
    import pickle

    h = Handoff(id="L1", policy="lead", started_at=T0)
    payload = StepPayload(h, "1x", 0, "https://crm.example/L1")
    back = pickle.loads(pickle.dumps(payload))
    assert back == dict(payload)
    assert back["handoff"]["id"] == "L1"
