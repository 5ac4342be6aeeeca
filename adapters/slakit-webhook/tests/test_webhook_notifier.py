"""The webhook notifier against a local receiver that verifies with ``standardwebhooks``."""

from __future__ import annotations

import json
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest

from slakit.errors import ConfigError, PermanentNotifyError, TransientNotifyError
from slakit.testing.notifiers import sample_notification
from slakit_webhook import decode_secret, generate_secret, sign, webhook_id
from slakit_webhook.notifier import WebhookNotifier, parse_retry_after
from webhook_receiver import SECRET, Answer, WebhookReceiver


class TestWebhookSend:
    def test_posts_signed_json_the_receiver_verifies(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """The request verifies with an independent Standard Webhooks implementation."""
        n = sample_notification()
        before = int(time.time())
        notifier.send(n)

        [delivery] = receiver.deliveries
        assert delivery.outcome == "handled"
        headers = delivery.headers
        assert headers["webhook-id"] == n.idempotency_key
        assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
        assert headers["webhook-signature"].startswith("v1,")
        assert headers["content-type"] == "application/json"
        assert headers["x-source"] == "slakit-tests"
        assert headers["user-agent"].startswith("slakit-webhook/")
        payload = receiver.handled[n.idempotency_key]
        assert payload["type"] == "slakit.notification"
        assert payload["timestamp"] == "2026-03-02T09:30:00Z"
        assert payload["data"] == {
            "idempotency_key": n.idempotency_key,
            "handoff_id": "lead-1",
            "policy": "speed-to-lead",
            "stage": 0,
            "step": "1x",
            "action": "notify:owner",
            "recipient": "dana",
            "subject": n.subject,
            "text": n.text,
            "trace_id": n.trace_id,
            "link": "https://crm.example.com/leads/lead-1",
            "handoff": dict(n.payload["handoff"]),
        }
        handoff = payload["data"]["handoff"]
        assert (handoff["id"], handoff["owner"], handoff["channel"]) == ("lead-1", "dana", "web")

    def test_a_receiver_with_another_secret_rejects_it_and_that_is_permanent(
        self, receiver: WebhookReceiver
    ) -> None:
        """The signature is real: a different key fails verification (401, dead-letter)."""
        n = WebhookNotifier(receiver.url, secret=generate_secret())
        with pytest.raises(PermanentNotifyError, match="HTTP 401"):
            n.send(sample_notification())
        assert receiver.outcomes() == ["rejected"]
        n.close()

    def test_without_a_secret_requests_are_unsigned(self) -> None:
        """No secret: webhook-id and webhook-timestamp are sent, webhook-signature is not."""
        receiver = WebhookReceiver(secret=None)
        with receiver.running():
            n = WebhookNotifier(receiver.url)
            assert not n.signed
            n.send(sample_notification())
            n.close()
        [delivery] = receiver.deliveries
        assert "webhook-signature" not in delivery.headers
        assert delivery.headers["webhook-id"] == "lead-1:0:notify:owner:dana"

    def test_a_non_ascii_key_is_sent_as_a_stable_header_safe_id(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """A recipient like 'josé' percent-encodes the id; the payload keeps the key as is."""
        key = "lead-9:1:notify:@josé:josé"
        notifier.send(sample_notification(idempotency_key=key, recipient="josé"))
        [delivery] = receiver.deliveries
        assert delivery.headers["webhook-id"] == webhook_id(key) == webhook_id(key)
        assert delivery.headers["webhook-id"].isascii()
        assert json.loads(delivery.body)["data"]["idempotency_key"] == key

    def test_an_upper_case_scheme_is_accepted(self, receiver: WebhookReceiver) -> None:
        """Schemes are case-insensitive: ``HTTP://…`` posts like ``http://…``."""
        assert receiver.url.startswith("http://")
        n = WebhookNotifier("HTTP://" + receiver.url.removeprefix("http://"), secret=SECRET)
        n.send(sample_notification())
        n.close()
        assert receiver.outcomes() == ["handled"]

    def test_sending_twice_gives_the_receiver_the_same_id_to_dedupe_on(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """A replayed notification verifies, is known by its webhook-id and is not handled again."""
        notifier.send(sample_notification())
        notifier.send(sample_notification())
        assert receiver.outcomes() == ["handled", "duplicate"]
        assert len(receiver.handled) == 1


class TestWebhookErrors:
    @pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
    def test_client_errors_are_permanent(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier, status: int
    ) -> None:
        """4xx other than 408 and 429 can never succeed: PermanentNotifyError."""
        receiver.script(Answer(status, body="no such hook"))
        with pytest.raises(PermanentNotifyError, match=f"HTTP {status}: no such hook"):
            notifier.send(sample_notification())

    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
    def test_timeouts_rate_limits_and_server_errors_are_transient(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier, status: int
    ) -> None:
        """408, 429 and 5xx raise TransientNotifyError without a retry_after when none is given."""
        receiver.script(Answer(status))
        with pytest.raises(TransientNotifyError, match=f"HTTP {status}") as info:
            notifier.send(sample_notification())
        assert info.value.retry_after is None

    def test_retry_after_seconds_is_passed_on(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """429 with ``Retry-After: 90`` gives retry_after 90, and send does not wait."""
        receiver.script(Answer(429, {"Retry-After": "90"}))
        started = time.monotonic()
        with pytest.raises(TransientNotifyError) as info:
            notifier.send(sample_notification())
        assert info.value.retry_after == 90
        assert time.monotonic() - started < 5

    def test_retry_after_as_an_http_date_is_passed_on(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """503 with an HTTP-date ``Retry-After`` gives the seconds until then."""
        receiver.script(Answer(503, {"Retry-After": formatdate(time.time() + 120, usegmt=True)}))
        with pytest.raises(TransientNotifyError) as info:
            notifier.send(sample_notification())
        assert info.value.retry_after is not None
        assert 110 <= info.value.retry_after <= 121

    def test_a_redirect_is_permanent_and_not_followed(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """A 3xx means the URL is wrong; the POST is not replayed elsewhere."""
        receiver.script(Answer(301, {"Location": "http://127.0.0.1:9/elsewhere"}))
        with pytest.raises(PermanentNotifyError, match="HTTP 301"):
            notifier.send(sample_notification())
        assert len(receiver.deliveries) == 1

    def test_errors_name_the_host_not_the_path(
        self, receiver: WebhookReceiver, notifier: WebhookNotifier
    ) -> None:
        """Webhook paths are often secrets; messages (and so traces) leave them out."""
        receiver.script(Answer(404))
        with pytest.raises(PermanentNotifyError) as info:
            notifier.send(sample_notification())
        assert "/hooks/slakit" not in str(info.value)
        assert "http://127.0.0.1:" in str(info.value)

    def test_a_refused_connection_is_transient(self) -> None:
        """Nothing listening: TransientNotifyError."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        n = WebhookNotifier(f"http://127.0.0.1:{port}/hook", secret=SECRET)
        with pytest.raises(TransientNotifyError, match="ConnectError"):
            n.send(sample_notification())
        n.close()

    def test_a_slow_receiver_times_out_as_transient(self, receiver: WebhookReceiver) -> None:
        """A receiver slower than ``timeout``: TransientNotifyError after ``timeout``."""
        receiver.script(Answer(200, delay=2.0))
        n = WebhookNotifier(receiver.url, secret=SECRET, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientNotifyError, match=r"timed out after 0\.3 s"):
            n.send(sample_notification())
        assert time.monotonic() - started < 1.5
        n.close()


class TestWebhookConfig:
    def test_the_secret_comes_from_secret_env(
        self, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``secret_env`` names the variable holding the secret."""
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        n = WebhookNotifier(receiver.url, secret_env="HOOK_SECRET")
        n.send(sample_notification())
        assert receiver.outcomes() == ["handled"]
        n.close()

    def test_an_unset_secret_env_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Asking for a variable that is not set fails at build time, naming it."""
        monkeypatch.delenv("HOOK_SECRET", raising=False)
        with pytest.raises(ConfigError, match="'HOOK_SECRET'") as info:
            WebhookNotifier("https://example.com/hook", secret_env="HOOK_SECRET")
        assert info.value.field == "secret_env"

    def test_headers_env_reads_header_values_from_the_environment(
        self, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A token for the receiver's header auth can stay out of slakit.toml."""
        monkeypatch.setenv("HOOK_TOKEN", "s3cret-token")
        n = WebhookNotifier(
            receiver.url, secret=SECRET, headers_env={"X-Slakit-Token": "HOOK_TOKEN"}
        )
        n.send(sample_notification())
        assert receiver.deliveries[0].headers["x-slakit-token"] == "s3cret-token"
        n.close()

    def test_an_unset_headers_env_variable_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A header whose variable is not set fails at build time, naming both."""
        monkeypatch.delenv("HOOK_TOKEN", raising=False)
        with pytest.raises(ConfigError, match=r"X-Token.*'HOOK_TOKEN'") as info:
            WebhookNotifier("https://example.com/hook", headers_env={"X-Token": "HOOK_TOKEN"})
        assert info.value.field == "headers_env.X-Token"

    @pytest.mark.parametrize(
        ("headers", "field", "message"),
        [
            ({"X Bad": "v"}, "headers.X Bad", "is not a header name"),
            ({"X-A": "v\r\nInjected: 1"}, "headers.X-A", "one line of ASCII"),
            ({"X-A": "caf\u00e9 \u20ac"}, "headers.X-A", "one line of ASCII"),
        ],
    )
    def test_a_header_that_cannot_be_sent_is_a_config_error(
        self, headers: dict[str, str], field: str, message: str
    ) -> None:
        """Caught when the engine is built, not as a failure on every send."""
        with pytest.raises(ConfigError, match=message) as info:
            WebhookNotifier("https://example.com/hook", headers=headers)
        assert info.value.field == field

    def test_a_header_value_from_the_environment_is_checked_too(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOOK_TOKEN", "abc\ndef")
        with pytest.raises(ConfigError, match="one line of ASCII") as info:
            WebhookNotifier("https://example.com/hook", headers_env={"X-Token": "HOOK_TOKEN"})
        assert "abc" not in str(info.value)  # a token is not echoed

    def test_a_port_out_of_range_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="outside 1-65535"):
            WebhookNotifier("http://127.0.0.1:99999/hook")

    @pytest.mark.parametrize(
        "url",
        [
            "https://user:s3cretpw@hooks.example.com:99999/hook/TOKEN123",
            "https://user:s3cretpw@/hook/TOKEN123",
            "https://user:s3cretpw@hooks.example.com:x/hook/TOKEN123",
            "https://user:s3cretpw@hooks example.com/hook/TOKEN123",
            "ftp://user:s3cretpw@hooks.example.com/hook/TOKEN123",
        ],
    )
    def test_a_bad_url_is_named_by_its_host_only(self, url: str) -> None:
        """Credentials in the URL's user info or path stay out of the message."""
        with pytest.raises(ConfigError) as info:
            WebhookNotifier(url)
        text = f"{info.value} {info.value.value}"
        assert "s3cretpw" not in text
        assert "TOKEN123" not in text

    def test_a_header_in_both_tables_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same header from headers and headers_env is ambiguous."""
        monkeypatch.setenv("HOOK_TOKEN", "x")
        with pytest.raises(ConfigError, match="both"):
            WebhookNotifier(
                "https://example.com/hook",
                headers={"x-token": "a"},
                headers_env={"X-Token": "HOOK_TOKEN"},
            )

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            ({"url": "ftp://example.com/x"}, "url"),
            ({"url": "example.com/hook"}, "url"),
            ({"url": "https://"}, "url"),
            ({"secret": "whsec_not base64!"}, "secret"),
            ({"secret": "whsec_"}, "secret"),
            ({"secret": SECRET, "secret_env": "X"}, "secret_env"),
            ({"timeout": -1}, "timeout"),
            ({"timeout": True}, "timeout"),
            ({"headers": {"Webhook-Id": "x"}}, "headers.Webhook-Id"),
            ({"headers": {"X-Count": 3}}, "headers.X-Count"),
            ({"headers": ["X-A"]}, "headers"),
            ({"headers_env": {"Webhook-Signature": "X"}}, "headers_env.Webhook-Signature"),
            ({"url": "https://h ex/x"}, "url"),
            ({"url": "https://exa$mple.com/x"}, "url"),
            ({"url": "https://hooks..example.com/x"}, "url"),
            ({"url": "https://-hooks.example.com/x"}, "url"),
            ({"headers": {"Host": "evil.example"}}, "headers.Host"),
            ({"headers": {"content-length": "0"}}, "headers.content-length"),
            ({"headers": {"Content-Type": "text/plain"}}, "headers.Content-Type"),
            ({"headers": {"Transfer-Encoding": "chunked"}}, "headers.Transfer-Encoding"),
            ({"headers": {"Connection": "close"}}, "headers.Connection"),
            ({"headers": {"webhook-timestamp": "0"}}, "headers.webhook-timestamp"),
            ({"headers_env": {"host": "X"}}, "headers_env.host"),
        ],
    )
    def test_malformed_options_are_config_errors(self, options: dict[str, Any], field: str) -> None:
        """A bad option raises ConfigError whose field names it."""
        options = {"url": "https://example.com/hook", **options}
        with pytest.raises(ConfigError) as info:
            WebhookNotifier(**options)
        assert info.value.field == field

    @pytest.mark.parametrize(
        "url",
        [
            "HTTPS://hooks.example.com/x",
            "Https://hooks.example.com/x",
            "https://hooks.example.com./x",
            "https://hook_svc:8080/x",
            "https://192.0.2.1/x",
            "https://[2001:db8::1]:8443/x",
            "https://bücher.example/x",
        ],
    )
    def test_urls_with_a_valid_host_are_accepted(self, url: str) -> None:
        """Any case of scheme; host names, IDNs and IP literals."""
        WebhookNotifier(url).close()

    def test_another_scheme_is_named_in_the_message(self) -> None:
        """The message says which scheme was given, not just that it is wrong."""
        with pytest.raises(ConfigError, match="got scheme 'ftp'") as info:
            WebhookNotifier("ftp://example.com/x")
        assert info.value.field == "url"

    def test_a_reserved_header_names_what_sets_it(self) -> None:
        """Host and the other transport headers are set by the HTTP client."""
        with pytest.raises(ConfigError, match="cannot be replaced") as info:
            WebhookNotifier("https://example.com/hook", headers={"Host": "evil.example"})
        assert info.value.field == "headers.Host"

    def test_a_bad_secret_is_not_echoed(self) -> None:
        """The error for a malformed secret does not repeat the secret."""
        with pytest.raises(ConfigError) as info:
            WebhookNotifier("https://example.com/hook", secret="whsec_hunter2!!")
        assert "hunter2" not in str(info.value)
        assert info.value.value is None


class TestSignature:
    def test_matches_the_standard_webhooks_reference_vector(self) -> None:
        """The spec's example secret, id, timestamp and payload give its signature."""
        key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def test_secrets_decode_with_or_without_prefix_and_padding(self) -> None:
        """``whsec_`` and base64 padding are optional."""
        secret = generate_secret(nbytes=16)
        assert secret.startswith("whsec_")
        raw = secret.removeprefix("whsec_")
        assert len(decode_secret(secret)) == 16
        assert decode_secret(raw) == decode_secret(raw.rstrip("=")) == decode_secret(secret)

    def test_header_safe_keys_are_their_own_id(self) -> None:
        """An ASCII key without spaces or '%' is used unchanged."""
        assert webhook_id("lead-1:0:notify:owner:dana@example.com") == (
            "lead-1:0:notify:owner:dana@example.com"
        )
        assert webhook_id("a b%c") == "a%20b%25c"


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [("7", 7.0), ("0", 0.0), ("-3", 0.0), ("later", None), (None, None), ("inf", None)],
    )
    def test_reads_seconds(self, value: str | None, expected: float | None) -> None:
        """Delta-seconds are read as a number; garbage gives None, negatives 0."""
        assert parse_retry_after(value) == expected

    def test_reads_an_http_date(self) -> None:
        """An HTTP date is turned into seconds from ``now``."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
