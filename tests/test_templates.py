"""Notification text: compiled templates render exactly what ``render`` does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slakit import Policy
from slakit.errors import ConfigError
from slakit.handoff import Handoff
from slakit.policy import (
    _RENDER_ERRORS,
    DEFAULT_MESSAGES,
    TEMPLATE_FIELDS,
    StepContext,
    TemplateValues,
    _renderer,
    check_template,
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
    "action",
    "elapsed_minutes",
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


NOW = T0 + timedelta(hours=3)


def slow(template: str, policy: Policy, h: Handoff, step: str, recipient: str) -> str:
    values = TemplateValues(
        policy, h, step=step, recipient=recipient, action="notify:owner", now=NOW
    )
    return render(template, values)


def fast(template: str, policy: Policy, h: Handoff, step: str, recipient: str) -> str | None:
    fn = _renderer(template)
    if fn is None:
        return None
    try:
        return fn(policy, h, step, recipient, "notify:owner", NOW)
    except _RENDER_ERRORS:
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


@pytest.mark.parametrize("name", sorted(TEMPLATE_FIELDS))
def test_every_name_a_config_may_use_is_filled(name: str) -> None:
    """A name that passes config validation never renders as written."""
    policy = Policy.from_config(
        {
            "sla_minutes": 30,
            "steps": [{"at": "1x", "do": ["notify:owner"], "message": f"<{{{name}}}>"}],
        },
        name="p",
    )
    h = Handoff(id="L-1", policy="p", started_at=T0, owner="alice")
    step = policy.steps[0]
    for values in (None, TemplateValues(policy, h, step=step.at, now=NOW)):
        text = policy.message_for(
            step, h, recipient="alice", values=values, action="notify:owner", now=NOW
        )
        assert text != f"<{{{name}}}>", (name, values is None)


def _elapsed(policy: Policy, h: Handoff, now: datetime) -> str:
    step = attrs.evolve(policy.steps[0], message="{elapsed_minutes}")
    return policy.message_for(step, h, recipient="x", now=now)


def test_elapsed_minutes_counts_the_clock_on_the_policy_basis() -> None:
    h = Handoff(id="L-1", policy="p", started_at=T0, owner="alice")
    wall = Policy.default("p", basis="wall")
    assert _elapsed(wall, h, T0 + timedelta(minutes=61, seconds=59)) == "61"
    assert _elapsed(wall, h, T0 - timedelta(minutes=5)) == "0"
    # Earlier pauses are left out, and a running pause stops the count.
    paused = attrs.evolve(h, paused_seconds=600.0)
    assert _elapsed(wall, paused, T0 + timedelta(minutes=60)) == "50"
    pausing = attrs.evolve(h, paused_at=T0 + timedelta(minutes=20))
    assert _elapsed(wall, pausing, T0 + timedelta(minutes=60)) == "20"
    stopped = attrs.evolve(h, stopped_at=T0 + timedelta(minutes=7))
    assert _elapsed(wall, stopped, T0 + timedelta(minutes=60)) == "7"
    # Business basis: Friday 16:30 to Monday 09:30 on a 9-17 weekday calendar is 60 minutes.
    business = Policy.from_config(
        {
            "basis": "business",
            "sla_minutes": 30,
            "calendar": {
                "timezone": "UTC",
                "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "09:00-17:00"),
            },
            "steps": [{"at": "1x", "do": ["notify:owner"]}],
        },
        name="p",
    )
    friday = datetime(2026, 3, 6, 16, 30, tzinfo=UTC)
    late = attrs.evolve(h, started_at=friday)
    assert _elapsed(business, late, datetime(2026, 3, 9, 9, 30, tzinfo=UTC)) == "60"
    assert _elapsed(wall, h, T0) == "0"


def test_elapsed_minutes_is_empty_without_a_time() -> None:
    h = Handoff(id="L-1", policy="p", started_at=T0, owner="alice")
    policy = Policy.default("p")
    step = attrs.evolve(policy.steps[0], message="[{elapsed_minutes}]")
    assert policy.message_for(step, h, recipient="x") == "[]"


def test_a_steps_message_names_its_action_and_elapsed_time() -> None:
    """End to end: the engine fills {action} and {elapsed_minutes} for each notification."""
    from slakit import Engine, ManualClock
    from slakit.adapters.memory import MemoryStore
    from slakit.testing import capture_notifications

    policy = Policy.from_config(
        {
            "sla_minutes": 30,
            "steps": [
                {
                    "at": "2x",
                    "do": ["notify:owner", "notify:backup"],
                    "message": "{action} after {elapsed_minutes} min",
                }
            ],
        },
        name="p",
    )
    engine = Engine(store=MemoryStore(), policies=[policy], clock=ManualClock(T0))
    with capture_notifications() as sent:
        engine.start(id="L-1", policy="p", owner="alice", backup_owner="bob", started_at=T0)
        engine.check(T0 + timedelta(minutes=65))
        engine.deliver(T0 + timedelta(minutes=65))
    assert sorted(n.text for n in sent) == [
        "notify:backup after 65 min",
        "notify:owner after 65 min",
    ]


def test_a_link_cannot_name_itself() -> None:
    from slakit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"policies\.p\.link cannot use \{link\}"):
        Policy.from_config(
            {
                "sla_minutes": 30,
                "link": "x/{link}",
                "steps": [{"at": "1x", "do": ["notify:owner"]}],
            },
            name="p",
        )


def test_a_link_naming_itself_renders_without_a_loop() -> None:
    """A Policy built in code skips config checks; its text still renders."""
    policy = Policy.default("p", link="x/{link}/{id}")
    h = Handoff(id="L-1", policy="p", started_at=T0, owner="alice")
    step = policy.steps[0]
    assert policy.message_for(step, h, recipient="alice").endswith("x//L-1")
    values = TemplateValues(policy, h, step=step.at)
    assert policy.message_for(step, h, recipient="alice", values=values).endswith("x//L-1")


def test_a_links_values_are_percent_encoded() -> None:
    """An id from a web form cannot add path segments or a query to the CRM link that
    goes into every alert; names the template does not know stay as written."""
    policy = Policy.default(
        "p", link="https://crm.example.com/leads/{id}?src={attributes[src]}&x={nope}"
    )
    h = Handoff(
        id="../../logout?next=https://evil.example/#",
        policy="p",
        started_at=T0,
        owner="alice",
        attributes={"src": "a b&c"},
    )
    text = policy.message_for(policy.steps[0], h, recipient="alice")
    assert text.endswith(
        "https://crm.example.com/leads/..%2F..%2Flogout%3Fnext%3Dhttps%3A%2F%2Fevil.example"
        "%2F%23?src=a%20b%26c&x={nope}"
    )
    plain = Handoff(id="lead-42", policy="p", started_at=T0, attributes={"src": "web"})
    assert policy.message_for(policy.steps[0], plain, recipient="a").endswith(
        "https://crm.example.com/leads/lead-42?src=web&x={nope}"
    )


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{attributes.__class__.__mro__}", "private name"),
        ("{id:{attributes[w]}}", "may not hold another field"),
        ("{id:>300000000}", "more than 1000 characters"),
        ("{sla_minutes:.5000f}", "more than 1000 characters"),
    ],
)
def test_templates_stay_small_and_on_their_fields(template: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        check_template(template, field="message")


def test_ordinary_formats_and_keys_are_fine() -> None:
    for template in ("{owner:>20} {id}", "{attributes[_source]}", "{sla_minutes:.2f}"):
        check_template(template, field="message")
