"""Tests of `slakit calendar add|elapsed|is-open|next-open` through click's CliRunner."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from slakit.cli_calendar import calendar_group, format_duration, parse_cli_duration
from slakit.errors import ValidationError

SALES = """
[calendars.sales-east]
timezone = "America/New_York"
holidays = { country = "US" }

[calendars.sales-east.hours]
mon = ["09:00-17:00"]
tue = ["09:00-17:00"]
wed = ["09:00-17:00"]
thu = ["09:00-17:00"]
fri = ["09:00-17:00"]
"""

SUPPORT = """
[calendars.support-uk]
timezone = "Europe/London"
hours = { sat = ["10:00-14:00"] }
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "slakit.toml"
    path.write_text(SALES, encoding="utf-8")
    return path


@pytest.fixture
def always(tmp_path: Path) -> Path:
    """A New York calendar open around the clock on weekends and Mondays."""
    path = tmp_path / "always.toml"
    hours = ", ".join(f'{d} = ["00:00-24:00"]' for d in ("sat", "sun", "mon"))
    path.write_text(f'[calendars.always]\ntimezone = "America/New_York"\nhours = {{ {hours} }}\n')
    return path


@pytest.fixture
def two_calendars(tmp_path: Path) -> Path:
    path = tmp_path / "two.toml"
    path.write_text(SALES + SUPPORT, encoding="utf-8")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(calendar_group, list(args), env=env)


def assert_usage_error(result: Result, *needles: str) -> None:
    """Exit code 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


class TestAdd:
    """`slakit calendar add START DURATION`."""

    @pytest.mark.parametrize("duration", ["90m", "1h30m", "PT1H30M", "pt1h30m", "5400s"])
    def test_durations(self, config: Path, duration: str) -> None:
        """Every duration spelling gives the same deadline, in ISO-8601 in the calendar's zone."""
        result = run("add", "--config", str(config), "2026-03-02T16:00:00-05:00", duration)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "2026-03-03T09:30:00-05:00"

    def test_days_are_hours_of_open_time(self, config: Path) -> None:
        """`2d` is 48 hours of open time: six eight-hour days, ending at a closing time."""
        result = run("add", "--config", str(config), "2026-03-02T09:00-05:00", "2d")
        assert result.stdout.strip() == "2026-03-09T17:00:00-04:00"

    def test_input_in_any_zone(self, config: Path) -> None:
        """A UTC input (Z) gives the same result in the calendar's zone."""
        result = run("add", "--config", str(config), "2026-03-02T21:00Z", "90m")
        assert result.stdout.strip() == "2026-03-03T09:30:00-05:00"

    def test_negative_duration_after_double_dash(self, config: Path) -> None:
        """`-- -2h` counts backwards."""
        result = run("add", "--config", str(config), "--", "2026-03-09T10:00-04:00", "-2h")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "2026-03-06T16:00:00-05:00"

    @pytest.mark.parametrize("duration", ["3653d", "P3653D", "99999999999m", "9" * 40 + "w"])
    def test_more_than_ten_years_is_refused_at_once(self, config: Path, duration: str) -> None:
        """A typo's century of business time is a one-line error, not minutes of work."""
        result = run("add", "--config", str(config), "2026-03-02T16:00-05:00", duration)
        assert result.exit_code == 2
        assert "at most ten years" in result.stderr

    def test_json(self, config: Path) -> None:
        """--json prints the calendar, the inputs and the result."""
        result = run("add", "--json", "--config", str(config), "2026-03-02T16:00-05:00", "90m")
        assert json.loads(result.stdout) == {
            "calendar": "sales-east",
            "start": "2026-03-02T16:00:00-05:00",
            "duration": "PT1H30M",
            "duration_seconds": 5400.0,
            "result": "2026-03-03T09:30:00-05:00",
        }

    def test_naive_input_is_an_error_without_tz(self, config: Path) -> None:
        """A time without an offset exits 2 with a one-line message unless --tz is given."""
        result = run("add", "--config", str(config), "2026-03-02T16:00", "90m")
        assert_usage_error(result, "'2026-03-02T16:00'", "--tz")

    def test_tz_reads_wall_times(self, config: Path) -> None:
        """--tz reads an offset-less input as wall time in that zone."""
        result = run(
            "add", "--config", str(config), "--tz", "America/New_York", "2026-03-02T16:00", "90m"
        )
        assert result.stdout.strip() == "2026-03-03T09:30:00-05:00"

    def test_tz_in_a_gap_is_the_end_of_the_gap(self, always: Path) -> None:
        """--tz follows the calendar's boundary rule: 02:30 on the spring-forward night is 03:00."""
        args = ["next-open", "--config", str(always), "--tz", "America/New_York"]
        result = run(*args, "2026-03-08T02:30")
        assert result.stdout.strip() == "2026-03-08T03:00:00-04:00"

    @pytest.mark.parametrize(
        ("args", "needles"),
        [
            (["2026-03-02T16:00Z", "9-17"], ["'9-17'", "DURATION"]),
            (["2026-03-02T16:00Z", "soon"], ["'soon'"]),
            (["tomorrow", "90m"], ["'tomorrow'", "ISO-8601"]),
            (["--tz", "Mars/Olympus", "2026-03-02T16:00", "90m"], ["'Mars/Olympus'"]),
            (["--calendar", "nope", "2026-03-02T16:00Z", "90m"], ["'nope'", "sales-east"]),
        ],
    )
    def test_bad_input_exits_2(self, config: Path, args: list[str], needles: list[str]) -> None:
        """Malformed input is one line on stderr and exit code 2, naming the value."""
        assert_usage_error(run("add", "--config", str(config), *args), *needles)

    def test_missing_argument_exits_2(self, config: Path) -> None:
        """A missing DURATION is a usage error, one line, exit 2."""
        assert_usage_error(run("add", "--config", str(config), "2026-03-02T16:00Z"), "DURATION")

    def test_closed_calendar_exits_1(self, tmp_path: Path) -> None:
        """A calendar without open time is a runtime failure: exit 1, one line."""
        path = tmp_path / "closed.toml"
        path.write_text('[calendars.never]\ntimezone = "UTC"\nhorizon_years = 1\n')
        result = run("add", "--config", str(path), "2026-03-02T16:00Z", "1h")
        assert result.exit_code == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert "'never'" in result.stderr


class TestElapsed:
    """`slakit calendar elapsed START END`."""

    def test_elapsed_prints_an_iso_duration(self, config: Path) -> None:
        """The open time comes out as an ISO-8601 duration, negative when END is earlier."""
        args = ["elapsed", "--config", str(config)]
        result = run(*args, "2026-03-02T08:00-05:00", "2026-03-03T12:00-05:00")
        assert result.stdout.strip() == "PT11H"
        result = run(*args, "2026-03-03T12:00-05:00", "2026-03-02T08:00-05:00")
        assert result.stdout.strip() == "-PT11H"

    def test_json(self, config: Path) -> None:
        """--json carries the duration both as ISO-8601 and in seconds."""
        result = run(
            "elapsed",
            "--json",
            "--config",
            str(config),
            "2026-03-02T09:00-05:00",
            "2026-03-02T10:30:00.5-05:00",
        )
        data = json.loads(result.stdout)
        assert data["elapsed"] == "PT1H30M0.5S"
        assert data["elapsed_seconds"] == 5400.5

    def test_naive_end_is_an_error(self, config: Path) -> None:
        """END without an offset exits 2 and names END."""
        result = run("elapsed", "--config", str(config), "2026-03-02T09:00Z", "2026-03-02T10:00")
        assert_usage_error(result, "END")


class TestIsOpenAndNextOpen:
    """`slakit calendar is-open [T]` and `next-open [T]`."""

    def test_is_open(self, config: Path) -> None:
        """is-open prints open or closed; the exit code is 0 either way."""
        args = ["is-open", "--config", str(config)]
        assert run(*args, "2026-03-02T10:00-05:00").stdout.strip() == "open"
        closed = run(*args, "2026-03-02T17:00-05:00")
        assert (closed.exit_code, closed.stdout.strip()) == (0, "closed")

    def test_is_open_json(self, config: Path) -> None:
        """--json reports the instant in the calendar's zone."""
        result = run("is-open", "--json", "--config", str(config), "2026-01-01T15:00Z")
        assert json.loads(result.stdout) == {
            "calendar": "sales-east",
            "at": "2026-01-01T10:00:00-05:00",
            "open": False,
        }

    def test_next_open(self, config: Path) -> None:
        """next-open prints the next opening, or T itself when open."""
        args = ["next-open", "--config", str(config)]
        assert run(*args, "2026-03-07T10:00Z").stdout.strip() == "2026-03-09T09:00:00-04:00"
        assert run(*args, "2026-03-02T15:00Z").stdout.strip() == "2026-03-02T10:00:00-05:00"

    def test_default_is_now(self, config: Path) -> None:
        """Without T the commands answer for now."""
        result = run("next-open", "--json", "--config", str(config))
        assert result.exit_code == 0, result.stderr
        assert set(json.loads(result.stdout)) == {"calendar", "at", "next_open"}
        assert run("is-open", "--config", str(config)).stdout.strip() in ("open", "closed")


class TestConfigLookup:
    """--config, $SLAKIT_CONFIG, ./slakit.toml and --calendar."""

    def test_env_var(self, config: Path) -> None:
        """SLAKIT_CONFIG names the file when --config is absent."""
        result = run("is-open", "2026-03-02T15:00Z", env={"SLAKIT_CONFIG": str(config)})
        assert result.stdout.strip() == "open"

    def test_default_path(self, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """./slakit.toml is the default."""
        monkeypatch.chdir(config.parent)
        monkeypatch.delenv("SLAKIT_CONFIG", raising=False)
        assert run("is-open", "2026-03-02T15:00Z").stdout.strip() == "open"

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing config file exits 2, naming it."""
        missing = str(tmp_path / "nope.toml")
        assert_usage_error(run("is-open", "--config", missing, "2026-03-02T15:00Z"), "nope.toml")

    def test_invalid_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML exits 2."""
        path = tmp_path / "bad.toml"
        path.write_text("[calendars.x\n")
        assert_usage_error(run("is-open", "--config", str(path), "2026-03-02T15:00Z"), "TOML")

    def test_invalid_calendar_names_it(self, tmp_path: Path) -> None:
        """A malformed calendar table exits 2 with a message naming the calendar and value."""
        path = tmp_path / "bad.toml"
        path.write_text('[calendars.east]\ntimezone = "UTC"\nhours = { mon = ["9-17"] }\n')
        result = run("is-open", "--config", str(path), "2026-03-02T15:00Z")
        assert_usage_error(result, "calendars.east", "'9-17'")

    def test_several_calendars_need_a_name(self, two_calendars: Path) -> None:
        """With two calendars --calendar is required; with it, each answers."""
        args = ["is-open", "--config", str(two_calendars)]
        assert_usage_error(
            run(*args, "2026-03-07T11:00Z"), "--calendar", "sales-east", "support-uk"
        )
        assert run(*args, "--calendar", "support-uk", "2026-03-07T11:00Z").stdout.strip() == "open"
        assert run(*args, "--calendar", "sales-east", "2026-03-07T11:00Z").stdout.strip() == (
            "closed"
        )

    def test_no_calendars(self, tmp_path: Path) -> None:
        """A config without calendars exits 2."""
        path = tmp_path / "empty.toml"
        path.write_text('[store]\nadapter = "memory"\n')
        assert_usage_error(
            run("is-open", "--config", str(path), "2026-03-02T15:00Z"), "0 calendars"
        )


class TestHelpers:
    """Duration parsing and formatting."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("90m", timedelta(minutes=90)),
            ("1h30m", timedelta(minutes=90)),
            ("2d", timedelta(days=2)),
            ("PT1H30M", timedelta(minutes=90)),
            ("-45s", -timedelta(seconds=45)),
            ("+1h", timedelta(hours=1)),
        ],
    )
    def test_parse(self, text: str, expected: timedelta) -> None:
        """The documented spellings parse; a leading minus negates."""
        assert parse_cli_duration(text) == expected

    def test_parse_rejects_garbage(self) -> None:
        """Anything else raises ValidationError naming the text."""
        with pytest.raises(ValidationError, match="'9-17'"):
            parse_cli_duration("9-17")

    @pytest.mark.parametrize(
        ("delta", "text"),
        [
            (timedelta(0), "PT0S"),
            (timedelta(hours=40), "PT40H"),
            (-timedelta(minutes=90), "-PT1H30M"),
            (timedelta(seconds=1, microseconds=500), "PT1.0005S"),
        ],
    )
    def test_format(self, delta: timedelta, text: str) -> None:
        """Durations print as ISO-8601 hours, minutes and seconds."""
        assert format_duration(delta) == text
        if delta >= timedelta(0) and delta.microseconds == 0:
            assert parse_cli_duration(text) == delta


class TestMounted:
    """The group is reachable as `slakit calendar`."""

    def test_main_cli_has_the_group(self, config: Path) -> None:
        """`slakit calendar is-open` works through the main command."""
        from slakit.cli import cli

        result = CliRunner().invoke(
            cli, ["calendar", "is-open", "--config", str(config), "2026-03-02T15:00Z"]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "open"
