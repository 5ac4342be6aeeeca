"""The install promise: without a C compiler slakit still installs and runs, in pure Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

PROBE = """
import json, sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
import slakit, slakit.calendar as c, slakit._build as b, slakit._time as t
from slakit.adapters.sqlite import SQLiteStore
cal = c.BusinessCalendar.weekdays("America/New_York", "09:00-17:00")
start = datetime(2026, 3, 6, 16, 30, tzinfo=ZoneInfo("America/New_York"))
clock = slakit.ManualClock(datetime(2026, 3, 2, 14, tzinfo=ZoneInfo("UTC")))
engine = slakit.Engine(SQLiteStore(":memory:"), policies=[slakit.Policy.default(basis="wall")],
                       clock=clock)
engine.start("L1", owner="a")
clock.advance(hours=2)
print(json.dumps({"file": c.__file__,
                  "accelerated": [c.ACCELERATED, b.ACCELERATED, t.ACCELERATED],
                  "add": cal.add(start, timedelta(hours=1)).isoformat(),
                  "steps": engine.check().count, "due": engine.get("L1").next_due_at}))
"""


def test_a_build_without_a_compiler_succeeds_and_runs_pure_python(tmp_path: Path) -> None:
    """CC=false: the wheel builds without the extension and the calendar still answers."""
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    )
    for name in (
        "pyproject.toml",
        "setup.py",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "MANIFEST.in",
    ):
        shutil.copy(ROOT / name, tree / name)
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "--no-index", "-w", str(tmp_path / "dist"), str(tree)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("slakit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    assert {"slakit/py.typed", "slakit/_ccal.pyi", "slakit/_crecords.pyi", "slakit/cli.py"} <= set(
        names
    )
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe_env = {k: v for k, v in os.environ.items() if k != "SLAKIT_PURE"}
    probe_env["PYTHONPATH"] = str(unpacked)
    ran = subprocess.run(
        [sys.executable, "-c", PROBE], env=probe_env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert Path(result["file"]).is_relative_to(unpacked)
    assert result["accelerated"] == [False, False, False]
    assert (result["steps"], result["due"]) == (2, None)  # the engine runs on SQLite too
    # Friday 16:30 + 1 business hour: 30 minutes on Friday, 30 on Monday.
    assert result["add"] == "2026-03-09T09:30:00-04:00"
