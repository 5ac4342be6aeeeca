"""Notification text: compiled templates render exactly what ``render`` does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slakit import Policy
from slakit.handoff import Handoff
from slakit.policy import (
    DEFAULT_MESSAGES,
    StepContext,
    TemplateValues,
    _renderer,
    render,
)
from slakit.testing.strategies import handoffs

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)

_KNOWN = [
    "id",
    "policy",
    "owner",
    "backup_owner",
    "sla_minutes",
    "started_at",
    "deadline_at",
    "breached",
    "channel",
    "attributes",
    "status",
    "deadline",
    "remaining_minutes",
    "link",
    "step",
    "recipient",
    "stage",
]
_OTHER = ["customer", "", "0", "owner.upper", "attributes[region]", "id!r"]
_SPECS = ["", "g", ">12", "d", ".1f", "s", "^9"]


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Literal text with escaped braces, known and unknown names, specs, conversions,
    and now and then a brace that does not close."""
    pieces = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "field", "field", "odd"]))
        if kind == "text":
            pieces.append(
                draw(st.text("ab :-.()é", max_size=8)) + draw(st.sampled_from(["", "{{", "}}"]))
            )
        elif kind == "field":
            name = draw(st.sampled_from(_KNOWN + _OTHER))
            spec = draw(st.sampled_from(_SPECS))
            conversion = draw(st.sampled_from(["", "", "!s", "!r"]))
            pieces.append("{" + name + conversion + (":" + spec if spec else "") + "}")
        else:
            pieces.append(draw(st.sampled_from(["{", "}", "{owner", "{:{}}", "{owner:{spec}}"])))
    return "".join(pieces)


@st.composite
def records(draw: st.DrawFn) -> Handoff:
    h = draw(handoffs())
    due = h.started_at + timedelta(minutes=h.sla_minutes or 30)
    return attrs.evolve(
        h,
        sla_minutes=draw(st.sampled_from([h.sla_minutes, None, 7.5])),
        deadline_at=draw(st.sampled_from([None, due])),
        next_due_at=draw(st.sampled_from([None, due, due - timedelta(minutes=5)])),
        attributes=draw(st.sampled_from([{}, {"region": "EU"}])),
        breached=draw(st.booleans()),
    )


def _policy(link: str) -> Policy:
    return Policy.default("speed-to-lead", link=link)


def slow(template: str, policy: Policy, h: Handoff, step: str, recipient: str) -> str:
    return render(template, TemplateValues(policy, h, step=step, recipient=recipient))


def fast(template: str, policy: Policy, h: Handoff, step: str, recipient: str) -> str | None:
    fn = _renderer(template)
    if fn is None:
        return None
    try:
        return fn(policy, h, step, recipient)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError):
        return template


@settings(max_examples=400, deadline=None)
@given(
    template=templates(),
    h=records(),
    link=st.sampled_from(["", "https://crm.example.com/leads/{id}", "{owner:>8}/{step}"]),
    step=st.sampled_from(["1x", "2x", "-10m"]),
    recipient=st.sampled_from(["alice", "dan", ""]),
)
def test_a_compiled_template_renders_what_render_does(
    template: str, h: Handoff, link: str, step: str, recipient: str
) -> None:
    policy = _policy(link)
    got = fast(template, policy, h, step, recipient)
    if got is not None:
        assert got == slow(template, policy, h, step, recipient)


@pytest.mark.parametrize("template", sorted(DEFAULT_MESSAGES.values()))
def test_the_default_messages_compile(template: str) -> None:
    assert _renderer(template) is not None


@pytest.mark.parametrize(
    "template",
    [
        "{customer}",
        "{owner.upper}",
        "{attributes[region]}",
        "{id!r}",
        "{}",
        "{0}",
        "{owner:{x}}",
        "{",
    ],
)
def test_what_the_compiled_path_leaves_to_render(template: str) -> None:
    assert _renderer(template) is None


def test_a_template_that_cannot_be_filled_gives_itself() -> None:
    h = Handoff(id="L-1", policy="speed-to-lead", started_at=T0, owner="alice")
    policy = _policy("")
    step = policy.steps[0]
    template = "{owner:d} is late"  # a number format for text
    assert fast(template, policy, h, step.at, "alice") == template
    assert slow(template, policy, h, step.at, "alice") == template


def test_message_for_uses_values_an_action_set() -> None:
    """Values an action asked for (and changed) still reach the text."""
    policy = Policy.from_config(
        {"sla_minutes": 30, "steps": [{"at": "1x", "do": ["notify:owner"], "message": "{owner}!"}]},
        name="p",
    )
    h = Handoff(id="L-1", policy="p", started_at=T0, owner="alice")
    ctx = StepContext(handoff=h, policy=policy, step=policy.steps[0], stage=0, now=T0)
    ctx.values["owner"] = "Alice Smith"  # e.g. a display name looked up by an action
    ctx.notify("alice")
    assert ctx.notifications[-1][2] == "Alice Smith!"
    fresh = StepContext(handoff=h, policy=policy, step=policy.steps[0], stage=0, now=T0)
    fresh.notify("alice")
    assert fresh.notifications[-1][2] == "alice!"


def test_message_for_with_and_without_values_agree() -> None:
    policy = Policy.default("speed-to-lead", link="https://crm.example.com/leads/{id}")
    h = Handoff(id="L-9", policy="speed-to-lead", started_at=T0, owner="alice", backup_owner="bob")
    for step in policy.steps:
        plain = policy.message_for(step, h, recipient="alice")
        given_values = policy.message_for(
            step, h, recipient="alice", values=TemplateValues(policy, h, step=step.at)
        )
        assert plain == given_values
        assert plain.endswith("https://crm.example.com/leads/L-9")
