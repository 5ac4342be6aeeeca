"""The ``slack`` adapter is found by name through the ``slakit`` entry-point group."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any

import pytest

import slakit
from slack_api_peer import TOKEN, SlackAPIPeer
from slack_helpers import DANA
from slakit.errors import ConfigError, UnknownAdapterError
from slakit.plugins import Plugins
from slakit_slack.notifier import SlackNotifier


def config(peer: SlackAPIPeer, **notifier: Any) -> dict[str, Any]:
    table = {"adapter": "slack", "token": TOKEN, "base_url": peer.url, **notifier}
    return {
        "policies": {"p": {"basis": "wall", "sla_minutes": 5}},
        "notifiers": [table],
    }


def autoloading() -> Plugins:
    return Plugins(slakit.get_plugin_manager(autoload=True))


class TestSlackPlugin:
    def test_the_entry_point_is_installed(self) -> None:
        """The distribution declares ``slack`` in the ``slakit`` entry-point group."""
        [ep] = [ep for ep in entry_points(group="slakit") if ep.name == "slack"]
        assert ep.value == "slakit_slack.plugin"

    def test_found_by_name_from_config(self, slack_peer: SlackAPIPeer) -> None:
        """``adapter = "slack"`` builds a SlackNotifier with the table's options."""
        engine = slakit.Engine.from_config(config(slack_peer), plugins=autoloading())
        [notifier] = engine.notifiers
        assert isinstance(notifier, SlackNotifier)
        assert notifier.name == "slack"
        assert notifier.base_url == slack_peer.url

    def test_an_engine_from_config_delivers_through_the_peer(
        self, slack_peer: SlackAPIPeer
    ) -> None:
        """Config to Slack DM, end to end: the owner's step lands as a message."""
        clock = slakit.ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        engine = slakit.Engine.from_config(
            config(slack_peer, name="ops-slack", users={"dana": DANA}),
            plugins=autoloading(),
            clock=clock,
        )
        assert engine.notifiers[0].name == "ops-slack"
        engine.start("lead-1", owner="dana")
        clock.advance(minutes=5)
        engine.check()
        assert engine.deliver().sent == 1
        [message] = slack_peer.messages
        assert message["metadata"]["event_payload"]["idempotency_key"].startswith("lead-1:0:")

    def test_absent_it_is_an_unknown_adapter_listing_the_installed_ones(
        self, slack_peer: SlackAPIPeer
    ) -> None:
        """Without entry points, ``slack`` is unknown; the one-line error lists what is there."""
        plugins = Plugins(slakit.get_plugin_manager(autoload=False))
        with pytest.raises(UnknownAdapterError) as info:
            slakit.Engine.from_config(config(slack_peer), plugins=plugins)
        message = str(info.value)
        assert "\n" not in message
        assert "'slack'" in message
        assert message.endswith(f"installed: {', '.join(sorted(plugins.notifiers()))}")
        assert "console" in plugins.notifiers()
        assert info.value.installed == sorted(plugins.notifiers())

    def test_an_unknown_option_is_a_config_error(self, slack_peer: SlackAPIPeer) -> None:
        """A misspelled key in the table fails when the engine is built."""
        with pytest.raises(ConfigError, match="slack"):
            slakit.Engine.from_config(config(slack_peer, chanel="#ops"), plugins=autoloading())

    def test_the_plugin_module_does_not_import_slack_sdk(self) -> None:
        """Loading plugins stays cheap: slack_sdk is imported only when a notifier is built."""
        code = (
            "import sys, slakit\n"
            "from slakit.plugins import Plugins\n"
            "p = Plugins(slakit.get_plugin_manager(autoload=True))\n"
            "assert 'slack' in p.notifiers()\n"
            "print('slack_sdk' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert out.stdout.strip() == "False"


class TestCommandsThatSendNothing:
    def test_run_without_the_token_only_the_senders_need_it(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cron job's `slakit status` has no SLACK_BOT_TOKEN: the commands that send
        nothing see the notifier by name and work; deliver still says what is missing."""
        from click.testing import CliRunner

        from slakit.cli import cli

        monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
        monkeypatch.setenv("SLAKIT_DISABLE_PLUGIN_AUTOLOAD", "")
        (tmp_path / "slakit.toml").write_text(
            '[store]\nadapter = "sqlite"\npath = "s.db"\n\n'
            '[policies.p]\nbasis = "wall"\nsla_minutes = 5\n\n'
            '[[notifiers]]\nadapter = "slack"\nname = "team-slack"\n'
        )
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()
        started = runner.invoke(cli, ["start", "L1", "--owner", "dana@x.io"])
        assert started.exit_code == 0, started.output
        for args in (
            ["status", "--max-dead", "0"],
            ["show", "L1"],
            ["report"],
            ["export"],
        ):
            result = runner.invoke(cli, args)
            assert "SLACK_BOT_TOKEN" not in result.output, (args, result.output)
            assert result.exit_code in (0, 1), (args, result.output)  # preflight: gaps
        # The senders, and preflight (the check before a deploy), build it and say so.
        for args in (["deliver"], ["preflight"]):
            result = runner.invoke(cli, args)
            assert result.exit_code == 2, (args, result.output)
            assert "SLACK_BOT_TOKEN" in result.stderr
