"""Hypothesis strategies for slakit values (public, for users' and adapters' tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from slakit.handoff import Handoff
from slakit.policy import Policy

__all__ = ["aware_datetimes", "events", "handoffs", "policies", "step_labels"]

_ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]


def aware_datetimes(
    min_value: datetime = datetime(2020, 1, 1),
    max_value: datetime = datetime(2030, 12, 31),
) -> st.SearchStrategy[datetime]:
    """Aware datetimes in a handful of zones, DST zones included."""
    from zoneinfo import ZoneInfo

    return st.datetimes(
        min_value=min_value,
        max_value=max_value,
        timezones=st.sampled_from([ZoneInfo(z) for z in _ZONES]),
    )


def step_labels() -> st.SearchStrategy[str]:
    """Valid step ``at`` labels: ``1x``, ``75%``, ``1x+15m``, ``-10m``, ``45m``."""
    return st.one_of(
        st.integers(1, 4).map(lambda n: f"{n}x"),
        st.integers(10, 150).map(lambda n: f"{n}%"),
        st.tuples(st.integers(1, 3), st.integers(1, 60)).map(lambda t: f"{t[0]}x+{t[1]}m"),
        st.integers(1, 60).map(lambda n: f"-{n}m"),
        st.integers(1, 600).map(lambda n: f"{n}m"),
    )


_ACTIONS = ["notify:owner", "notify:backup", "notify:@lead", "reassign:backup", "mark_breached"]


@st.composite
def policies(draw: st.DrawFn, basis: str = "wall") -> Policy:
    """Policies on an always-open calendar with 1–4 distinct steps."""
    labels = draw(st.lists(step_labels(), min_size=1, max_size=4, unique=True))
    steps = [
        {"at": label, "do": draw(st.lists(st.sampled_from(_ACTIONS), min_size=1, max_size=3))}
        for label in labels
    ]
    return Policy.from_config(
        {
            "basis": basis,
            "stop": draw(st.sampled_from(["first_response", "completion"])),
            "sla_minutes": draw(st.integers(1, 240)),
            "coalesce": draw(st.booleans()),
            "steps": steps,
        },
        name=draw(st.sampled_from(["p1", "p2", "speed-to-lead"])),
    )


@st.composite
def handoffs(draw: st.DrawFn, policy: str = "speed-to-lead") -> Handoff:
    """Valid, freshly started handoffs (no events yet)."""
    start = draw(aware_datetimes())
    return Handoff(
        id=draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)),
        policy=policy,
        started_at=start.astimezone(UTC),
        owner=draw(st.sampled_from(["alice", "bob", "carol"])),
        backup_owner=draw(st.one_of(st.none(), st.sampled_from(["dan", "erin"]))),
        sla_minutes=float(draw(st.integers(1, 480))),
        channel=draw(st.one_of(st.none(), st.sampled_from(["web", "email", "phone"]))),
        segment=draw(st.one_of(st.none(), st.sampled_from(["ICP", "SMB"]))),
        version=1,
    )


def events() -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Sequences of ``(event, argument)``: clock advances and lifecycle events."""
    event = st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 240).map(lambda m: timedelta(minutes=m))),
        st.tuples(
            st.sampled_from(["respond", "complete", "cancel", "pause", "resume", "check"]),
            st.none(),
        ),
    )
    return st.lists(event, max_size=30)
