"""The slakit-otel plugin: its entry point and what loading it costs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import slakit
from slakit.plugins import Plugins


class TestOTelPlugin:
    def test_the_entry_point_is_installed(self) -> None:
        """The distribution declares `otel` in the `slakit` entry-point group."""
        [ep] = [ep for ep in entry_points(group="slakit") if ep.name == "otel"]
        assert ep.value == "slakit_otel.plugin"

    def test_registers_the_otel_sink(self) -> None:
        """Loaded through the plugin manager, the plugin registers `otel` next to the built-ins."""
        names = Plugins(slakit.get_plugin_manager()).trace_sinks()
        assert {"otel", "jsonl", "logging"} <= set(names)

    def test_scanning_plugins_does_not_import_opentelemetry(self) -> None:
        """Building the registry loads the plugin module only; OpenTelemetry waits for a sink."""
        code = (
            "import sys; from slakit.plugins import Plugins; p = Plugins(); "
            "assert 'otel' in p.trace_sinks(); print('opentelemetry' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"
