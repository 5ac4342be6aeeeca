"""The Slack notifier under the engine's outbox: retries with backoff, dead letters, traces."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import timedelta

import pytest

from slack_api_peer import TOKEN, SlackAPIPeer, api_error, ratelimited
from slakit import Engine, ManualClock
from slakit.adapters.memory import MemoryStore
from slakit.records import OutboxState, TraceRecord
from slakit.testing.notifiers import SAMPLE_START, CrashAfterSendStore, engine_with
from slakit_slack.notifier import SlackNotifier


def make_engine(peer: SlackAPIPeer, clock: ManualClock, store: MemoryStore | None = None) -> Engine:
    notifier = SlackNotifier(token=TOKEN, base_url=peer.url, default_domain="example.com")
    return engine_with(notifier, clock=clock, store=store, backoff_base=30.0, rng=random.Random(7))


def delivery_outcomes(traces: Sequence[TraceRecord]) -> list[str]:
    return [t.outcome for t in traces if t.actor == "notifier:slack"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SAMPLE_START)


class TestSlackWithEngine:
    def test_rate_limited_twice_then_delivered_once(
        self, slack_peer: SlackAPIPeer, clock: ManualClock
    ) -> None:
        """429s are retried at the later of Retry-After and the backoff; one message lands."""
        engine = make_engine(slack_peer, clock)
        engine.start("lead-1", owner="dana")
        now = clock.advance(minutes=30)
        assert engine.check(now).count == 1
        slack_peer.script("chat.postMessage", ratelimited(45), ratelimited(45))

        assert engine.deliver(now).retried == 1
        [row] = engine.store.outbox()
        assert row.attempts == 1
        # backoff(1) is 15-30 s, so the peer's 45 s wins.
        assert row.next_attempt_at == now + timedelta(seconds=45)
        assert engine.deliver(now + timedelta(seconds=44)).retried == 0
        assert len(slack_peer.calls_to("chat.postMessage")) == 1

        now = row.next_attempt_at
        assert engine.deliver(now).retried == 1
        [row] = engine.store.outbox()
        assert row.next_attempt_at is not None
        # backoff(2) is 30-60 s; Retry-After (45 s) is a floor. A twin engine
        # with the same seed draws the same jitter.
        twin = Engine(backoff_base=30.0, rng=random.Random(7))
        _, second = twin.backoff(1, 45), twin.backoff(2, 45)
        assert 45 <= second <= 60
        assert row.next_attempt_at == now + timedelta(seconds=second)

        assert engine.deliver(row.next_attempt_at).sent == 1
        [row] = engine.store.outbox()
        assert row.state == OutboxState.SENT
        assert row.attempts == 3
        assert len(slack_peer.messages) == 1
        assert delivery_outcomes(engine.store.traces("lead-1")) == ["retry", "retry", "sent"]
        assert engine.deliver(row.next_attempt_at or now + timedelta(hours=1)).sent == 0

    def test_an_unknown_user_dead_letters_at_once(
        self, slack_peer: SlackAPIPeer, clock: ManualClock
    ) -> None:
        """users_not_found is permanent: one attempt, the row is dead, the trace says why."""
        engine = make_engine(slack_peer, clock)
        engine.start("lead-2", owner="nobody")
        now = clock.advance(minutes=30)
        engine.check(now)

        result = engine.deliver(now)
        assert (result.sent, result.retried, result.dead) == (0, 0, 1)
        [row] = engine.store.outbox()
        assert row.state == OutboxState.DEAD
        assert row.attempts == 1
        assert "users_not_found" in (row.last_error or "")
        [trace] = [t for t in engine.store.traces("lead-2") if t.actor == "notifier:slack"]
        assert trace.outcome == "dead"
        assert trace.detail["attempt"] == 1
        assert len(slack_peer.calls_to("users.lookupByEmail")) == 1
        assert engine.deliver(now + timedelta(days=1)).dead == 0

    def test_a_revoked_token_dead_letters_at_once(
        self, slack_peer: SlackAPIPeer, clock: ManualClock
    ) -> None:
        """invalid_auth from the peer ends delivery after one attempt."""
        engine = make_engine(slack_peer, clock)
        engine.start("lead-3", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        slack_peer.script("users.lookupByEmail", api_error("invalid_auth"))
        assert engine.deliver(now).dead == 1
        assert delivery_outcomes(engine.store.traces("lead-3")) == ["dead"]

    def test_a_redelivery_after_a_crash_carries_the_same_idempotency_key(
        self, slack_peer: SlackAPIPeer, clock: ManualClock
    ) -> None:
        """Slack does not dedupe, but both copies carry one key in their metadata."""
        store = CrashAfterSendStore()
        engine = make_engine(slack_peer, clock, store)
        engine.start("lead-4", owner="dana")
        now = clock.advance(minutes=30)
        engine.check(now)
        with pytest.raises(RuntimeError, match="killed"):
            engine.deliver(now)
        # The lease of the crashed worker runs out; the row is claimed and sent again.
        assert engine.deliver(now + timedelta(seconds=engine.outbox_lease + 1)).sent == 1
        keys = [m["metadata"]["event_payload"]["idempotency_key"] for m in slack_peer.messages]
        assert keys == ["lead-4:0:notify:owner:dana"] * 2
