"""The reporting commands: report, review, runbook, preflight, simulate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import slakit
from slakit import cli_report
from slakit.adapters.sqlite import SQLiteStore
from slakit.cli_report import commands
from slakit.testing.store_contract import make_trace

MON = datetime(2026, 11, 23, 14, tzinfo=UTC)  # Monday 09:00 in New York
NOW = "2026-11-27T12:00:00+00:00"

TOML = """
[store]
adapter = "sqlite"
path = "slakit.db"

[calendars.east]
timezone = "America/New_York"

[calendars.east.hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]

[calendars.always]
timezone = "UTC"

[calendars.always.hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]

[policies.lead]
calendar = "east"
sla_minutes = 30
backup_owner = "team-lead"
trigger = "a qualified lead arrives"
target = "the owner replies"
timer = "30 business minutes"
trace = "ops-log.jsonl"
consequence = "2x: reassign and mark breached"
owner = "@sales-ops"
last_reviewed = "2026-11-25"

[policies.ticket]
basis = "wall"
stop = "completion"
sla_minutes = 60

[breach_reasons]
no_backup = { description = "No backup owner on the record" }
routing_error = { description = "Routed to the wrong team" }

[review]
timezone = "America/New_York"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config with an SQLite store holding a small week of history."""
    path = tmp_path / "slakit.toml"
    path.write_text(TOML)
    engine = slakit.Engine.from_config(path, clock=slakit.ManualClock(MON))
    for i in range(12):
        start = MON + timedelta(hours=3 * i)
        engine.start(
            f"l{i}",
            policy="lead",
            owner="ann" if i % 2 else "bob",
            started_at=start,
            channel="web" if i % 3 else "phone",
        )
        if i % 3 == 0:
            engine.respond(f"l{i}", at=start + timedelta(minutes=10))
        elif i == 4:
            engine.cancel(f"l{i}", at=start + timedelta(minutes=1))
    engine.start("t1", policy="ticket", owner="cat", started_at=MON)
    engine.check(MON + timedelta(days=3))
    engine.tag_breach("l1", "routing_error")
    engine.close()
    return path


@pytest.fixture
def group() -> click.Group:
    """The commands mounted in a group, as the main ``slakit`` group mounts them."""
    g = click.Group("slakit")
    for cmd in commands:
        g.add_command(cmd)
    return g


def invoke(group: click.Group, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(group, list(args), env=env, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


class TestCommands:
    def test_exported_names(self) -> None:
        """``commands`` holds the five commands, by name."""
        assert [c.name for c in commands] == [
            "report",
            "review",
            "runbook",
            "preflight",
            "simulate",
        ]


class TestReport:
    def test_table(self, group: click.Group, project: Path) -> None:
        """The table shows each group, the total and both bases' rates."""
        r = invoke(group, "report", "--config", str(project), "--by", "channel", "--now", NOW)
        assert r.exit_code == 0, r.output
        for needle in ("channel", "phone", "web", "total", "rate (business)", "rate (wall)"):
            assert needle in r.stdout

    def test_json(self, group: click.Group, project: Path) -> None:
        """``--json`` prints the report's dictionary."""
        r = invoke(
            group, "report", "--config", str(project), "--json", "--now", NOW, "--basis", "wall"
        )
        assert r.exit_code == 0, r.output
        data = json.loads(r.stdout)
        assert data["basis"] == "wall"
        assert data["computed_by"] == "store"
        assert data["total"]["excluded"] == 1
        assert data["excluded_ids"] == ["l4"]
        assert data["total"]["wall"]["evaluated"] + data["total"]["wall"]["pending"] == 12

    def test_window(self, group: click.Group, project: Path) -> None:
        """``--since``/``--until`` cut the window by start time."""
        r = invoke(
            group,
            "report",
            "--config",
            str(project),
            "--json",
            "--since",
            "2026-11-23T14:00:00Z",
            "--until",
            "2026-11-23T20:00:00+00:00",
            "--now",
            NOW,
        )
        data = json.loads(r.stdout)
        assert data["total"]["wall"]["evaluated"] + data["total"]["wall"]["pending"] == 3

    def test_naive_time_is_a_usage_error(self, group: click.Group, project: Path) -> None:
        """A timestamp without an offset exits 2 with one line on stderr."""
        r = invoke(group, "report", "--config", str(project), "--since", "2026-11-23T09:00")
        assert r.exit_code == 2
        assert "--since" in one_line_error(r)

    def test_bad_group_key(self, group: click.Group, project: Path) -> None:
        """An unknown ``--by`` key exits 2 naming it."""
        r = invoke(group, "report", "--config", str(project), "--by", "colour")
        assert r.exit_code == 2
        assert "'colour'" in one_line_error(r)

    def test_unknown_option(self, group: click.Group, project: Path) -> None:
        """An unknown option exits 2 with one line."""
        r = invoke(group, "report", "--colour")
        assert r.exit_code == 2
        assert "--colour" in one_line_error(r)

    def test_missing_config(self, group: click.Group, tmp_path: Path) -> None:
        """A missing config file exits 2 naming it."""
        r = invoke(group, "report", "--config", str(tmp_path / "nope.toml"))
        assert r.exit_code == 2
        assert "nope.toml" in one_line_error(r)

    def test_invalid_config(self, group: click.Group, tmp_path: Path) -> None:
        """Invalid TOML exits 2."""
        bad = tmp_path / "bad.toml"
        bad.write_text("[policies\n")
        r = invoke(group, "report", "--config", str(bad))
        assert r.exit_code == 2
        assert "not valid TOML" in one_line_error(r)

    def test_config_from_env_and_cwd(
        self, group: click.Group, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The config comes from $SLAKIT_CONFIG, else ./slakit.toml."""
        r = invoke(group, "report", "--json", "--now", NOW, env={"SLAKIT_CONFIG": str(project)})
        assert r.exit_code == 0, r.output
        monkeypatch.chdir(project.parent)
        r = invoke(group, "report", "--json", "--now", NOW, env={"SLAKIT_CONFIG": ""})
        assert r.exit_code == 0, r.output

    def test_progress_on_large_data(
        self, group: click.Group, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Over the threshold the commands run under a progress display and still print."""
        monkeypatch.setattr(cli_report, "PROGRESS_THRESHOLD", 1)
        # A store that cannot aggregate: the report counts in Python, under the bar.
        monkeypatch.setattr(SQLiteStore, "aggregate_hit_rate", lambda self, **kw: None)
        r = invoke(group, "report", "--config", str(project), "--by", "attributes.x", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["computed_by"] == "python"
        for args in (["review"], ["preflight"], ["simulate", "--policy", "lead"]):
            r = invoke(group, *args, "--config", str(project), "--json", "--now", NOW)
            assert r.exit_code in (0, 1), r.output
            json.loads(r.stdout)


class TestReview:
    def test_markdown(self, group: click.Group, project: Path) -> None:
        """The review prints Markdown with the week, breaches and history."""
        r = invoke(group, "review", "--config", str(project), "--now", NOW)
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("# Prune Friday: 2026-W48")
        assert "Top reason: **routing_error** (1)" in r.stdout
        assert "America/New_York" in r.stdout

    def test_json_and_html(self, group: click.Group, project: Path, tmp_path: Path) -> None:
        """``--json`` prints JSON and ``--html`` writes a page."""
        page = tmp_path / "review.html"
        r = invoke(
            group,
            "review",
            "--config",
            str(project),
            "--now",
            NOW,
            "--week",
            "2026-W48",
            "--weeks",
            "2",
            "--json",
            "--html",
            str(page),
        )
        assert r.exit_code == 0, r.output
        data = json.loads(r.stdout)
        assert len(data["hit_rate"]["history"]) == 3
        assert "<svg" in page.read_text()

    def test_bad_week(self, group: click.Group, project: Path) -> None:
        """A malformed week exits 2."""
        r = invoke(group, "review", "--config", str(project), "--week", "48")
        assert r.exit_code == 2
        assert "week" in one_line_error(r)

    def test_unwritable_html_is_a_runtime_failure(
        self, group: click.Group, project: Path, tmp_path: Path
    ) -> None:
        """Failing to write the page exits 1 with one line."""
        target = tmp_path / "missing-dir" / "review.html"
        r = invoke(group, "review", "--config", str(project), "--html", str(target))
        assert r.exit_code == 1
        one_line_error(r)


class TestRunbook:
    def test_named_and_all(self, group: click.Group, project: Path) -> None:
        """One policy, or all of them."""
        r = invoke(group, "runbook", "lead", "--config", str(project))
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("# Runbook: lead")
        assert "| **Owner** | @sales-ops |" in r.stdout
        r = invoke(group, "runbook", "--config", str(project))
        assert "# Runbook: ticket" in r.stdout

    def test_unknown_policy(self, group: click.Group, project: Path) -> None:
        """An unknown policy exits 2 listing the configured ones."""
        r = invoke(group, "runbook", "nope", "--config", str(project))
        assert r.exit_code == 2
        assert "configured: lead, ticket" in one_line_error(r)


class TestPreflight:
    def test_gaps_exit_1(self, group: click.Group, project: Path) -> None:
        """Gaps print one line each, naming the policy, and exit 1."""
        r = invoke(group, "preflight", "--config", str(project), "--now", NOW)
        assert r.exit_code == 1
        lines = r.stdout.strip().splitlines()
        assert lines
        assert all(line.startswith("ticket: ") for line in lines)

    def test_clean_exit_0(self, group: click.Group, project: Path, tmp_path: Path) -> None:
        """A clean config exits 0."""
        clean = tmp_path / "clean.toml"
        clean.write_text(TOML.split("[policies.ticket]")[0])
        r = invoke(group, "preflight", "--config", str(clean), "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["ok"] is True
        r = invoke(group, "preflight", "--config", str(clean))
        assert r.stdout.startswith("ok: 1 policies")


class TestSimulate:
    def test_table_and_json(self, group: click.Group, project: Path) -> None:
        """The replay prints actual and predicted side by side."""
        args = ["simulate", "--config", str(project), "--policy", "lead", "--now", NOW]
        r = invoke(group, *args, "--sla-minutes", "240")
        assert r.exit_code == 0, r.output
        assert "predicted" in r.stdout
        assert "notifications" in r.stdout
        r = invoke(group, *args, "--calendar", "always", "--json")
        data = json.loads(r.stdout)
        assert data["changes"] == {"sla_minutes": None, "calendar": "always"}
        assert data["handoffs"] == 12

    def test_a_record_that_cannot_be_replayed_is_named_under_the_table(
        self, group: click.Group, project: Path
    ) -> None:
        """A trace line the engine could not have written (a pause after the response
        stopped the clock) skips that record with a note, not the whole replay."""
        store = SQLiteStore(project.parent / "slakit.db")
        h = store.get("l0")
        store.add_traces(
            [
                make_trace(
                    "l0",
                    "pause",
                    action="pause",
                    trace_id=h.trace_id,
                    policy="lead",
                    at=MON + timedelta(minutes=20),
                    detail={},
                )
            ]
        )
        store.close()
        args = ["simulate", "--config", str(project), "--policy", "lead", "--now", NOW]
        r = invoke(group, *args)
        assert r.exit_code == 0, r.output
        assert "11 handoffs" in r.stdout
        assert "skipped 1 handoff that could not be replayed:" in r.stdout
        assert "  l0: pause at " in r.stdout
        data = json.loads(invoke(group, *args, "--json").stdout)
        assert data["handoffs"] == 11
        assert [s["id"] for s in data["skipped"]] == ["l0"]

    def test_usage_errors(self, group: click.Group, project: Path) -> None:
        """A missing --policy, an unknown calendar or a bad SLA exit 2."""
        base = ["simulate", "--config", str(project)]
        assert invoke(group, *base).exit_code == 2
        r = invoke(group, *base, "--policy", "lead", "--calendar", "mars")
        assert r.exit_code == 2
        assert "'mars'" in one_line_error(r)
        r = invoke(group, *base, "--policy", "lead", "--sla-minutes", "0")
        assert r.exit_code == 2
        assert "sla_minutes" in one_line_error(r)


class TestSubprocess:
    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SLAKIT_CONFIG"}
        return subprocess.run(
            [sys.executable, "-m", "slakit.cli_report", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_report_and_errors_in_a_real_process(self, project: Path) -> None:
        """A real process prints JSON, and a usage error is one stderr line with exit 2."""
        ok = self.run("report", "--json", "--now", NOW, cwd=project.parent)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["total"]["excluded"] == 1
        bad = self.run("report", "--until", "yesterday", cwd=project.parent)
        assert bad.returncode == 2
        assert len(bad.stderr.strip().splitlines()) == 1
        assert "Traceback" not in bad.stderr
        gaps = self.run("preflight", cwd=project.parent)
        assert gaps.returncode == 1
