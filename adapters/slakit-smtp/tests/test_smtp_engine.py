"""The smtp notifier inside the engine: found by name, retried, dead-lettered, traced."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import slakit
from slakit.errors import UnknownAdapterError
from slakit.plugins import Plugins
from slakit.records import OutboxState
from slakit.testing.notifiers import engine_with
from slakit_smtp import SMTPNotifier, message_id_for
from smtp_peers import Peer, ScriptedHandler

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def engine_for(peer: Peer, **kwargs: Any) -> slakit.Engine:
    notifier = SMTPNotifier(
        host=peer.host,
        port=peer.port,
        sender="sla@example.com",
        default_domain="example.com",
        timeout=5,
    )
    return engine_with(
        notifier,
        policy=slakit.Policy.default(basis="wall"),
        clock=slakit.ManualClock(T0),
        rng=random.Random(7),
        **kwargs,
    )


def delivery_traces(engine: slakit.Engine, handoff_id: str) -> list[slakit.TraceRecord]:
    return [t for t in engine.store.traces(handoff_id) if t.actor.startswith("notifier:")]


class TestFromConfig:
    def test_smtp_is_found_by_name(self, smtp_peer: Callable[..., Peer]) -> None:
        """An installed slakit-smtp provides the notifier named in config, and it delivers."""
        peer = smtp_peer()
        engine = slakit.Engine.from_config(
            {
                "policies": {"p": {"basis": "wall"}},
                "notifiers": [
                    {
                        "adapter": "smtp",
                        "host": "127.0.0.1",
                        "port": peer.port,
                        "from": "sla@example.com",
                        "default_domain": "example.com",
                    }
                ],
            },
            clock=slakit.ManualClock(T0),
        )
        with engine:
            [notifier] = engine.notifiers
            assert isinstance(notifier, SMTPNotifier)
            assert notifier.name == "smtp"
            engine.start("lead-1", owner="alice")
            engine.check(T0 + timedelta(minutes=30))
            assert engine.deliver(T0 + timedelta(minutes=30)).sent == 1
        [got] = peer.handler.received
        assert got.rcpt_tos == ("alice@example.com",)
        assert got.message["Message-ID"] == message_id_for("lead-1:0:notify:owner:alice")

    def test_absent_adapter_lists_the_installed_ones(self) -> None:
        """Without the plugin loaded, asking for smtp names the notifiers that exist."""
        plugins = Plugins(slakit.get_plugin_manager(autoload=False))
        with pytest.raises(UnknownAdapterError) as info:
            slakit.Engine.from_config(
                {
                    "policies": {"p": {"basis": "wall"}},
                    "notifiers": [{"adapter": "smtp", "from": "sla@example.com"}],
                },
                plugins=plugins,
            )
        message = str(info.value)
        assert "\n" not in message
        assert "'smtp'" in message
        assert "console" in message
        assert "smtp" not in info.value.installed


class TestSMTPNotifierInEngine:
    def test_transient_failures_are_retried_then_sent_once(
        self, smtp_peer: Callable[..., Peer]
    ) -> None:
        """Two 451 replies are retried with growing backoff; the third attempt delivers once."""
        peer = smtp_peer(ScriptedHandler(rcpt=["451 4.3.0 busy", "451 4.3.0 still busy"]))
        engine = engine_for(peer)
        h = engine.start("lead-1", owner="alice")
        now = T0 + timedelta(minutes=30)
        assert engine.check(now).count == 1
        waits: list[float] = []
        outcomes: list[tuple[int, int]] = []
        for _ in range(3):
            result = engine.deliver(now)
            outcomes.append((result.retried, result.sent))
            [item] = engine.store.outbox("lead-1")
            if item.state != OutboxState.PENDING:
                break
            assert item.next_attempt_at is not None
            # Nothing is attempted before the backoff has run out.
            early = engine.deliver(item.next_attempt_at - timedelta(seconds=1))
            assert (early.retried, early.sent) == (0, 0)
            waits.append((item.next_attempt_at - now).total_seconds())
            now = item.next_attempt_at
        assert outcomes == [(1, 0), (1, 0), (0, 1)]
        assert waits[0] < waits[1]
        assert peer.handler.rcpt_attempts == 3
        assert len(peer.handler.received) == 1
        [item] = engine.store.outbox("lead-1")
        assert (item.state, item.attempts) == (OutboxState.SENT, 3)
        traces = delivery_traces(engine, "lead-1")
        assert [t.outcome for t in traces] == ["retry", "retry", "sent"]
        assert all(t.trace_id == h.trace_id for t in traces)
        assert "451" in str(traces[0].detail["error"])
        assert [t.detail["attempt"] for t in traces] == [1, 2, 3]

    def test_permanent_failure_dead_letters_at_once(self, smtp_peer: Callable[..., Peer]) -> None:
        """A 550 reply dead-letters the notification on the first attempt."""
        peer = smtp_peer(ScriptedHandler(rcpt=["550 5.1.1 no such user"]))
        engine = engine_for(peer)
        engine.start("lead-1", owner="alice")
        now = T0 + timedelta(minutes=30)
        engine.check(now)
        result = engine.deliver(now)
        assert (result.sent, result.retried, result.dead) == (0, 0, 1)
        [item] = engine.store.outbox("lead-1")
        assert item.state == OutboxState.DEAD
        assert item.last_error is not None
        assert "550" in item.last_error
        assert engine.deliver(now + timedelta(days=1)).dead == 0
        [trace] = delivery_traces(engine, "lead-1")
        assert trace.outcome == "dead"
        assert "no such user" in str(trace.detail["error"])


class TestSMTPAndOTelTogether:
    def test_delivery_outcomes_land_in_the_handoffs_trace(
        self, smtp_peer: Callable[..., Peer]
    ) -> None:
        """With both adapters from config, retry/sent/dead lines become span events."""
        pytest.importorskip("slakit_otel")
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        handler = ScriptedHandler(rcpt=["451 4.3.0 busy", "250 OK", "550 5.1.1 no such user"])
        peer = smtp_peer(handler)
        engine = slakit.Engine.from_config(
            {
                "policies": {"p": {"basis": "wall"}},
                "notifiers": [
                    {
                        "adapter": "smtp",
                        "host": "127.0.0.1",
                        "port": peer.port,
                        "from": "sla@example.com",
                        "default_domain": "example.com",
                    }
                ],
                "trace_sinks": [{"adapter": "otel", "tracer_provider": provider}],
            },
            clock=slakit.ManualClock(T0),
            rng=random.Random(3),
        )
        with engine:
            h = engine.start("lead-1", owner="alice", backup_owner="bob")
            now = T0 + timedelta(minutes=30)
            engine.check(now)  # 1x: notify alice
            engine.deliver(now)  # 451 → retry
            now += timedelta(hours=1)
            engine.check(now)  # 2x: notify alice (now backup) and bob
            engine.deliver(now)  # alice's 1x sent; alice 2x, bob 2x: 550 dead, then sent
        outcomes = [t.outcome for t in delivery_traces(engine, "lead-1")]
        assert sorted(outcomes) == ["dead", "retry", "sent", "sent"]
        spans = [s for s in exporter.get_finished_spans() if s.context is not None]
        assert spans
        assert {s.context.trace_id for s in spans if s.context} == {int(h.trace_id, 16)}
        events = [e for s in spans for e in s.events if e.attributes is not None]
        delivered = [
            e.attributes["slakit.outcome"]
            for e in events
            if e.attributes is not None
            and str(e.attributes["slakit.actor"]).startswith("notifier:")
        ]
        assert sorted(str(o) for o in delivered) == ["dead", "retry", "sent", "sent"]
