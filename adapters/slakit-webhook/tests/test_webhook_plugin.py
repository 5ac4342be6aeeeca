"""The ``webhook`` adapter is found by name through the ``slakit`` entry-point group."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import pytest

import slakit
from slakit.errors import ConfigError, UnknownAdapterError
from slakit.plugins import Plugins
from slakit_webhook.notifier import WebhookNotifier
from webhook_receiver import SECRET, WebhookReceiver


def config(url: str, **notifier: Any) -> dict[str, Any]:
    table = {"adapter": "webhook", "url": url, "secret": SECRET, **notifier}
    return {"policies": {"p": {"basis": "wall", "sla_minutes": 5}}, "notifiers": [table]}


def autoloading() -> Plugins:
    return Plugins(slakit.get_plugin_manager(autoload=True))


class TestWebhookPlugin:
    def test_the_entry_point_is_installed(self) -> None:
        """The distribution declares ``webhook`` in the ``slakit`` entry-point group."""
        [ep] = [ep for ep in entry_points(group="slakit") if ep.name == "webhook"]
        assert ep.value == "slakit_webhook.plugin"

    def test_found_by_name_from_config(self, receiver: WebhookReceiver) -> None:
        """``adapter = "webhook"`` builds a WebhookNotifier; ``name`` routes it."""
        engine = slakit.Engine.from_config(
            config(receiver.url, name="n8n", timeout=3), plugins=autoloading()
        )
        [notifier] = engine.notifiers
        assert isinstance(notifier, WebhookNotifier)
        assert (notifier.name, notifier.url, notifier.timeout) == ("n8n", receiver.url, 3.0)
        assert notifier.signed
        engine.close()

    def test_an_engine_from_config_delivers_a_signed_step(self, receiver: WebhookReceiver) -> None:
        """Config to receiver, end to end: the step arrives verified, once."""
        clock = slakit.ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        engine = slakit.Engine.from_config(config(receiver.url), plugins=autoloading(), clock=clock)
        engine.start("lead-1", owner="dana")
        clock.advance(minutes=5)
        engine.check()
        assert engine.deliver().sent == 1
        assert receiver.outcomes() == ["handled"]
        [payload] = receiver.handled.values()
        assert payload["data"]["recipient"] == "dana"
        engine.close()

    def test_absent_it_is_an_unknown_adapter_listing_the_installed_ones(self) -> None:
        """Without entry points, ``webhook`` is unknown; the one-line error lists what is there."""
        plugins = Plugins(slakit.get_plugin_manager(autoload=False))
        with pytest.raises(UnknownAdapterError) as info:
            slakit.Engine.from_config(config("https://example.com/hook"), plugins=plugins)
        message = str(info.value)
        assert "\n" not in message
        assert "'webhook'" in message
        assert message.endswith(f"installed: {', '.join(sorted(plugins.notifiers()))}")
        assert "console" in plugins.notifiers()

    def test_an_unknown_option_is_a_config_error(self) -> None:
        """A misspelled key in the table fails when the engine is built."""
        with pytest.raises(ConfigError, match="webhook"):
            slakit.Engine.from_config(
                config("https://example.com/hook", secrets="x"), plugins=autoloading()
            )

    def test_the_plugin_module_does_not_import_httpx(self) -> None:
        """Loading plugins stays cheap: httpx is imported only when a notifier is built."""
        code = (
            "import sys, slakit\n"
            "from slakit.plugins import Plugins\n"
            "p = Plugins(slakit.get_plugin_manager(autoload=True))\n"
            "assert 'webhook' in p.notifiers()\n"
            "print('httpx' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == "False"
