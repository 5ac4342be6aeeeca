"""The Slack notifier against a local Slack Web API, through the real slack_sdk client."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from slack_api_peer import TOKEN, Scripted, SlackAPIPeer, api_error, ratelimited
from slack_helpers import DANA, LEE
from slakit.errors import ConfigError, PermanentNotifyError, TransientNotifyError
from slakit.testing.notifiers import sample_notification
from slakit.testing.peers import PeerRequestHandler, serve_http
from slakit_slack.notifier import (
    METADATA_EVENT_TYPE,
    SlackNotifier,
    build_blocks,
    parse_retry_after,
)


def _texts(blocks: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", []))
        out.extend(e["text"] for e in block.get("elements", []))
    return "\n".join(out)


class TestSlackNotifierSend:
    def test_posts_a_dm_with_blocks_fallback_text_and_metadata(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """A send looks the owner up by e-mail, opens the DM and posts the step there."""
        n = sample_notification()
        notifier.send(n)

        assert [c.method for c in slack_peer.calls] == [
            "users.lookupByEmail",
            "conversations.open",
            "chat.postMessage",
        ]
        assert all(c.headers["authorization"] == f"Bearer {TOKEN}" for c in slack_peer.calls)
        assert slack_peer.calls[0].args["email"] == "dana@example.com"
        assert slack_peer.calls[1].args["users"] == DANA
        [message] = slack_peer.messages
        assert message["channel"] == slack_peer.dms[DANA]
        assert message["text"] == n.text  # nothing to escape in it
        assert message["metadata"] == {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {
                "idempotency_key": n.idempotency_key,
                "handoff_id": "lead-1",
                "stage": 0,
                "step": "1x",
                "action": "notify:owner",
                "policy": "speed-to-lead",
                "trace_id": n.trace_id,
            },
        }
        text = _texts(message["blocks"])
        assert "<https://crm.example.com/leads/lead-1|lead-1>" in text
        assert "`1x` (stage 0)" in text
        assert n.text in text

    def test_caches_the_user_id_and_the_dm_channel(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """A second message to the same person costs one API call, not three."""
        notifier.send(sample_notification())
        notifier.send(sample_notification(idempotency_key="lead-2:0:notify:owner:dana"))
        assert len(slack_peer.calls_to("users.lookupByEmail")) == 1
        assert len(slack_peer.calls_to("conversations.open")) == 1
        assert len(slack_peer.messages) == 2

    def test_users_mapping_to_an_id_skips_the_lookup(self, slack_peer: SlackAPIPeer) -> None:
        """A handle mapped to a user id (with or without '@', any case) needs no lookup."""
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url, users={"@Dana": DANA})
        n.send(sample_notification(recipient="dana"))
        assert slack_peer.calls_to("users.lookupByEmail") == []
        assert slack_peer.messages[0]["channel"] == slack_peer.dms[DANA]

    def test_users_mapping_to_an_email_is_looked_up(self, slack_peer: SlackAPIPeer) -> None:
        """A handle mapped to an e-mail address is resolved through users.lookupByEmail."""
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url, users={"boss": "lee@example.com"})
        n.send(sample_notification(recipient="boss"))
        assert slack_peer.calls_to("users.lookupByEmail")[0].args["email"] == "lee@example.com"
        assert slack_peer.messages[0]["channel"] == slack_peer.dms[LEE]

    def test_an_email_recipient_and_a_user_id_recipient_work_as_written(
        self, slack_peer: SlackAPIPeer
    ) -> None:
        """Without users or default_domain, e-mail addresses and user ids still resolve."""
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url)
        n.send(sample_notification(recipient="lee@example.com"))
        n.send(sample_notification(recipient=DANA))
        assert len(slack_peer.calls_to("users.lookupByEmail")) == 1
        assert {m["channel"] for m in slack_peer.messages} == {
            slack_peer.dms[LEE],
            slack_peer.dms[DANA],
        }

    def test_an_unresolvable_handle_is_permanent_and_calls_nothing(
        self, slack_peer: SlackAPIPeer
    ) -> None:
        """A bare handle with no mapping and no default_domain can never be delivered."""
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url)
        with pytest.raises(PermanentNotifyError, match=r"'dana'.*default_domain"):
            n.send(sample_notification())
        assert slack_peer.calls == []

    def test_a_closed_dm_is_reopened_after_a_permanent_failure(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """The cached DM channel is dropped when posting to it fails for good."""
        notifier.send(sample_notification())
        slack_peer.script("chat.postMessage", api_error("is_archived"))
        with pytest.raises(PermanentNotifyError, match="is_archived"):
            notifier.send(sample_notification())
        notifier.send(sample_notification())
        assert len(slack_peer.calls_to("conversations.open")) == 2
        assert len(slack_peer.messages) == 2


class TestSlackNotifierErrors:
    def test_a_rate_limit_is_transient_with_retry_after_and_no_sleep(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """HTTP 429 raises at once with Retry-After as retry_after; the outbox waits, not send."""
        slack_peer.script("chat.postMessage", ratelimited(30))
        started = time.monotonic()
        with pytest.raises(TransientNotifyError, match="ratelimited") as info:
            notifier.send(sample_notification())
        assert time.monotonic() - started < 5
        assert info.value.retry_after == 30
        assert len(slack_peer.calls_to("chat.postMessage")) == 1

    def test_ratelimited_with_http_200_is_transient(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """An ``ok: false, error: ratelimited`` body is a rate limit even without a 429."""
        slack_peer.script("users.lookupByEmail", api_error("ratelimited"))
        with pytest.raises(TransientNotifyError) as info:
            notifier.send(sample_notification())
        assert info.value.retry_after is None

    @pytest.mark.parametrize(
        ("method", "error"),
        [
            ("users.lookupByEmail", "invalid_auth"),
            ("users.lookupByEmail", "not_authed"),
            ("users.lookupByEmail", "account_inactive"),
            ("users.lookupByEmail", "users_not_found"),
            ("conversations.open", "user_not_found"),
            ("chat.postMessage", "channel_not_found"),
            ("chat.postMessage", "is_archived"),
        ],
    )
    def test_dead_end_errors_are_permanent(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier, method: str, error: str
    ) -> None:
        """Errors no retry can fix raise PermanentNotifyError naming the error and recipient."""
        slack_peer.script(method, api_error(error))
        with pytest.raises(PermanentNotifyError, match=rf"{method} for recipient 'dana'.*{error}"):
            notifier.send(sample_notification())

    def test_a_wrong_token_is_rejected_by_the_peer_and_permanent(
        self, slack_peer: SlackAPIPeer
    ) -> None:
        """The peer checks the bearer token; invalid_auth dead-letters."""
        n = SlackNotifier(token="xoxb-wrong", base_url=slack_peer.url, default_domain="example.com")
        with pytest.raises(PermanentNotifyError, match="invalid_auth"):
            n.send(sample_notification())

    def test_an_unknown_user_is_permanent(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """A handle the workspace does not know fails with users_not_found."""
        with pytest.raises(PermanentNotifyError, match="users_not_found"):
            notifier.send(sample_notification(recipient="nobody"))

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_errors_are_transient(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier, status: int
    ) -> None:
        """5xx answers, JSON or not, may pass: TransientNotifyError."""
        slack_peer.script(
            "chat.postMessage",
            Scripted(status, "<html>upstream failed</html>", {"Retry-After": "12"}),
        )
        with pytest.raises(TransientNotifyError, match=f"HTTP {status}") as info:
            notifier.send(sample_notification())
        assert info.value.retry_after == 12

    def test_an_unknown_api_error_is_transient(
        self, slack_peer: SlackAPIPeer, notifier: SlackNotifier
    ) -> None:
        """An ``ok: false`` code the adapter does not know is retried, not dropped."""
        slack_peer.script("chat.postMessage", api_error("something_new"))
        with pytest.raises(TransientNotifyError, match="something_new"):
            notifier.send(sample_notification())

    def test_a_wrong_base_url_is_permanent(self, slack_peer: SlackAPIPeer) -> None:
        """A 404 from a base_url that is not the Web API is a configuration error."""
        n = SlackNotifier(
            token=TOKEN, base_url=slack_peer.url.replace("/api/", "/nope/"), default_domain="x.io"
        )
        with pytest.raises(PermanentNotifyError, match="HTTP 404"):
            n.send(sample_notification())

    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    @pytest.mark.parametrize(
        "method", ["users.lookupByEmail", "conversations.open", "chat.postMessage"]
    )
    def test_a_redirect_is_permanent_and_never_followed(
        self, slack_peer: SlackAPIPeer, status: int, method: str
    ) -> None:
        """A 3xx pointing elsewhere: urllib would resend the bot token there. It is not
        followed (the other host sees no request) and the row is dead-lettered."""
        seen: list[str] = []

        class Elsewhere(PeerRequestHandler):
            def do_GET(self) -> None:
                seen.append(f"GET {self.path} {self.headers.get('Authorization')}")
                self.reply(200, b'{"ok": true, "user": {"id": "U99999999"}}', {})

            def do_POST(self) -> None:
                seen.append(f"POST {self.path} {self.headers.get('Authorization')}")
                self.reply(200, b'{"ok": true}', {})

        with serve_http(Elsewhere) as other:
            slack_peer.script(method, Scripted(status, "", {"Location": other.url + "x"}))
            # The lookup runs for an e-mail address only; a mapped user id skips it.
            who: dict[str, Any] = (
                {"default_domain": "x.io"}
                if method == "users.lookupByEmail"
                else {"users": {"dana": DANA}}
            )
            n = SlackNotifier(token=TOKEN, base_url=slack_peer.url, **who)
            with pytest.raises(PermanentNotifyError, match=f"HTTP {status}.*not followed"):
                n.send(sample_notification())
        assert seen == []

    def test_a_refused_connection_is_transient(self) -> None:
        """Nothing listening on the port: TransientNotifyError."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        n = SlackNotifier(
            token=TOKEN, base_url=f"http://127.0.0.1:{port}/api/", users={"dana": DANA}
        )
        with pytest.raises(TransientNotifyError, match=r"conversations\.open"):
            n.send(sample_notification())

    def test_a_timeout_is_transient(self, slack_peer: SlackAPIPeer) -> None:
        """A peer slower than ``timeout`` raises TransientNotifyError after ``timeout``."""
        slack_peer.script("chat.postMessage", Scripted(delay=2.0))
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url, users={"dana": DANA}, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientNotifyError, match=r"chat\.postMessage"):
            n.send(sample_notification())
        assert time.monotonic() - started < 1.5


class TestSlackNotifierConfig:
    def test_the_token_comes_from_the_environment_by_default(
        self, slack_peer: SlackAPIPeer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without ``token``, SLACK_BOT_TOKEN is used."""
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        SlackNotifier(base_url=slack_peer.url, users={"dana": DANA}).send(sample_notification())
        assert len(slack_peer.messages) == 1

    def test_token_env_names_another_variable(
        self, slack_peer: SlackAPIPeer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``token_env`` reads the token from the variable it names."""
        monkeypatch.setenv("OPS_SLACK_TOKEN", TOKEN)
        n = SlackNotifier(token_env="OPS_SLACK_TOKEN", base_url=slack_peer.url, users={"d": DANA})
        n.send(sample_notification(recipient="d"))
        assert len(slack_peer.messages) == 1

    @pytest.mark.parametrize("bad", [5, "", None, "1BAD VAR", "SLACK-TOKEN", "A=B"])
    def test_token_env_must_be_a_variable_name(self, bad: object) -> None:
        with pytest.raises(ConfigError, match="token_env must name an environment variable") as e:
            SlackNotifier(token_env=bad)  # type: ignore[arg-type]
        assert e.value.field == "token_env"

    def test_token_env_is_checked_when_a_token_is_given_too(self) -> None:
        """A malformed token_env is refused even though ``token`` makes it unused."""
        with pytest.raises(ConfigError, match="'1BAD VAR'") as e:
            SlackNotifier(token=TOKEN, token_env="1BAD VAR")
        assert e.value.field == "token_env"

    def test_a_token_with_a_line_break_is_refused_without_echoing_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1111-SECRETPART\nxoxb-2222")
        with pytest.raises(ConfigError, match="one line of visible ASCII") as info:
            SlackNotifier()
        assert "SECRETPART" not in str(info.value)

    def test_a_missing_token_is_a_config_error_naming_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No token and no environment variable: ConfigError naming token_env's value."""
        monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
        with pytest.raises(ConfigError, match="'SLACK_BOT_TOKEN'") as info:
            SlackNotifier()
        assert info.value.field == "token_env"

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"base_url": "slack.com/api"}, "base_url"),
            ({"base_url": "http://"}, "base_url"),
            ({"base_url": "https:///api/"}, "base_url"),
            ({"base_url": "https://sl ack.com/api/"}, "base_url"),
            ({"base_url": "https://slack.com:port/api/"}, "base_url"),
            ({"timeout": 0}, "timeout"),
            ({"timeout": "10"}, "timeout"),
            ({"users": {"dana": "dana"}}, "users.dana"),
            ({"users": ["dana"]}, "users"),
            ({"default_domain": "a@b.com"}, "default_domain"),
            ({"default_domain": "exa$mple..com"}, "default_domain"),
            ({"default_domain": "example.com."}, "default_domain"),
            ({"default_domain": "-example.com"}, "default_domain"),
            ({"token_env": "1BAD VAR"}, "token_env"),
            ({"users": {"a": "U12345678", "@a": "U87654321"}}, "users"),
        ],
    )
    def test_malformed_options_are_config_errors(self, options: dict[str, Any], field: str) -> None:
        """A bad option raises ConfigError whose field names it."""
        with pytest.raises(ConfigError) as info:
            SlackNotifier(token=TOKEN, **options)
        assert info.value.field == field
        assert field.split(".")[0] in str(info.value)

    @pytest.mark.parametrize(
        "users",
        [
            {"a": "U12345678", "@a": "U87654321"},
            {"Dana": "U12345678", "dana": "dana@example.com"},
            {"@LEE": "lee@example.com", " lee": "U87654321"},
        ],
    )
    def test_users_naming_one_handle_twice_is_a_config_error(self, users: dict[str, str]) -> None:
        """Keys that differ only by '@', case or spaces name one person: the later no longer
        silently wins."""
        with pytest.raises(ConfigError, match=r"slack users names '\w+' twice") as info:
            SlackNotifier(token=TOKEN, users=users)
        assert info.value.field == "users"

    def test_default_domain_accepts_domain_names(self) -> None:
        """Letters, digits and inner hyphens per label; a leading '@' is dropped."""
        for domain, expected in [
            ("example.com", "example.com"),
            ("@mail-1.example.co.uk", "mail-1.example.co.uk"),
            ("localhost", "localhost"),
        ]:
            assert SlackNotifier(token=TOKEN, default_domain=domain).default_domain == expected

    def test_a_base_url_without_trailing_slash_is_accepted(self, slack_peer: SlackAPIPeer) -> None:
        """``…/api`` works as well as ``…/api/``."""
        n = SlackNotifier(token=TOKEN, base_url=slack_peer.url.rstrip("/"), users={"dana": DANA})
        n.send(sample_notification())
        assert len(slack_peer.messages) == 1

    def test_an_upper_case_scheme_is_accepted(self, slack_peer: SlackAPIPeer) -> None:
        """Schemes are case-insensitive: ``HTTP://…`` works and is kept in lower case."""
        upper = "HTTP" + slack_peer.url[len("http") :]
        n = SlackNotifier(token=TOKEN, base_url=upper, users={"dana": DANA})
        assert n.base_url == slack_peer.url
        n.send(sample_notification())
        assert len(slack_peer.messages) == 1


class TestBuildBlocks:
    def test_escapes_mrkdwn_control_characters(self) -> None:
        """'<', '>' and '&' in record text cannot form links or mentions."""
        n = sample_notification(text="lead <!channel> & co", handoff_id="a<b>")
        text = _texts(build_blocks(n))
        assert "&lt;!channel&gt; &amp; co" in text
        assert "<!channel>" not in text

    def test_the_fallback_text_is_escaped_too(
        self, notifier: SlackNotifier, slack_peer: SlackAPIPeer
    ) -> None:
        """Slack parses the push/fallback ``text`` as mrkdwn: a lead named ``<!channel>``
        must not ping there either."""
        n = sample_notification(text="lead <!channel> <https://evil.example|crm> & co")
        notifier.send(n)
        [message] = slack_peer.messages
        assert message["text"] == (
            "lead &lt;!channel&gt; &lt;https://evil.example|crm&gt; &amp; co"
        )

        """The deadline is a ``<!date^…>`` token with the ISO text as fallback."""
        text = _texts(build_blocks(sample_notification()))
        assert "<!date^1772443800^{date_short_pretty} {time}|2026-03-02T09:30:00+00:00>" in text

    def test_a_missing_or_non_http_link_shows_the_plain_id(self) -> None:
        """Only http(s) links become mrkdwn links."""
        n = sample_notification(payload={"handoff": {}, "link": "javascript:alert(1)"})
        text = _texts(build_blocks(n))
        assert "*Record*\nlead-1" in text
        assert "javascript" not in text

    def test_long_text_is_cut_to_block_kit_limits(self) -> None:
        """A section's text stays within Slack's 3,000 characters."""
        blocks = build_blocks(sample_notification(text="x" * 5000, subject="s" * 400))
        assert len(blocks[0]["text"]["text"]) == 150
        assert len(blocks[1]["text"]["text"]) == 3000


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [("7", 7.0), (" 1.5 ", 1.5), ("-3", 0.0), ("soon", None), (None, None), ("nan", None)],
    )
    def test_reads_seconds(self, value: str | None, expected: float | None) -> None:
        """Delta-seconds are read as a number; garbage gives None, negatives 0."""
        assert parse_retry_after(value) == expected

    def test_reads_an_http_date(self) -> None:
        """An HTTP date is turned into seconds from ``now``."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
