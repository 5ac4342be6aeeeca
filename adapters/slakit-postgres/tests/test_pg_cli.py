"""`slakit run` against PostgreSQL: the command line with the wake-up listener."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import slakit

CONFIG = """
[store]
adapter = "postgres"
dsn = "{dsn}"
schema = "{schema}"

[policies.speed-to-lead]
basis = "wall"
sla_minutes = 1
"""


@pytest.mark.slow
class TestRunCommand:
    def test_run_on_postgres_applies_steps_and_stops_on_sigterm(
        self, pg_dsn: str, fresh_schema: Callable[[], str], tmp_path: Path
    ) -> None:
        """`slakit run` listens for wake-ups, applies a due step, and exits 0 on SIGTERM."""
        config = tmp_path / "slakit.toml"
        config.write_text(CONFIG.format(dsn=pg_dsn, schema=fresh_schema()))
        engine = slakit.Engine.from_config(config)
        engine.setup()
        engine.start(
            "L1",
            owner="alice",
            started_at=engine.store.effective_now(slakit.SystemClock().now()).replace(year=2025),
        )
        log = tmp_path / "run.log"
        env = {k: v for k, v in os.environ.items() if k != "SLAKIT_DISABLE_PLUGIN_AUTOLOAD"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "slakit",
                    "run",
                    "--interval",
                    "30",
                    "--config",
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "PYTHONUNBUFFERED": "1"},
            )
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and "tick:" not in log.read_text():
                    time.sleep(0.05)
                assert "tick:" in log.read_text(), log.read_text()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=10) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert [e.stage for e in engine.store.escalations("L1")] == [0, 1]
        assert "Traceback" not in log.read_text()
        engine.close()
