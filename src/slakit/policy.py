"""Policies: the named rule set of a kind of handoff, and its steps and actions.

A policy says which calendar the clock runs on, on which basis (business or
wall time), which event stops it (first response or completion), the default
SLA, and what happens at each point on the timer (the steps).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast
from urllib.parse import quote

import attrs

from slakit._time import parse_duration, parse_signed_duration, validate_sla
from slakit.errors import (
    ConfigError,
    InvalidStepError,
    UnknownCalendarError,
    ValidationError,
)
from slakit.handoff import Handoff, replace_fields

if TYPE_CHECKING:
    pass

__all__ = [
    "Action",
    "ActionSpec",
    "BUILTIN_ACTIONS",
    "CalendarLike",
    "PREFLIGHT_FIELDS",
    "Policy",
    "ScheduledStep",
    "Step",
    "StepContext",
    "TemplateValues",
    "WALL_CALENDAR",
    "template_values",
]

BASES = ("business", "wall")
STOPS = ("first_response", "completion")
PREFLIGHT_FIELDS = ("trigger", "target", "timer", "trace", "consequence")
RUNBOOK_FIELDS = (
    "description",
    "owner",
    "failure_modes",
    "rollback",
    "workflow",
    "last_reviewed",
)
BUILTIN_ACTIONS = ("notify", "reassign", "mark_breached")


class CalendarLike(Protocol):
    """What the engine needs of a calendar (``BusinessCalendar`` provides it)."""

    def add(self, start: datetime, delta: timedelta) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...

    def is_open(self, t: datetime) -> bool: ...


class _WallCalendar:
    """Always open: business time equals wall time."""

    # Elapsed time: Python adds and subtracts datetimes of one zone as wall-clock
    # times, an hour off across a DST change, so zoned values go through UTC.

    def add(self, start: datetime, delta: timedelta) -> datetime:
        if start.tzinfo is UTC:
            return start + delta
        return (start.astimezone(UTC) + delta).astimezone(start.tzinfo)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        if start.tzinfo is UTC and end.tzinfo is UTC:
            return end - start
        return end.astimezone(UTC) - start.astimezone(UTC)

    def is_open(self, t: datetime) -> bool:
        return True

    def __repr__(self) -> str:
        return "WALL_CALENDAR"


#: The calendar of a policy that names none: open all the time.
WALL_CALENDAR: CalendarLike = _WallCalendar()


# -- steps ---------------------------------------------------------------

#: The longest step label or duration read (``"1x+1h30m"`` is 8 characters).
MAX_LABEL = 64

# A duration starts with a digit (45m, 1h30m) or P (ISO-8601: PT45M, P1D).
_AT_RE = re.compile(
    r"""^\s*(?:
        (?P<factor>\d+(?:\.\d+)?)\s*x\s*(?P<off>[+-]\s*[0-9pP][0-9a-zA-Z. ]*)?   # 1x, 1x+15m
      | (?P<pct>\d+(?:\.\d+)?)\s*%\s*(?P<pctoff>[+-]\s*[0-9pP][0-9a-zA-Z. ]*)?  # 75%
      | (?P<rel>[+-]\s*[0-9pP][0-9a-zA-Z. ]*)                                 # -10m
      | (?P<abs>[0-9pP][0-9a-zA-Z. ]*)                                        # 45m, PT45M
    )\s*$""",
    re.VERBOSE,
)


@attrs.frozen
class ActionSpec:
    """One entry of a step's ``do`` list: ``name`` plus an optional argument.

    ``"notify:owner"`` is ``ActionSpec("notify", "owner")``; ``"mark_breached"``
    is ``ActionSpec("mark_breached", None)``.
    """

    name: str
    arg: str | None = None

    @property
    def raw(self) -> str:
        """The action as written in config."""
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @classmethod
    def parse(cls, text: Any, *, field: str = "do") -> ActionSpec:
        """Parse ``"name"`` or ``"name:arg"``.

        :raises InvalidStepError: naming the text when it is empty or not a string.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidStepError(
                f"{field} entries must be non-empty strings like 'notify:owner', got {text!r}",
                field=field,
                value=text,
            )
        name, sep, arg = text.strip().partition(":")
        if not name or (sep and not arg):
            raise InvalidStepError(
                f"{field} entry {text!r} must be 'name' or 'name:argument'",
                field=field,
                value=text,
            )
        return cls(name, arg if sep else None)


@attrs.frozen
class Step:
    """A point on the timer and what happens there.

    The offset from the start is ``factor × SLA + offset`` (never below
    zero), measured on the policy's basis.

    :ivar at: the label as written: ``"1x"``, ``"2x"``, ``"75%"``, ``"1x+15m"``,
        ``"-10m"`` (ten minutes before the deadline), ``"45m"`` (45 minutes after the start).
    """

    at: str
    factor: float
    offset: timedelta
    actions: tuple[ActionSpec, ...]
    message: str | None = None
    #: The actions as written (``("mark_breached", "reassign:backup", ...)``).
    raw_actions: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)
    # Whether an action reassigns (the default message then says so).
    _reassigns: bool = attrs.field(init=False, eq=False, repr=False)
    # Whether every action is built in (the engine may plan the next due step on
    # the record as this one leaves it, without reading it back from the store).
    _builtin: bool = attrs.field(init=False, eq=False, repr=False)
    # offset_for per SLA: a few SLAs serve many records.
    _offsets: dict[timedelta, timedelta] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Derived once here: the engine reads both for every handoff the step fires on.
        object.__setattr__(self, "raw_actions", tuple(a.raw for a in self.actions))
        object.__setattr__(self, "_reassigns", any(a.name == "reassign" for a in self.actions))
        object.__setattr__(self, "_builtin", all(a.name in BUILTIN_ACTIONS for a in self.actions))
        object.__setattr__(self, "_offsets", {})

    def offset_for(self, sla: timedelta) -> timedelta:
        """Time from the start (on the policy's basis) at which the step is due."""
        offset = self._offsets.get(sla)
        if offset is None:
            offset = max(timedelta(0), sla * self.factor + self.offset)
            if len(self._offsets) < 256:
                self._offsets[sla] = offset
        return offset

    @classmethod
    def parse_at(cls, at: Any, *, field: str = "at") -> tuple[float, timedelta]:
        """Parse an ``at`` label into ``(factor, offset)``.

        :raises InvalidStepError: naming the label when it cannot be parsed.
        """
        if not isinstance(at, str):
            raise InvalidStepError(
                f"{field} must be a string like '1x', '75%', '1x+15m' or '-10m', got {at!r}",
                field=field,
                value=at,
            )
        # Labels are short; a long one is a mistake, and the pattern is slow on it.
        m = _AT_RE.match(at) if len(at) <= MAX_LABEL else None
        try:
            if m is None:
                raise ValidationError("no match")
            if m["factor"] is not None:
                factor = float(m["factor"])
                off = parse_signed_duration(field, m["off"]) if m["off"] else timedelta(0)
            elif m["pct"] is not None:
                factor = float(m["pct"]) / 100
                off = parse_signed_duration(field, m["pctoff"]) if m["pctoff"] else timedelta(0)
            elif m["rel"] is not None:
                factor, off = 1.0, parse_signed_duration(field, m["rel"])
            else:
                factor, off = 0.0, parse_duration(field, m["abs"])
        except ValidationError as exc:
            if "at most ten years" in str(exc):
                raise InvalidStepError(
                    f"{field} offsets must be at most ten years, got {at!r}", field=field, value=at
                ) from None
            raise InvalidStepError(
                f"{field} must look like '1x', '2x', '75%', '1x+15m', '-10m' or '45m', got {at!r}",
                field=field,
                value=at,
            ) from None
        if not math.isfinite(factor) or factor > 100:
            raise InvalidStepError(
                f"{field} must be a multiple of the SLA up to 100x, got {at!r}",
                field=field,
                value=at,
            )
        return factor, off

    @classmethod
    def from_config(
        cls, data: Mapping[str, Any], *, field: str = "steps", known_actions: Sequence[str] = ()
    ) -> Step:
        """Build a step from ``{at = "...", do = [...], message = "..."}``.

        :raises InvalidStepError: for a bad ``at`` or ``do`` entry.
        :raises ConfigError: for a missing or unknown key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{field} entries must be tables like {{at = '1x', do = ['notify:owner']}}, "
                f"got {data!r}",
                field=field,
                value=data,
            )
        unknown = set(data) - {"at", "do", "message"}
        if unknown:
            raise ConfigError(
                f"{field}: unknown key {sorted(unknown)[0]!r} (allowed: at, do, message)",
                field=field,
                value=sorted(unknown)[0],
            )
        if "at" not in data or "do" not in data:
            missing = "at" if "at" not in data else "do"
            raise ConfigError(f"{field}: missing key {missing!r}", field=field, value=missing)
        factor, offset = cls.parse_at(data["at"], field=f"{field}.at")
        do = data["do"]
        if isinstance(do, str):
            do = [do]
        if not isinstance(do, Sequence) or not do:
            raise InvalidStepError(
                f"{field}.do must be a non-empty list of actions, got {do!r}",
                field=f"{field}.do",
                value=do,
            )
        actions = tuple(ActionSpec.parse(a, field=f"{field}.do") for a in do)
        for spec in actions:
            _check_builtin_action(spec, field=f"{field}.do", known=known_actions)
        message = data.get("message")
        if message is not None:
            check_template(message, field=f"{field}.message")
        return cls(at=data["at"], factor=factor, offset=offset, actions=actions, message=message)


def _check_builtin_action(spec: ActionSpec, *, field: str, known: Sequence[str]) -> None:
    if spec.name == "notify":
        if spec.arg is None:
            raise InvalidStepError(
                f"{field}: 'notify' needs a target: notify:owner, notify:backup or notify:@handle",
                field=field,
                value=spec.raw,
            )
        if spec.arg not in ("owner", "backup") and not spec.arg.startswith("@"):
            raise InvalidStepError(
                f"{field}: unknown notify target {spec.arg!r} in {spec.raw!r} "
                "(use owner, backup or @handle)",
                field=field,
                value=spec.raw,
            )
    elif spec.name == "reassign":
        if spec.arg is None or (spec.arg != "backup" and not spec.arg.startswith("@")):
            raise InvalidStepError(
                f"{field}: {spec.raw!r} must be reassign:backup or reassign:@handle",
                field=field,
                value=spec.raw,
            )
    elif spec.name == "mark_breached":
        if spec.arg is not None:
            raise InvalidStepError(
                f"{field}: mark_breached takes no argument, got {spec.raw!r}",
                field=field,
                value=spec.raw,
            )
    elif spec.name not in known:
        raise InvalidStepError(
            f"{field}: unknown action {spec.raw!r} (built-in: notify, reassign, mark_breached"
            + (f"; from plugins: {', '.join(sorted(known))}" if known else "")
            + ")",
            field=field,
            value=spec.raw,
        )


# -- templates -----------------------------------------------------------

TEMPLATE_FIELDS = frozenset(
    {a.name for a in attrs.fields(Handoff)}
    | {
        "step",
        "stage",
        "recipient",
        "link",
        "deadline",
        "elapsed_minutes",
        "action",
        "status",
        "remaining_minutes",
    }
)


#: The widest a template field may be formatted (``{id:>80}``): a message, not a page.
MAX_TEMPLATE_WIDTH = 1000


def check_template(template: Any, *, field: str) -> None:
    """Reject a message template that names an unknown field.

    :raises ConfigError: naming the field and the template.
    """
    if not isinstance(template, str):
        raise ConfigError(f"{field} must be a string, got {template!r}", field=field)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"{field} is not a valid template ({exc}): {template!r}", field=field, value=template
        ) from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if re.search(r"\._", name):
            raise ConfigError(
                f"{field} reaches into a private name in {{{name}}}; fields and their keys only",
                field=field,
                value=name,
            )
        if spec and "{" in spec:
            raise ConfigError(
                f"{field}: the format of {{{name}}} may not hold another field ({spec!r})",
                field=field,
                value=spec,
            )
        if spec and any(int(n) > MAX_TEMPLATE_WIDTH for n in re.findall(r"\d+", spec)):
            raise ConfigError(
                f"{field}: the format of {{{name}}} asks for more than {MAX_TEMPLATE_WIDTH} "
                f"characters ({spec!r})",
                field=field,
                value=spec,
            )
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root not in TEMPLATE_FIELDS:
            raise ConfigError(
                f"{field} uses unknown field {{{root}}} in {template!r}; "
                f"known: {', '.join(sorted(TEMPLATE_FIELDS))}",
                field=field,
                value=root,
            )


class _SafeMap(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


#: What a template that cannot be filled falls back to (the template as written).
_RENDER_ERRORS = (KeyError, IndexError, AttributeError, ValueError, TypeError)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill a message template; unknown names are left as written."""
    mapping = values if isinstance(values, TemplateValues) else _SafeMap(values)
    try:
        return template.format_map(mapping)
    except _RENDER_ERRORS:
        return template


#: ``render_fast(policy, handoff, step, recipient, action, now) -> str``: a template compiled.
Renderer = Callable[["Policy", Handoff, str, str, str, "datetime | None"], str]
_RENDERERS: dict[str, Renderer | None] = {}


def _renderer(template: str) -> Renderer | None:
    """``template`` compiled to straight-line code, or ``None`` when it needs :func:`render`.

    A notification's text is rendered for every step, so the common templates
    (``{name}`` and ``{name:spec}`` with the names :class:`TemplateValues`
    knows) become one generated function that reads the record's fields
    directly: the same text as ``render(template, TemplateValues(...))``
    without building the mapping. Anything else (unknown names, indexes,
    attributes, conversions, nested specs) is left to :func:`render`.
    """
    try:
        return _RENDERERS[template]
    except KeyError:
        pass
    fn = _compile_template(template)
    if len(_RENDERERS) < 1024:
        _RENDERERS[template] = fn
    return fn


def _compile_template(template: str) -> Renderer | None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    namespace: dict[str, Any] = {
        "_sla": _sla_minutes,
        "_deadline": _deadline,
        "_remaining": _remaining_minutes,
        "_elapsed": _elapsed_minutes,
        "_link": _link,
    }
    pieces: list[str] = []
    for literal, name, spec, conversion in parsed:
        if literal:
            namespace[f"l{len(namespace)}"] = literal
            pieces.append(f"l{len(namespace) - 1}")
        if name is None:
            continue
        expression = _field_expression(name)
        if expression is None or conversion is not None or "{" in (spec or ""):
            return None
        namespace[f"s{len(namespace)}"] = spec or ""
        pieces.append(f"format({expression}, s{len(namespace) - 1})")
    body = f"({', '.join(pieces)},)" if pieces else "()"
    source = f"def render_fast(p, h, step, recipient, action, now):\n    return ''.join({body})\n"
    exec(compile(source, "<slakit template>", "exec"), namespace)
    fn: Renderer = namespace["render_fast"]
    return fn


def _field_expression(name: str) -> str | None:
    """Python for the template name ``name`` (as :func:`_template_value` computes it)."""
    if name in _PLAIN_FIELD_SET:
        return f"h.{name}"
    return _EXPRESSIONS.get(name)


_EXPRESSIONS = {
    "attributes": "dict(h.attributes)",
    "sla_minutes": "_sla(p, h)",
    "status": "h.status",
    "deadline": "_deadline(h)",
    "remaining_minutes": "_remaining(h)",
    "elapsed_minutes": "_elapsed(p, h, now)",
    "link": "_link(p, h, step, recipient, action, now)",
    "step": "step",
    "recipient": "recipient",
    "action": "action",
}


# The computed template names, shared by TemplateValues and compiled templates.


def _sla_minutes(policy: Policy, handoff: Handoff) -> float:
    return handoff.sla_minutes if handoff.sla_minutes is not None else policy.sla_minutes


def _deadline(handoff: Handoff) -> str:
    return handoff.deadline_at.isoformat() if handoff.deadline_at else ""


def _remaining_minutes(handoff: Handoff) -> Any:
    if handoff.deadline_at is None or handoff.next_due_at is None:
        return ""
    return max(0, round((handoff.deadline_at - handoff.next_due_at).total_seconds() / 60))


def _elapsed_minutes(policy: Policy, handoff: Handoff, now: datetime | None) -> Any:
    """Whole minutes the clock has run by ``now``, on the policy's basis, pauses left out."""
    if now is None:
        return ""
    end = now
    for stop in (handoff.stopped_at, handoff.paused_at):
        if stop is not None and stop < end:
            end = stop
    if policy.basis == "wall":
        seconds = (end - handoff.started_at).total_seconds() - handoff.paused_seconds
    else:
        ran = policy.calendar.elapsed(handoff.started_at, end)
        seconds = ran.total_seconds() - handoff.paused_business_seconds
    return max(0, math.floor(seconds / 60))


def _link(
    policy: Policy,
    handoff: Handoff,
    step: str,
    recipient: str,
    action: str = "",
    now: datetime | None = None,
) -> str:
    if not policy.link:
        return ""
    values = TemplateValues(policy, handoff, step=step, recipient=recipient, action=action, now=now)
    return _render_link(policy, values)


def _render_link(policy: Policy, values: TemplateValues) -> str:
    """The policy's link filled from ``values``, each text percent-encoded (an id such as
    ``../admin?next=…`` cannot add path segments or a query); a link that names itself
    gets nothing there."""
    if not policy.link:
        return ""
    values["link"] = ""  # while it renders: no loop
    try:
        return policy.link.format_map(_UrlQuoted(values))
    except _RENDER_ERRORS:
        return policy.link


class _UrlQuoted:
    """Template values for a URL: text percent-encoded, mappings (``attributes``) too."""

    def __init__(self, inner: Mapping[str, Any]) -> None:
        self._inner = inner

    def __getitem__(self, key: str) -> Any:
        value = self._inner[key]
        if isinstance(value, str):
            # An unknown name renders as written, braces and all.
            return value if value == "{" + key + "}" else quote(value, safe="")
        if isinstance(value, Mapping):
            return _UrlQuoted(value)
        return value


DEFAULT_MESSAGES = {
    "before": "{policy}: {id} is due in {remaining_minutes} min (owner {owner}). {link}",
    "at": "{policy}: {id} passed its {sla_minutes:g}-minute SLA with no response "
    "(owner {owner}, step {step}). {link}",
    "reassigned": "{policy}: {id} breached its {sla_minutes:g}-minute SLA and is "
    "reassigned to {owner} (was {backup_owner}). {link}",
}


# -- step context and actions ---------------------------------------------


@attrs.define
class StepContext:
    """What an action sees and changes while a step is being planned.

    :ivar handoff: the handoff as changed by the actions so far.
    :ivar notifications: ``(action, recipient, text)`` requests added so far.
    :ivar detail: extra trace detail per action, keyed by the action's text.
    """

    handoff: Handoff
    policy: Policy
    step: Step
    stage: int
    now: datetime
    notifications: list[tuple[str, str, str]] = attrs.Factory(list)
    detail: dict[str, Any] = attrs.Factory(dict)
    current_action: str = ""
    _values: TemplateValues | None = attrs.field(default=None, alias="_values")

    def evolve(self, **changes: Any) -> Handoff:
        """Change the handoff (the change is written with the step)."""
        self.handoff = attrs.evolve(self.handoff, **changes)
        return self.handoff

    @property
    def values(self) -> TemplateValues:
        """The template names for the handoff as it is now (each computed on first use)."""
        values = self._current_values()
        if values is None:
            values = self._values = TemplateValues(
                self.policy, self.handoff, step=self.step.at, now=self.now
            )
        return values

    def _current_values(self) -> TemplateValues | None:
        """The values an action asked for, if they are still the handoff's as it is now."""
        values = self._values
        return values if values is not None and values.handoff is self.handoff else None

    def link(self) -> Any:
        """The policy's link for the handoff as it is now (``values["link"]``)."""
        values = self._current_values()
        if values is not None:
            return values["link"]
        return _link(self.policy, self.handoff, self.step.at, "", "", self.now)

    def notify(self, recipient: str, text: str | None = None) -> None:
        """Ask for a notification to ``recipient`` through every configured notifier."""
        if text is None:
            # Values an action asked for (and may have changed) are used as they
            # are; otherwise message_for reads the record directly.
            text = self.policy.message_for(
                self.step,
                self.handoff,
                recipient=recipient,
                values=self._current_values(),
                action=self.current_action,
                now=self.now,
            )
        self.notifications.append((self.current_action, recipient, text))


class Action(Protocol):
    """A step action: changes ``ctx`` and/or asks for notifications; no I/O."""

    def __call__(self, ctx: StepContext, arg: str | None) -> None: ...


def _notify(ctx: StepContext, arg: str | None) -> None:
    h = ctx.handoff
    if arg == "owner":
        target = h.owner
    elif arg == "backup":
        target = h.backup_owner
    else:
        target = (arg or "").lstrip("@") or None
    if not target:
        ctx.detail[ctx.current_action] = {"skipped": f"handoff has no {arg}"}
        return
    ctx.notify(target)


def _reassign(ctx: StepContext, arg: str | None) -> None:
    h = ctx.handoff
    new_owner = h.backup_owner if arg == "backup" else (arg or "").lstrip("@")
    if not new_owner:
        ctx.detail[ctx.current_action] = {"skipped": "handoff has no backup_owner"}
        return
    # The previous owner becomes the backup, so a later notify:backup still reaches them.
    ctx.handoff = replace_fields(h, owner=new_owner, backup_owner=h.owner)
    ctx.detail[ctx.current_action] = {"from": h.owner, "to": new_owner}


def _mark_breached(ctx: StepContext, arg: str | None) -> None:
    ctx.handoff = replace_fields(ctx.handoff, breached=True)


_BUILTIN_IMPLS: dict[str, Action] = {
    "notify": _notify,
    "reassign": _reassign,
    "mark_breached": _mark_breached,
}


def run_actions(ctx: StepContext, plugin_actions: Mapping[str, Action]) -> None:
    """Run the step's actions in order against ``ctx``."""
    for spec in ctx.step.actions:
        ctx.current_action = spec.raw
        impl = _BUILTIN_IMPLS.get(spec.name) or plugin_actions.get(spec.name)
        if impl is None:
            ctx.detail[spec.raw] = {"skipped": "action not installed"}
            continue
        impl(ctx, spec.arg)


# -- policy ----------------------------------------------------------------

_MINUTES: dict[float, timedelta] = {}


def _minutes(minutes: float) -> timedelta:
    """``timedelta(minutes=minutes)``, remembered: a few SLAs serve many records."""
    delta = _MINUTES.get(minutes)
    if delta is None:
        if len(_MINUTES) >= 4096:
            _MINUTES.clear()
        delta = _MINUTES[minutes] = timedelta(minutes=minutes)
    return delta


@attrs.frozen
class ScheduledStep:
    """A step placed on one handoff's timer."""

    index: int
    step: Step
    due_at: datetime


class _FiringOrder(NamedTuple):
    pairs: tuple[tuple[int, timedelta], ...]  # (index in Policy.steps, offset)
    steps: tuple[Step, ...]
    offsets: tuple[timedelta, ...]


def _default_steps() -> tuple[Step, ...]:
    return (
        Step("1x", 1.0, timedelta(0), (ActionSpec("notify", "owner"),)),
        Step(
            "2x",
            2.0,
            timedelta(0),
            (
                ActionSpec("mark_breached"),
                ActionSpec("reassign", "backup"),
                ActionSpec("notify", "owner"),
                ActionSpec("notify", "backup"),
            ),
        ),
    )


_POLICY_KEYS = frozenset(
    {"calendar", "basis", "stop", "sla_minutes", "steps", "coalesce", "link", "backup_owner"}
    | set(PREFLIGHT_FIELDS)
    | set(RUNBOOK_FIELDS)
)


def _policy_name(_inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"a policy's name must be a non-empty string, got {value!r}", field="name", value=value
        )


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            options = " or ".join(repr(c) for c in choices)
            raise ConfigError(
                f"policy {inst.name!r}: {attribute.name} must be {options}, got {value!r}",
                field=attribute.name,
                value=value,
            )

    return check


def _policy_sla(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate_sla(attribute.name, value)


def _policy_steps(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value or not all(isinstance(s, Step) for s in value):
        raise ConfigError(
            f"policy {inst.name!r}: steps must be a non-empty sequence of Step, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _policy_flag(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(
            f"policy {inst.name!r}: {attribute.name} must be True or False, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _steps_tuple(value: Any) -> Any:
    """Steps as a tuple, from any iterable (a generator would be used up by the check)."""
    if isinstance(value, tuple | str | bytes | Mapping) or not isinstance(value, Iterable):
        return value
    return tuple(value)


@attrs.frozen(kw_only=True)
class Policy:
    """A named rule set for a kind of handoff.

    Build one with :meth:`from_config` (the ``[policies.NAME]`` table of
    ``slakit.toml``) or :meth:`default`. Built directly, it checks its fields
    as :meth:`from_config` does: a ``basis``, ``stop``, ``sla_minutes``,
    ``steps`` or ``coalesce`` it cannot use raises :class:`ConfigError` (or
    :class:`InvalidSLAError`) naming the field.
    """

    name: str = attrs.field(validator=_policy_name)
    calendar: CalendarLike = WALL_CALENDAR
    calendar_name: str | None = None
    basis: str = attrs.field(default="business", validator=_one_of(BASES))
    stop: str = attrs.field(default="first_response", validator=_one_of(STOPS))
    sla_minutes: float = attrs.field(default=30.0, validator=_policy_sla)
    steps: tuple[Step, ...] = attrs.field(
        factory=_default_steps, converter=_steps_tuple, validator=_policy_steps
    )
    coalesce: bool = attrs.field(default=False, validator=_policy_flag)
    link: str | None = None
    #: Default backup owner for records that carry none.
    backup_owner: str | None = None
    #: The five preflight decisions, as text; checked by ``slakit preflight``.
    preflight: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    #: Runbook fields: description, owner, failure_modes, rollback, workflow, last_reviewed.
    runbook: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    # Per SLA: (step index, offset) pairs, steps and offsets, all in firing order.
    _order_cache: dict[timedelta, _FiringOrder] = attrs.field(
        factory=dict, init=False, eq=False, hash=False, repr=False
    )

    @classmethod
    def default(cls, name: str = "default", *, sla_minutes: float = 30.0, **kw: Any) -> Policy:
        """The playbook's policy: at 1× notify the owner; at 2× mark breached, reassign
        to the backup and notify both."""
        return cls(name=name, sla_minutes=validate_sla("sla_minutes", sla_minutes), **kw)

    @classmethod
    def from_config(
        cls,
        data: Mapping[str, Any],
        *,
        name: str | None = None,
        calendars: Mapping[str, CalendarLike] | None = None,
        actions: Sequence[str] = (),
    ) -> Policy:
        """Build a policy from its config table.

        :param data: the ``[policies.NAME]`` table.
        :param name: the policy's name (default ``data["name"]`` or ``"default"``).
        :param calendars: configured calendars by name; ``calendar`` may also be
            an inline table, a calendar object (``BusinessCalendar`` or anything
            with ``add``, ``elapsed`` and ``is_open``), or absent for an
            always-open calendar.
        :param actions: names of plugin actions that ``do`` lists may use.
        :raises ConfigError: for unknown keys and wrong types.
        :raises InvalidSLAError: for a bad ``sla_minutes``.
        :raises InvalidStepError: for a bad step.
        :raises UnknownCalendarError: for a calendar name not in ``calendars``.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a policy must be a table, got {data!r}", field="policy")
        data = dict(data)
        pname = name or data.pop("name", None) or "default"
        data.pop("name", None)
        unknown = set(data) - _POLICY_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"policies.{pname}: unknown key {key!r} "
                f"(allowed: {', '.join(sorted(_POLICY_KEYS))})",
                field=f"policies.{pname}.{key}",
                value=key,
            )
        prefix = f"policies.{pname}"
        cal_ref = data.get("calendar")
        calendar: CalendarLike = WALL_CALENDAR
        cal_name: str | None = None
        if isinstance(cal_ref, str):
            if calendars is None or cal_ref not in calendars:
                raise UnknownCalendarError(cal_ref, list(calendars or {}))
            calendar, cal_name = calendars[cal_ref], cal_ref
        elif isinstance(cal_ref, Mapping):
            from slakit.calendar import BusinessCalendar

            calendar = BusinessCalendar.from_config(cal_ref)
            cal_name = f"{pname} (inline)"
        elif all(callable(getattr(cal_ref, m, None)) for m in ("add", "elapsed", "is_open")):
            # A calendar object, when the policy is built in code.
            calendar = cast("CalendarLike", cal_ref)
            cal_name = getattr(cal_ref, "name", None) or f"{pname} (object)"
        elif cal_ref is not None:
            raise ConfigError(
                f"{prefix}.calendar must be a calendar name, table or calendar object, "
                f"got {cal_ref!r}",
                field=f"{prefix}.calendar",
                value=cal_ref,
            )
        basis = data.get("basis", "business")
        if basis not in BASES:
            raise ConfigError(
                f"{prefix}.basis must be 'business' or 'wall', got {basis!r}",
                field=f"{prefix}.basis",
                value=basis,
            )
        stop = data.get("stop", "first_response")
        if stop not in STOPS:
            raise ConfigError(
                f"{prefix}.stop must be 'first_response' or 'completion', got {stop!r}",
                field=f"{prefix}.stop",
                value=stop,
            )
        sla = validate_sla(f"{prefix}.sla_minutes", data.get("sla_minutes", 30))
        raw_steps = data.get("steps")
        if raw_steps is None:
            steps = _default_steps()
        else:
            if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str) or not raw_steps:
                raise ConfigError(
                    f"{prefix}.steps must be a non-empty list of tables, got {raw_steps!r}",
                    field=f"{prefix}.steps",
                    value=raw_steps,
                )
            steps = tuple(
                Step.from_config(s, field=f"{prefix}.steps[{i}]", known_actions=actions)
                for i, s in enumerate(raw_steps)
            )
            labels = [s.at for s in steps]
            dup = next((lbl for lbl in labels if labels.count(lbl) > 1), None)
            if dup is not None:
                raise InvalidStepError(
                    f"{prefix}.steps: two steps at {dup!r}; merge their 'do' lists",
                    field=f"{prefix}.steps",
                    value=dup,
                )
        coalesce = data.get("coalesce", False)
        if not isinstance(coalesce, bool):
            raise ConfigError(
                f"{prefix}.coalesce must be true or false, got {coalesce!r}",
                field=f"{prefix}.coalesce",
                value=coalesce,
            )
        link = data.get("link")
        if link is not None:
            check_template(link, field=f"{prefix}.link")
            if any(name == "link" for _, name, _, _ in string.Formatter().parse(link)):
                raise ConfigError(
                    f"{prefix}.link cannot use {{link}} (itself): {link!r}",
                    field=f"{prefix}.link",
                    value=link,
                )
        backup = data.get("backup_owner")
        if backup is not None and not isinstance(backup, str):
            raise ConfigError(
                f"{prefix}.backup_owner must be a string, got {backup!r}",
                field=f"{prefix}.backup_owner",
                value=backup,
            )
        preflight: dict[str, str] = {}
        for key in PREFLIGHT_FIELDS:
            if key in data:
                if not isinstance(data[key], str):
                    raise ConfigError(
                        f"{prefix}.{key} must be text, got {data[key]!r}",
                        field=f"{prefix}.{key}",
                        value=data[key],
                    )
                preflight[key] = data[key]
        runbook: dict[str, Any] = {}
        for key in RUNBOOK_FIELDS:
            if key in data:
                value = data[key]
                if key == "last_reviewed":
                    value = _parse_date(f"{prefix}.last_reviewed", value)
                runbook[key] = value
        return cls(
            name=pname,
            calendar=calendar,
            calendar_name=cal_name,
            basis=basis,
            stop=stop,
            sla_minutes=sla,
            steps=steps,
            coalesce=coalesce,
            link=link,
            backup_owner=backup,
            preflight=preflight,
            runbook=runbook,
        )

    # -- timer arithmetic --------------------------------------------------

    def effective_sla(self, handoff: Handoff) -> timedelta:
        """The record's SLA, or this policy's default when the record has none."""
        minutes = handoff.sla_minutes if handoff.sla_minutes is not None else self.sla_minutes
        return _minutes(minutes)

    def _after(
        self,
        start: datetime,
        offset: timedelta,
        basis: str,
        paused_seconds: float = 0.0,
        paused_business_seconds: float = 0.0,
    ) -> datetime:
        if basis == "wall":
            if paused_seconds:
                offset = offset + timedelta(seconds=paused_seconds)
            if start.tzinfo is not UTC:
                # Elapsed time, not wall-clock arithmetic in the start's zone
                # (which would be an hour off across a DST change).
                start = start.astimezone(UTC)
            return start + offset
        if paused_business_seconds:
            offset = offset + timedelta(seconds=paused_business_seconds)
        return self.calendar.add(start, offset)

    def due_after(self, handoff: Handoff, offset: timedelta) -> datetime:
        """The instant ``offset`` of (basis) time after the start, pauses included."""
        return self._after(
            handoff.started_at,
            offset,
            self.basis,
            handoff.paused_seconds,
            handoff.paused_business_seconds,
        )

    def _firing(self, sla: timedelta) -> _FiringOrder:
        """The steps in firing order for an SLA (by offset, then as written), cached."""
        cached = self._order_cache.get(sla)
        if cached is None:
            pairs = sorted((self.steps[i].offset_for(sla), i) for i in range(len(self.steps)))
            cached = _FiringOrder(
                tuple((i, offset) for offset, i in pairs),
                tuple(self.steps[i] for _, i in pairs),
                tuple(offset for offset, _ in pairs),
            )
            if len(self._order_cache) < 1024:  # records with their own SLAs: bounded
                self._order_cache[sla] = cached
        return cached

    def schedule(self, handoff: Handoff) -> list[ScheduledStep]:
        """The handoff's steps in firing order (by offset, then as written)."""
        pairs = self._firing(self.effective_sla(handoff)).pairs
        steps, dues = self._steps_and_dues(handoff)
        return [
            ScheduledStep(i, step, due)
            for (i, _), step, due in zip(pairs, steps, dues, strict=True)
        ]

    def _steps_and_dues(self, handoff: Handoff) -> tuple[tuple[Step, ...], list[datetime]]:
        """:meth:`schedule` as two sequences (the engine's form): steps, due times."""
        firing = self._firing(self.effective_sla(handoff))
        start = handoff.started_at
        if self.basis == "wall" and not handoff.paused_seconds:
            if start.tzinfo is not UTC:
                start = start.astimezone(UTC)  # elapsed time, whatever the start's zone
            return firing.steps, [start + offset for offset in firing.offsets]
        after, basis = self._after, self.basis
        paused = (handoff.paused_seconds, handoff.paused_business_seconds)
        return firing.steps, [after(start, offset, basis, *paused) for offset in firing.offsets]

    def timers(
        self,
        started_at: datetime,
        sla_minutes: float,
        *,
        paused_seconds: float = 0.0,
        paused_business_seconds: float = 0.0,
        stage: int = 0,
    ) -> tuple[datetime, datetime, datetime, datetime | None]:
        """``(deadline, wall_deadline, business_deadline, due_at_stage)`` in UTC, pauses included.

        ``due_at_stage`` is when the step at ``stage`` (in firing order) is due,
        ``None`` past the last step. Takes plain values so a record can be
        scheduled before it is built (bulk ingest) as well as after a resume.
        """
        sla = _minutes(sla_minutes)
        paused = (paused_seconds, paused_business_seconds)
        wall = self._after(started_at, sla, "wall", *paused).astimezone(UTC)
        business = self._after(started_at, sla, "business", *paused).astimezone(UTC)
        order = self._firing(sla).pairs
        due = (
            self._after(started_at, order[stage][1], self.basis, *paused).astimezone(UTC)
            if stage < len(order)
            else None
        )
        return (wall if self.basis == "wall" else business), wall, business, due

    def message_for(
        self,
        step: Step,
        handoff: Handoff,
        *,
        recipient: str,
        values: Mapping[str, Any] | None = None,
        action: str = "",
        now: datetime | None = None,
    ) -> str:
        """The text of a notification for ``step``.

        :param values: the template names to use, e.g. precomputed
            :func:`template_values` of ``handoff``. When ``None`` they are
            computed from the record as the template reads them.
        :param action: the action asking for it (``{action}``), e.g. ``notify:owner``.
        :param now: the step's time (``{elapsed_minutes}`` is the clock's run up to it).
        """
        if values is None:
            template = self._template_for(step, handoff)
            fast = _renderer(template)
            if fast is not None:
                try:
                    text = fast(self, handoff, step.at, recipient, action, now)
                except _RENDER_ERRORS:
                    text = template
                return text if step.message is not None else text.rstrip()
            values = TemplateValues(self, handoff, step=step.at, now=now)
        if isinstance(values, TemplateValues):
            # Rendered at once, so sharing the cache is safe.
            values["recipient"] = recipient
            if action:
                values["action"] = action
        else:
            values = {**values, "recipient": recipient}
        if step.message is not None:
            return render(step.message, values)
        # The link goes last with no full stop after it, so it stays clickable.
        return render(self._template_for(step, handoff), values).rstrip()

    def _template_for(self, step: Step, handoff: Handoff) -> str:
        """The step's own message, else the default for when it fires."""
        if step.message is not None:
            return step.message
        sla = self.effective_sla(handoff)
        if step.offset_for(sla) < sla:
            return DEFAULT_MESSAGES["before"]
        if step._reassigns and handoff.backup_owner:
            return DEFAULT_MESSAGES["reassigned"]
        return DEFAULT_MESSAGES["at"]


_HANDOFF_FIELDS = tuple(a.name for a in attrs.fields(Handoff))


def _template_value(policy: Policy, handoff: Handoff, key: str, values: TemplateValues) -> Any:
    if key in _PLAIN_FIELD_SET:
        return getattr(handoff, key)
    if key == "attributes":
        return dict(handoff.attributes)
    if key == "sla_minutes":
        return _sla_minutes(policy, handoff)
    if key == "status":
        return handoff.status
    if key == "deadline":
        return _deadline(handoff)
    if key == "remaining_minutes":
        return _remaining_minutes(handoff)
    if key == "elapsed_minutes":
        return _elapsed_minutes(policy, handoff, values.now)
    if key == "link":
        return _render_link(policy, values)
    if key in _HANDOFF_FIELD_SET:
        return getattr(handoff, key)
    raise KeyError(key)


class TemplateValues(dict[str, Any]):
    """The names a template can use, each computed the first time it is read.

    A message names a handful of the record's fields; computing only those
    keeps notification text cheap. Unknown names render as written.

    :param step: the step's label (``{step}``).
    :param recipient: who the text is for (``{recipient}``).
    :param action: the action asking for it (``{action}``), e.g. ``notify:owner``.
    :param now: the step's time; ``{elapsed_minutes}`` is empty without it.
    """

    def __init__(
        self,
        policy: Policy,
        handoff: Handoff,
        *,
        step: str = "",
        recipient: str = "",
        action: str = "",
        now: datetime | None = None,
    ):
        super().__init__(step=step, recipient=recipient, action=action)
        self.policy = policy
        self.handoff = handoff
        self.now = now

    def __missing__(self, key: str) -> Any:
        try:
            value = _template_value(self.policy, self.handoff, key, self)
        except KeyError:
            return "{" + key + "}"
        self[key] = value
        return value


def template_values(
    policy: Policy,
    handoff: Handoff,
    *,
    step: str = "",
    recipient: str = "",
    action: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every name a message or link template can use, as a plain dict."""
    lazy = TemplateValues(policy, handoff, step=step, recipient=recipient, action=action, now=now)
    return {key: lazy[key] for key in (*_HANDOFF_FIELDS, *_TEMPLATE_EXTRAS)}


_HANDOFF_FIELD_SET = frozenset(_HANDOFF_FIELDS)
# The fields a template shows as they are (the rest have a rule above).
_PLAIN_FIELD_SET = _HANDOFF_FIELD_SET - {"attributes", "sla_minutes"}
_TEMPLATE_EXTRAS = (
    "attributes",
    "sla_minutes",
    "step",
    "recipient",
    "status",
    "deadline",
    "remaining_minutes",
    "elapsed_minutes",
    "action",
    "link",
)


def _parse_date(field: str, value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{field} must be a date (YYYY-MM-DD), got {value!r}", field=field)


ActionFactory = Callable[..., Action]
