"""The generated constructors the engine uses for its own values."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

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


def test_wrong_number_of_values_is_refused() -> None:
    """A builder given too few or too many values raises instead of leaving a slot unset."""
    build = _build.positional(Escalation, ["handoff_id", "stage"])
    with pytest.raises(TypeError):
        build("L1")
    packed = _build.packed(Escalation, ["handoff_id", "stage"])
    with pytest.raises(ValueError):
        packed(("L1", 0, "extra"))


def test_a_lazy_payload_pickles_as_its_mapping() -> None:
    """A payload sent to another process arrives as the plain mapping it stands for."""
    import pickle

    h = Handoff(id="L1", policy="lead", started_at=T0)
    payload = StepPayload(h, "1x", 0, "https://crm.example/L1")
    back = pickle.loads(pickle.dumps(payload))
    assert back == dict(payload)
    assert back["handoff"]["id"] == "L1"
