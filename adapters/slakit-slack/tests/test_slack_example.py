"""The speed-to-lead example (Slack DMs plus an n8n webhook) runs against local peers."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import slakit
from slack_api_peer import TOKEN, SlackAPIPeer
from slack_helpers import DANA, LEE
from slakit.adapters.memory import MemoryStore
from slakit.plugins import Plugins
from slakit.preflight import preflight_engine
from slakit.testing.peers import PeerRequestHandler, serve_http

EXAMPLE = Path(__file__).parents[3] / "examples" / "speed-to-lead-slack-n8n" / "slakit.toml"


@contextmanager
def collecting_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook endpoint on 127.0.0.1 that keeps every request and answers 204."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(PeerRequestHandler):
        def do_POST(self) -> None:
            received.append(({k.lower(): v for k, v in self.headers.items()}, self.read_body()))
            self.reply(204)

    with serve_http(Handler) as served:
        yield f"{served.url}/webhook/slakit-speed-to-lead", received


class TestSpeedToLeadExample:
    def test_a_breached_lead_reaches_slack_and_n8n(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """1x DMs the owner; 2x marks, reassigns and DMs both; n8n gets every step, signed."""
        pytest.importorskip("slakit_webhook")
        standardwebhooks = pytest.importorskip("standardwebhooks.webhooks")
        from slakit_webhook import generate_secret

        secret = generate_secret()
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("SLAKIT_WEBHOOK_SECRET", secret)
        monkeypatch.setenv("N8N_HOOK_TOKEN", "n8n-header-token")
        config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
        peer = SlackAPIPeer(users={"dana@example.com": DANA, "lee.w@example.org": LEE})
        with peer.running(), collecting_receiver() as (url, received):
            slack_table, hook_table = config["notifiers"]
            slack_table["base_url"] = peer.url
            hook_table["url"] = url
            # Monday 2 March 2026, 10:00 in New York: inside business hours.
            start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
            clock = slakit.ManualClock(start)
            engine = slakit.Engine.from_config(
                config,
                clock=clock,
                plugins=Plugins(slakit.get_plugin_manager(autoload=True)),
                store=MemoryStore(),
                trace_sinks=[],
            )
            assert [n.name for n in engine.notifiers] == ["slack", "n8n"]
            assert preflight_engine(engine).lines() == []
            engine.start("lead-42", owner="dana")

            engine.check(start + timedelta(minutes=30))
            assert engine.deliver(start + timedelta(minutes=30)).sent == 2
            engine.check(start + timedelta(minutes=60))
            assert engine.deliver(start + timedelta(minutes=60)).sent == 4
            lead = engine.get("lead-42")
            assert (lead.breached, lead.owner, lead.backup_owner) == (True, "sales-lead", "dana")
            engine.close()

        channels = [m["channel"] for m in peer.messages]
        assert channels == [peer.dms[DANA], peer.dms[LEE], peer.dms[DANA]]
        assert [c.args["email"] for c in peer.calls_to("users.lookupByEmail")] == [
            "lee.w@example.org"
        ]

        verifier = standardwebhooks.Webhook(secret)
        payloads = [verifier.verify(body, headers) for headers, body in received]
        assert all(h["x-slakit-token"] == "n8n-header-token" for h, _ in received)
        assert [(p["data"]["step"], p["data"]["recipient"]) for p in payloads] == [
            ("1x", "dana"),
            ("2x", "sales-lead"),
            ("2x", "dana"),
        ]
        assert len({h["webhook-id"] for h, _ in received}) == 3
