"""The webhook notifier under the engine's outbox: backoff, dead letters, traces, dedup."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

import pytest

from slakit import Engine, ManualClock
from slakit.adapters.memory import MemoryStore
from slakit.records import OutboxState, TraceRecord
from slakit.testing.notifiers import SAMPLE_START, CrashAfterSendStore, engine_with
from slakit_webhook.notifier import WebhookNotifier
from webhook_receiver import SECRET, Answer, WebhookReceiver


def make_engine(
    receiver: WebhookReceiver, clock: ManualClock, store: MemoryStore | None = None
) -> Engine:
    notifier = WebhookNotifier(receiver.url, secret=SECRET)
    return engine_with(notifier, clock=clock, store=store, backoff_base=30.0, rng=random.Random(3))


def delivery_outcomes(traces: Sequence[TraceRecord]) -> list[str]:
    return [t.outcome for t in traces if t.actor == "notifier:webhook"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SAMPLE_START)


class TestWebhookWithEngine:
    def test_three_server_errors_then_delivered_once(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """Each 503 is retried after the engine's capped exponential backoff; one handling."""
        engine = make_engine(receiver, clock)
        engine.start("lead-1", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        receiver.script(Answer(503), Answer(503), Answer(503))
        # An engine with the same seed draws the same jitter: the exact waits.
        twin = Engine(backoff_base=30.0, rng=random.Random(3))
        expected = [twin.backoff(attempt) for attempt in (1, 2, 3)]

        for attempt in (1, 2, 3):
            assert engine.deliver(now).retried == 1
            [row] = engine.store.outbox()
            assert row.attempts == attempt
            assert row.next_attempt_at == now + timedelta(seconds=expected[attempt - 1])
            # Equal jitter: between half and all of base * 2**(attempt - 1).
            full = 30.0 * 2 ** (attempt - 1)
            assert full / 2 <= expected[attempt - 1] <= full
            # Not a moment early.
            assert engine.deliver(row.next_attempt_at - timedelta(seconds=1)).retried == 0
            now = row.next_attempt_at

        assert engine.deliver(now).sent == 1
        [row] = engine.store.outbox()
        assert (row.state, row.attempts) == (OutboxState.SENT, 4)
        assert receiver.outcomes() == ["failed", "failed", "failed", "handled"]
        assert len(receiver.handled) == 1
        assert delivery_outcomes(engine.store.traces("lead-1")) == [
            "retry",
            "retry",
            "retry",
            "sent",
        ]

    def test_a_429_waits_at_least_its_retry_after(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """The receiver's Retry-After is a floor under the backoff."""
        engine = make_engine(receiver, clock)
        engine.start("lead-2", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        receiver.script(Answer(429, {"Retry-After": "600"}))
        assert engine.deliver(now).retried == 1
        [row] = engine.store.outbox()
        assert row.next_attempt_at == now + timedelta(seconds=600)
        assert engine.deliver(now + timedelta(seconds=599)).sent == 0
        assert engine.deliver(now + timedelta(seconds=600)).sent == 1

    def test_a_gone_endpoint_dead_letters_at_once(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """410 is permanent: one attempt, the row is dead and the trace says so."""
        engine = make_engine(receiver, clock)
        engine.start("lead-3", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        receiver.script(Answer(410, body="workflow deleted"))

        result = engine.deliver(now)
        assert (result.sent, result.retried, result.dead) == (0, 0, 1)
        [row] = engine.store.outbox()
        assert row.state == OutboxState.DEAD
        assert "HTTP 410: workflow deleted" in (row.last_error or "")
        [trace] = [t for t in engine.store.traces("lead-3") if t.actor == "notifier:webhook"]
        assert (trace.outcome, trace.detail["attempt"]) == ("dead", 1)
        assert engine.deliver(now + timedelta(days=1)).dead == 0
        assert len(receiver.deliveries) == 1

    def test_transient_failures_dead_letter_when_attempts_run_out(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """With max_attempts = 2, a second 502 dead-letters the row."""
        engine = make_engine(receiver, clock)
        engine.max_attempts = 2
        engine.start("lead-4", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        receiver.script(Answer(502), Answer(502))
        assert engine.deliver(now).retried == 1
        assert engine.deliver(now + timedelta(hours=1)).dead == 1
        assert delivery_outcomes(engine.store.traces("lead-4")) == ["retry", "dead"]


class TestWebhookRedelivery:
    def test_a_receiver_dedupes_a_redelivery_after_a_crash(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """Send, crash before recording, send again: same webhook-id, handled once."""
        engine = make_engine(receiver, clock, CrashAfterSendStore())
        engine.start("lead-5", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        with pytest.raises(RuntimeError, match="killed"):
            engine.deliver(now)
        [row] = engine.store.outbox()
        assert row.state == OutboxState.PENDING

        # The crashed worker's lease runs out; the row is claimed and sent again.
        assert engine.deliver(now + timedelta(seconds=engine.outbox_lease + 1)).sent == 1
        ids = [d.headers["webhook-id"] for d in receiver.deliveries]
        assert ids == ["lead-5:0:notify:owner:dana"] * 2
        assert receiver.outcomes() == ["handled", "duplicate"]
        assert list(receiver.handled) == ["lead-5:0:notify:owner:dana"]

    def test_a_replayed_notification_is_deduped(
        self, receiver: WebhookReceiver, clock: ManualClock
    ) -> None:
        """Replaying a sent outbox row by hand reaches the receiver as a known webhook-id."""
        engine = make_engine(receiver, clock)
        engine.start("lead-6", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        assert engine.deliver(now).sent == 1
        [row] = engine.store.outbox(state=OutboxState.SENT)
        engine.notifiers[0].send(row.notification)
        assert receiver.outcomes() == ["handled", "duplicate"]
