"""slakit.notify: the helpers notifier adapters share."""

from __future__ import annotations

from typing import Any

import pytest

from slakit.errors import ConfigError
from slakit.notify import parse_retry_after, positive_seconds, secret_from, table_option


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            ("", None),
            ("12", 12.0),
            (" 1.5 ", 1.5),
            ("-3", 0.0),
            ("nan", None),
            ("inf", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:28:00", None),
        ],
    )
    def test_reads_seconds_and_refuses_what_is_not_a_wait(
        self, value: str | None, expected: float | None
    ) -> None:
        """Seconds are read as given, never negative; anything unreadable gives None."""
        assert parse_retry_after(value) == expected

    def test_reads_an_http_date_against_now(self) -> None:
        """An HTTP date is the wait from ``now`` until then."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0

    def test_a_date_in_the_past_means_no_wait(self) -> None:
        """A date already gone gives 0, not a negative wait."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0

    def test_the_adapters_keep_their_names(self) -> None:
        """slakit_slack and slakit_webhook still export parse_retry_after, the same function."""
        slack = pytest.importorskip("slakit_slack.notifier")
        webhook = pytest.importorskip("slakit_webhook.notifier")
        assert slack.parse_retry_after is parse_retry_after
        assert webhook.parse_retry_after is parse_retry_after


class TestPositiveSeconds:
    @pytest.mark.parametrize("value", [1, 0.25, 30.0])
    def test_accepts_a_positive_number(self, value: float) -> None:
        """A positive int or float comes back as a float."""
        assert positive_seconds("pager", "timeout", value) == float(value)
        assert isinstance(positive_seconds("pager", "timeout", value), float)

    @pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "10", None])
    def test_refuses_anything_else_naming_owner_and_field(self, value: Any) -> None:
        """Zero, negatives, non-finite numbers, booleans and strings are ConfigErrors."""
        with pytest.raises(ConfigError, match=r"^pager timeout must be a positive") as info:
            positive_seconds("pager", "timeout", value)
        assert info.value.field == "timeout"


class TestSecretFrom:
    def test_a_given_secret_is_returned(self) -> None:
        """Without an environment variable the secret itself is used."""
        assert secret_from("pager", "s3cret", None, field="token") == "s3cret"

    def test_neither_gives_none(self) -> None:
        """No secret and no variable: None, for the caller to decide."""
        assert secret_from("pager", None, None, field="token") is None

    def test_reads_the_variable_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``field_env`` names the variable that holds the secret."""
        monkeypatch.setenv("SLAKIT_TEST_PAGER_TOKEN", "from-env")
        assert secret_from("pager", None, "SLAKIT_TEST_PAGER_TOKEN", field="token") == "from-env"

    def test_an_unset_variable_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A variable that is not set fails when the notifier is built, naming it."""
        monkeypatch.delenv("SLAKIT_TEST_PAGER_TOKEN", raising=False)
        with pytest.raises(ConfigError, match="'SLAKIT_TEST_PAGER_TOKEN', which is not set") as e:
            secret_from("pager", None, "SLAKIT_TEST_PAGER_TOKEN", field="token")
        assert e.value.field == "token_env"

    def test_both_is_a_config_error(self) -> None:
        """The secret and a variable together are ambiguous."""
        with pytest.raises(ConfigError, match="pager takes token or token_env, not both") as e:
            secret_from("pager", "s3cret", "X", field="token")
        assert e.value.field == "token_env"

    @pytest.mark.parametrize("env", ["", 3, "1BAD", "BAD VAR", "A-B", "$TOKEN"])
    def test_a_variable_name_must_be_a_name(self, env: Any) -> None:
        """An empty, non-string or malformed variable name is a ConfigError saying so,
        not "is not set"."""
        with pytest.raises(ConfigError, match="must name an environment variable") as e:
            secret_from("pager", None, env, field="token")
        assert e.value.field == "token_env"


class TestSecretsPastedAsNames:
    @pytest.mark.parametrize(
        "env", ["xoxb-1234567890-abcdefghijklmnop", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    )
    def test_a_secret_in_a_name_option_is_not_echoed(
        self, env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A token pasted into ``token_env`` instead of ``token``: the error shows its
        first four characters and its length, never the whole of it."""
        monkeypatch.delenv(env, raising=False)
        with pytest.raises(ConfigError) as e:
            secret_from("pager", None, env, field="token")
        assert env not in str(e.value)
        assert env not in str(e.value.value)
        assert f"{env[:4]!r}… ({len(env)} characters" in str(e.value)

    def test_names_are_shown_whole(self) -> None:
        from slakit.notify import env_name_shown

        assert env_name_shown("SLAKIT_SOME_VERY_LONG_VARIABLE_NAME") == (
            "'SLAKIT_SOME_VERY_LONG_VARIABLE_NAME'"
        )
        assert env_name_shown("pager_token") == "'pager_token'"


class TestTableOption:
    def test_absent_is_empty(self) -> None:
        """An option that is not given is an empty table."""
        assert table_option("pager", "users", None, shape="handle = id") == {}

    def test_a_mapping_is_returned_as_is(self) -> None:
        """The entries are the caller's to check."""
        users = {"dana": "U123"}
        assert table_option("pager", "users", users, shape="handle = id") is users

    def test_anything_else_is_a_config_error(self) -> None:
        """A list where a table belongs names the option and the expected shape."""
        with pytest.raises(ConfigError, match=r"pager users must be a table of handle = id") as e:
            table_option("pager", "users", ["dana"], shape="handle = id")
        assert e.value.field == "users"


class TestShownNotObeyed:
    def test_the_console_notifier_writes_control_characters_out(self) -> None:
        """Text built from attributes goes to a terminal: an escape sequence in it is
        shown as text (``\\x1b``), a bidirectional override too, never obeyed."""
        import io

        import attrs

        from slakit.adapters.console import ConsoleNotifier
        from slakit.testing.notifiers import sample_notification

        out = io.StringIO()
        n = attrs.evolve(
            sample_notification(), text="ACME\x1b]8;;http://evil.example/\x07click\x1b[2J \u202etxt"
        )
        ConsoleNotifier(stream=out).send(n)
        line = out.getvalue()
        assert "\x1b" not in line
        assert "\x07" not in line
        assert "\u202e" not in line
        assert "ACME\\x1b]8;;http://evil.example/\\x07click\\x1b[2J \\u202etxt" in line
        assert line.endswith("\n")
        assert line.count("\n") == 1
