"""Preflight: does every policy answer the five decisions, and can its steps run?

Checks, each reported as one line naming the policy:

* **decisions**: the policy states its ``trigger``, ``target``, ``timer``,
  ``trace`` and ``consequence`` (text in its config table);
* **targets**: every ``notify:``/``reassign:`` target resolves: ``owner`` on
  every stored handoff of the policy, ``backup`` on the policy
  (``backup_owner``) or on every stored handoff; ``@handle`` always resolves;
* **calendar**: the policy's calendar has open time (``add`` does not raise
  :class:`~slakit.errors.CalendarClosedError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from slakit._time import ensure_aware
from slakit.errors import CalendarClosedError, SlakitError
from slakit.policy import PREFLIGHT_FIELDS

if TYPE_CHECKING:
    from slakit.abc import RecordStore
    from slakit.engine import Engine
    from slakit.handoff import Handoff
    from slakit.policy import Policy

__all__ = ["Gap", "PreflightReport", "preflight", "preflight_engine"]

#: What each of the five decisions asks, for the gap message.
QUESTIONS: Final = {
    "trigger": "what starts the clock",
    "target": "who must act, and by when",
    "timer": "how long they have, on which calendar",
    "trace": "where every step is recorded",
    "consequence": "what happens when time runs out",
}


@attrs.frozen
class Gap:
    """One thing a policy is missing.

    :ivar check: ``decision``, ``target`` or ``calendar``.
    :ivar field: the decision or action concerned (``trigger``, ``notify:backup``…).
    """

    policy: str
    check: str
    field: str
    message: str

    @property
    def line(self) -> str:
        """``policy: field: message``, the line ``slakit preflight`` prints."""
        return f"{self.policy}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "policy": self.policy,
            "check": self.check,
            "field": self.field,
            "message": self.message,
        }


@attrs.frozen
class PreflightReport:
    """Every gap found, in policy order."""

    policies: tuple[str, ...]
    gaps: tuple[Gap, ...]

    @property
    def ok(self) -> bool:
        """No gap at all."""
        return not self.gaps

    def lines(self) -> list[str]:
        """One line per gap (empty when clean)."""
        return [g.line for g in self.gaps]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what ``slakit preflight --json`` prints)."""
        return {
            "ok": self.ok,
            "policies": list(self.policies),
            "gaps": [g.to_dict() for g in self.gaps],
        }


@attrs.define
class _People:
    handoffs: int = 0
    no_owner: int = 0
    no_backup: int = 0


def _scan(handoffs: Iterable[Handoff]) -> dict[str, _People]:
    seen: dict[str, _People] = {}
    for h in handoffs:
        p = seen.setdefault(h.policy, _People())
        p.handoffs += 1
        p.no_owner += not h.owner
        p.no_backup += not h.backup_owner
    return seen


def preflight(
    policies: Mapping[str, Policy],
    *,
    store: RecordStore | None = None,
    now: datetime | None = None,
) -> PreflightReport:
    """Check every policy; see the module docstring for the checks.

    :param policies: the configured policies.
    :param store: where to look for owners and backups on stored handoffs;
        without one, a ``backup`` target needs the policy's ``backup_owner``.
    :param now: where the calendar check starts (default: the system time).
    :returns: the report; :attr:`PreflightReport.ok` when there is no gap.
    """
    when = ensure_aware("now", now) if now is not None else datetime.now(UTC)
    people = _scan(store.iter_handoffs()) if store is not None else {}
    gaps: list[Gap] = []
    for name in sorted(policies):
        pol = policies[name]
        gaps += _decisions(pol)
        gaps += _targets(pol, people.get(name, _People()))
        gaps += _calendar(pol, when)
    return PreflightReport(tuple(sorted(policies)), tuple(gaps))


def preflight_engine(engine: Engine, *, now: datetime | None = None) -> PreflightReport:
    """:func:`preflight` with an engine's policies and store."""
    return preflight(
        engine.policies,
        store=engine.setup().store,
        now=now if now is not None else engine.clock.now(),
    )


def _decisions(pol: Policy) -> list[Gap]:
    out = []
    for field in PREFLIGHT_FIELDS:
        text = pol.preflight.get(field)
        if not isinstance(text, str) or not text.strip():
            out.append(
                Gap(
                    pol.name,
                    "decision",
                    field,
                    f"not answered: say {QUESTIONS[field]} "
                    f'({field} = "..." in [policies.{pol.name}])',
                )
            )
    return out


def _targets(pol: Policy, people: _People) -> list[Gap]:
    owner_steps: dict[str, list[str]] = {}
    backup_steps: dict[str, list[str]] = {}
    for step in pol.steps:
        for action in step.actions:
            if action.name not in ("notify", "reassign"):
                continue
            if action.arg == "owner":
                owner_steps.setdefault(action.raw, []).append(step.at)
            elif action.arg == "backup":
                backup_steps.setdefault(action.raw, []).append(step.at)
    out: list[Gap] = []
    if owner_steps and people.no_owner:
        out.append(
            Gap(
                pol.name,
                "target",
                ", ".join(owner_steps),
                f"{people.no_owner} of {people.handoffs} stored handoffs have no owner "
                f"(steps {', '.join(_labels(owner_steps))})",
            )
        )
    if backup_steps and not pol.backup_owner:
        where = f"steps {', '.join(_labels(backup_steps))}"
        if people.handoffs == 0:
            message = (
                f"no backup owner: the policy sets no backup_owner and no stored handoff "
                f"carries one ({where})"
            )
        elif people.no_backup:
            message = (
                f"{people.no_backup} of {people.handoffs} stored handoffs have no backup_owner "
                f"and the policy sets none ({where})"
            )
        else:
            return out
        out.append(Gap(pol.name, "target", ", ".join(backup_steps), message))
    return out


def _labels(steps: Mapping[str, list[str]]) -> list[str]:
    seen: list[str] = []
    for labels in steps.values():
        seen += [lbl for lbl in labels if lbl not in seen]
    return seen


def _calendar(pol: Policy, now: datetime) -> list[Gap]:
    label = pol.calendar_name or "the policy's calendar"
    sla = timedelta(minutes=pol.sla_minutes)
    horizon = max((s.offset_for(sla) for s in pol.steps), default=sla)
    try:
        pol.calendar.add(now, max(horizon, sla))
    except CalendarClosedError as exc:
        return [Gap(pol.name, "calendar", "calendar", f"calendar {label} has no open time: {exc}")]
    except SlakitError as exc:
        return [Gap(pol.name, "calendar", "calendar", f"calendar {label} cannot be used: {exc}")]
    return []
