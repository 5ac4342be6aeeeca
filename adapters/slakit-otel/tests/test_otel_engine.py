"""The otel sink inside the engine: found by name, and every trace line in the handoff's trace."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

import slakit
from otel_helpers import ScriptedNotifier, Spans, attributes, permanent, transient
from slakit.errors import UnknownAdapterError
from slakit.plugins import Plugins
from slakit.records import OutboxState
from slakit.testing.notifiers import engine_with
from slakit_otel import OTelTraceSink, otel_trace_id

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def engine_for(spans: Spans, notifier: ScriptedNotifier) -> slakit.Engine:
    return engine_with(
        notifier,
        policy=slakit.Policy.default(basis="wall"),
        clock=slakit.ManualClock(T0),
        trace_sinks=[OTelTraceSink(tracer_provider=spans.provider)],
        rng=random.Random(11),
    )


def deliver_until_settled(engine: slakit.Engine, now: datetime, rounds: int = 10) -> datetime:
    """Deliver, jumping the clock to each retry time, until no row is pending."""
    for _ in range(rounds):
        engine.deliver(now)
        pending = engine.store.outbox(state=OutboxState.PENDING)
        if not pending:
            return now
        now = min(i.next_attempt_at for i in pending if i.next_attempt_at is not None)
    raise AssertionError("outbox did not settle")


class TestFromConfig:
    def test_otel_is_found_by_name(self, spans: Spans) -> None:
        """An installed slakit-otel provides the trace sink named in config."""
        engine = slakit.Engine.from_config(
            {
                "policies": {"p": {"basis": "wall"}},
                "trace_sinks": [{"adapter": "otel", "tracer_provider": spans.provider}],
            },
            clock=slakit.ManualClock(T0),
        )
        with engine:
            [sink] = engine.trace_sinks
            assert isinstance(sink, OTelTraceSink)
            assert sink.name == "otel"
            h = engine.start("lead-1", owner="alice")
        [span] = spans.in_trace(int(h.trace_id, 16))
        assert span.name == "slakit start"
        assert [e.name for e in span.events] == ["start"]

    def test_absent_adapter_lists_the_installed_ones(self) -> None:
        """Without the plugin loaded, asking for otel names the trace sinks that exist."""
        plugins = Plugins(slakit.get_plugin_manager(autoload=False))
        with pytest.raises(UnknownAdapterError) as info:
            slakit.Engine.from_config(
                {"policies": {"p": {"basis": "wall"}}, "trace_sinks": [{"adapter": "otel"}]},
                plugins=plugins,
            )
        message = str(info.value)
        assert "\n" not in message
        assert "'otel'" in message
        assert "jsonl" in message
        assert "logging" in message
        assert "otel" not in info.value.installed


class TestOTelTraceSinkInEngine:
    def test_retries_then_sent_are_span_events_in_the_handoffs_trace(self, spans: Spans) -> None:
        """Two transient failures and a success show up as retry, retry, sent events."""
        notifier = ScriptedNotifier([transient(), transient()])
        engine = engine_for(spans, notifier)
        h = engine.start("lead-1", owner="alice")
        now = T0 + timedelta(minutes=30)
        engine.check(now)
        deliver_until_settled(engine, now)
        assert len(notifier.sent) == 1
        trace_id = int(h.trace_id, 16)
        delivered = [
            attributes(e)
            for _, e in spans.events(trace_id)
            if attributes(e)["slakit.actor"] == "notifier:scripted"
        ]
        assert [a["slakit.outcome"] for a in delivered] == ["retry", "retry", "sent"]
        assert [a["slakit.detail.attempt"] for a in delivered] == [1, 2, 3]
        for a in delivered:
            assert a["slakit.handoff_id"] == "lead-1"
            assert a["slakit.policy"] == "default"
            assert a["slakit.rule"] == "step:1x"
            assert a["slakit.action"] == "notify:owner"
            assert a["slakit.detail.idempotency_key"] == "lead-1:0:notify:owner:alice"
        assert "451 busy" in str(delivered[0]["slakit.detail.error"])

    def test_dead_letter_is_an_error_span_in_the_handoffs_trace(self, spans: Spans) -> None:
        """A permanent failure is one dead event on a span with ERROR status."""
        engine = engine_for(spans, ScriptedNotifier([permanent()]))
        h = engine.start("lead-1", owner="alice")
        now = T0 + timedelta(minutes=30)
        engine.check(now)
        assert engine.deliver(now).dead == 1
        [dead_span] = [
            s
            for s in spans.in_trace(int(h.trace_id, 16))
            if any(attributes(e)["slakit.outcome"] == "dead" for e in s.events)
        ]
        assert attributes(dead_span)["slakit.outcome"] == "dead"
        assert dead_span.status.status_code.name == "ERROR"

    def test_every_stored_trace_line_is_an_event(self, spans: Spans) -> None:
        """All of a handoff's trace rows (start, steps, deliveries) arrive as span events."""
        engine = engine_for(spans, ScriptedNotifier([transient()]))
        h = engine.start("lead-1", owner="alice", backup_owner="bob")
        now = T0 + timedelta(minutes=30)
        engine.check(now)
        now = deliver_until_settled(engine, now)
        engine.check(T0 + timedelta(minutes=60))
        deliver_until_settled(engine, T0 + timedelta(minutes=60))
        stored = engine.store.traces("lead-1")
        events = [attributes(e) for _, e in spans.events(int(h.trace_id, 16))]
        assert [(e["slakit.rule"], e["slakit.action"], e["slakit.outcome"]) for e in events] == [
            (t.rule, t.action, t.outcome) for t in stored
        ]
        assert spans.finished() == spans.in_trace(int(h.trace_id, 16))

    def test_non_w3c_trace_id_from_the_caller(self, spans: Spans) -> None:
        """A caller's own trace id that is not W3C still groups the handoff in one trace."""
        engine = engine_for(spans, ScriptedNotifier([]))
        engine.start("lead-1", owner="alice", trace_id="crm-request-42")
        now = T0 + timedelta(minutes=30)
        engine.check(now)
        engine.deliver(now)
        derived = spans.in_trace(otel_trace_id("crm-request-42"))
        assert len(derived) == len(spans.finished()) == 3
        assert {attributes(s)["slakit.trace_id"] for s in derived} == {"crm-request-42"}
