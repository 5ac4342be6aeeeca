"""The slakit-smtp plugin: its entry point and what loading it costs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import slakit
from slakit.plugins import Plugins


class TestSMTPPlugin:
    def test_the_entry_point_is_installed(self) -> None:
        """The distribution declares `smtp` in the `slakit` entry-point group."""
        [ep] = [ep for ep in entry_points(group="slakit") if ep.name == "smtp"]
        assert ep.value == "slakit_smtp.plugin"

    def test_registers_the_smtp_notifier(self) -> None:
        """Loaded through the plugin manager, the plugin registers `smtp` next to the built-ins."""
        names = Plugins(slakit.get_plugin_manager()).notifiers()
        assert {"smtp", "console"} <= set(names)

    def test_scanning_plugins_does_not_import_smtplib(self) -> None:
        """Building the registry loads the plugin module only; smtplib waits for a notifier."""
        code = (
            "import sys; from slakit.plugins import Plugins; p = Plugins(); "
            "assert 'smtp' in p.notifiers(); print('smtplib' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"
