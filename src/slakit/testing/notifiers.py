"""Sample data and engine scaffolding for testing a notifier.

A notifier is tested twice: on its own, by handing :func:`sample_notification`
to ``send``; and under the engine's outbox, through :func:`engine_with`, with
:class:`CrashAfterSendStore` standing in for a process killed between a send
and its record. The sample is exactly what :func:`engine_with`'s engine asks
its notifier to send for ``lead-1`` at step ``1x``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from slakit.abc import Notifier, RecordStore
from slakit.adapters.memory import MemoryStore
from slakit.clock import Clock, ManualClock
from slakit.engine import Engine
from slakit.handoff import Handoff
from slakit.policy import Policy
from slakit.records import Notification, OutboxItem

__all__ = [
    "SAMPLE_START",
    "SAMPLE_TRACE_ID",
    "CrashAfterSendStore",
    "engine_with",
    "sample_notification",
    "sample_policy",
]

#: When the sample handoff ``lead-1`` starts: Monday 2026-03-02 09:00 UTC.
SAMPLE_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: The sample handoff's W3C trace id.
SAMPLE_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def sample_policy() -> Policy:
    """``speed-to-lead``: 30 wall minutes, a CRM link, one step (``1x`` notifies the owner)."""
    return Policy.from_config(
        {
            "basis": "wall",
            "sla_minutes": 30,
            "link": "https://crm.example.com/leads/{id}",
            "steps": [{"at": "1x", "do": ["notify:owner"]}],
        },
        name="speed-to-lead",
    )


def sample_notification(**changes: Any) -> Notification:
    """The ``notify:owner`` notification for owner ``dana`` of handoff ``lead-1`` at step ``1x``.

    It is what :func:`sample_policy` builds at :data:`SAMPLE_START` + 30 minutes
    for ``engine.start("lead-1", owner="dana", channel="web",
    trace_id=SAMPLE_TRACE_ID)``, routed to a notifier named ``console``. The
    payload is the engine's: ``handoff`` (the record as JSON, as the step left
    it), ``step``, ``stage`` and ``link``. Each call builds a fresh copy.

    :param changes: fields to replace, as for :func:`attrs.evolve`.
    :returns: the notification.
    :raises TypeError: for a name :class:`~slakit.records.Notification` has no field for.
    """
    deadline = SAMPLE_START + timedelta(minutes=30)
    handoff = Handoff(
        id="lead-1",
        policy="speed-to-lead",
        started_at=SAMPLE_START,
        owner="dana",
        sla_minutes=30,
        trace_id=SAMPLE_TRACE_ID,
        within_business_hours=True,
        channel="web",
        stage=1,
        deadline_at=deadline,
        wall_deadline_at=deadline,
        business_deadline_at=deadline,
        ingested_at=SAMPLE_START,
        version=2,
    )
    link = "https://crm.example.com/leads/lead-1"
    notification = Notification(
        idempotency_key="lead-1:0:notify:owner:dana",
        notifier="console",
        recipient="dana",
        handoff_id="lead-1",
        stage=0,
        step="1x",
        action="notify:owner",
        subject="[speed-to-lead] lead-1: step 1x",
        text=(
            "speed-to-lead: lead-1 passed its 30-minute SLA with no response "
            f"(owner dana, step 1x). {link}"
        ),
        trace_id=SAMPLE_TRACE_ID,
        policy="speed-to-lead",
        created_at=deadline,
        payload={"handoff": handoff.to_dict(), "step": "1x", "stage": 0, "link": link},
    )
    return attrs.evolve(notification, **changes) if changes else notification


class CrashAfterSendStore(MemoryStore):
    """A memory store whose first outbox completions raise, as a process killed
    between a notifier's send and the record of it would.

    The row stays pending under the dead worker's lease; once
    ``Engine.outbox_lease`` has passed, a later ``deliver`` sends it again
    with the same idempotency key.

    :param crashes: how many completions fail (``RuntimeError``) before the
        store completes rows as usual.
    """

    def __init__(self, crashes: int = 1) -> None:
        super().__init__()
        self.crashes = crashes

    def complete_outbox(self, item: OutboxItem, **outcome: Any) -> bool:
        """Raise ``RuntimeError`` while crashes are left; then complete as :class:`MemoryStore`.

        :param outcome: :meth:`~slakit.abc.RecordStore.complete_outbox`'s keyword arguments.
        :raises RuntimeError: while crashes are left, the row untouched.
        """
        if self.crashes > 0:
            self.crashes -= 1
            raise RuntimeError("process killed between send and record")
        return super().complete_outbox(item, **outcome)


def engine_with(
    notifier: Notifier,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    store: RecordStore | None = None,
    **options: Any,
) -> Engine:
    """An engine that routes every notification to ``notifier``.

    :param notifier: the notifier under test.
    :param policy: the one policy; :func:`sample_policy` by default.
    :param clock: a :class:`~slakit.ManualClock` at :data:`SAMPLE_START` by default.
    :param store: a fresh :class:`~slakit.adapters.memory.MemoryStore` by default.
    :param options: further :class:`~slakit.Engine` arguments (``trace_sinks``,
        ``max_attempts``, ``rng``…); ``rng`` defaults to ``random.Random(0)`` so
        backoff jitter is the same on every run.
    :returns: the engine.
    """
    options.setdefault("rng", random.Random(0))
    return Engine(
        store=store if store is not None else MemoryStore(),
        policies=[policy if policy is not None else sample_policy()],
        notifiers=[notifier],
        clock=clock if clock is not None else ManualClock(SAMPLE_START),
        **options,
    )
