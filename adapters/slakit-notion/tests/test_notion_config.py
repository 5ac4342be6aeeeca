"""Options are checked when the sink is built; each bad one is a ConfigError naming it."""

from __future__ import annotations

from typing import Any

import pytest

from notion_fake import DATABASE_ID, TOKEN
from slakit.errors import ConfigError
from slakit_notion.sink import DEFAULT_PROPERTIES, NotionTraceSink


def build(**options: Any) -> NotionTraceSink:
    sink = NotionTraceSink(**{"database_id": DATABASE_ID, "token": TOKEN, **options})
    sink.close()
    return sink


class TestNotionConfig:
    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Only the database id and a token are needed; the rest has Notion's defaults."""
        monkeypatch.setenv("NOTION_TOKEN", "from-env")
        sink = NotionTraceSink(database_id=DATABASE_ID)
        sink.close()
        assert sink.name == "notion"
        assert sink.base_url == "https://api.notion.com"
        assert (sink.timeout, sink.rate, sink.max_attempts) == (10.0, 3.0, 5)
        assert (sink.queue_size, sink.flush_timeout) == (10_000, 10.0)
        assert sink.properties == dict(DEFAULT_PROPERTIES)
        assert sink._token == "from-env"

    def test_token_env_names_another_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """token_env reads the token from the variable it names."""
        monkeypatch.delenv("NOTION_TOKEN", raising=False)
        monkeypatch.setenv("OPS_NOTION", "ntn_x")
        sink = NotionTraceSink(database_id=DATABASE_ID, token_env="OPS_NOTION")
        sink.close()
        assert sink._token == "ntn_x"

    def test_no_token_names_both_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without token and with the variable unset, the message names token and the variable."""
        monkeypatch.delenv("NOTION_TOKEN", raising=False)
        with pytest.raises(ConfigError) as info:
            NotionTraceSink(database_id=DATABASE_ID)
        message = str(info.value)
        assert "token" in message
        assert "'NOTION_TOKEN' (token_env)" in message

    def test_token_and_token_env_together(self) -> None:
        """Both at once is ambiguous."""
        with pytest.raises(ConfigError, match="token or token_env, not both"):
            build(token_env="X")

    def test_a_bad_token_is_not_echoed(self) -> None:
        """A token of the wrong type fails without showing it."""
        with pytest.raises(ConfigError, match=r"trace_sinks\.notion\.token must be") as info:
            build(token=123)
        assert "123" not in str(info.value)

    def test_a_token_with_a_line_break_is_refused_unechoed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Such a token would reach error messages whole; from token or the variable."""
        with pytest.raises(ConfigError, match="one line of visible ASCII") as info:
            build(token="secret_ABC\nLEAKED")
        assert "LEAKED" not in str(info.value)
        monkeypatch.setenv("NOTION_TOKEN", "secret_ABC\nLEAKED")
        with pytest.raises(ConfigError, match="one line of visible ASCII"):
            NotionTraceSink(database_id=DATABASE_ID)

    @pytest.mark.parametrize(
        ("option", "value", "expected"),
        [
            (
                "database_id",
                "",
                "trace_sinks.notion.database_id must be a non-empty string, got ''",
            ),
            ("database_id", None, "database_id must be a non-empty string, got None"),
            ("database_id", "https://notion.so/x", "must be a Notion database id"),
            ("base_url", "api.notion.com", "base_url must be an http:// or https:// URL"),
            ("timeout", 0, "trace_sinks.notion.timeout must be a number of seconds > 0, got 0"),
            ("rate", -1, "trace_sinks.notion.rate must be a number > 0, got -1"),
            ("rate", "3", "trace_sinks.notion.rate must be a number > 0, got '3'"),
            ("rate", True, "rate must be a number > 0, got True"),
            ("rate", float("inf"), "rate must be a number > 0, got inf"),
            ("max_attempts", 0, "max_attempts must be a whole number >= 1, got 0"),
            ("max_attempts", 2.5, "max_attempts must be a whole number >= 1, got 2.5"),
            ("queue_size", -5, "queue_size must be a whole number >= 1, got -5"),
            ("flush_timeout", -1, "flush_timeout must be a number of seconds >= 0, got -1"),
            ("backoff_base", 0, "backoff_base must be a number of seconds > 0, got 0"),
            ("properties", ["Name"], "properties must be a table of field = Notion property"),
            ("properties", {"owner": "Owner"}, "properties: unknown field 'owner'"),
            ("properties", {"title": 5}, "properties.title must be a Notion property name"),
            ("properties", {"rule": "Action"}, "rule and action both write property 'Action'"),
        ],
    )
    def test_a_bad_option_is_named_with_its_value(
        self, option: str, value: Any, expected: str
    ) -> None:
        """Each malformed option raises ConfigError with the option and the value."""
        with pytest.raises(ConfigError) as info:
            build(**{option: value})
        assert expected in str(info.value)
        assert (info.value.field or "").startswith(option)

    def test_zero_flush_timeout_is_allowed(self) -> None:
        """flush_timeout = 0 means close() does not wait."""
        assert build(flush_timeout=0).flush_timeout == 0.0

    def test_properties_merge_over_the_defaults(self) -> None:
        """A mapping renames the fields it names; "" leaves a field out; a URL slash is trimmed."""
        sink = build(
            properties={"title": "Event", "detail": "", "at": "When"},
            base_url="http://127.0.0.1:9/",
        )
        assert sink.properties["title"] == "Event"
        assert sink.properties["at"] == "When"
        assert sink.properties["detail"] == ""
        assert sink.properties["outcome"] == "Outcome"
        assert sink.base_url == "http://127.0.0.1:9"
