"""The smtp notifier against real SMTP servers on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from slakit.errors import ConfigError, PermanentNotifyError, TransientNotifyError
from slakit.testing.notifiers import sample_notification
from slakit_smtp import SMTPNotifier, message_id_for
from smtp_peers import PASSWORD, USER, Certificate, Peer, ScriptedHandler

# The auth-required servers deliberately allow AUTH without TLS (loopback only).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SENDER = "SLA desk <sla@example.com>"


def notifier_for(peer: Peer, **options: Any) -> SMTPNotifier:
    config: dict[str, Any] = {
        "host": peer.host,
        "port": peer.port,
        "from": SENDER,
        "default_domain": "example.com",
        "timeout": 5,
    }
    config.update(options)
    return SMTPNotifier.from_config(config)


def parts(msg: EmailMessage) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        out[part.get_content_type()] = part.get_content()
    return out


class TestMessageIdFor:
    def test_is_stable_and_derived_from_the_key(self) -> None:
        """The same idempotency key always gives the same Message-ID; another key another."""
        a = message_id_for("lead-1:0:notify:owner:alice")
        assert a == message_id_for("lead-1:0:notify:owner:alice")
        assert a != message_id_for("lead-1:1:notify:owner:alice")
        assert re.fullmatch(r"<[0-9a-f]{32}@slakit>", a)


class TestSMTPNotifierConfig:
    def test_unknown_option_names_the_key(self) -> None:
        """An unknown key raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="'hostname'") as info:
            SMTPNotifier.from_config({"from": "sla@example.com", "hostname": "x"})
        assert info.value.field == "hostname"

    def test_from_is_required(self) -> None:
        """Without a from address the notifier cannot be built."""
        with pytest.raises(ConfigError, match="'from'"):
            SMTPNotifier.from_config({"host": "localhost"})

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("security", "tls"),
            ("port", 0),
            ("port", "25"),
            ("timeout", 0),
            ("default_domain", "exa mple.com"),
            ("default_domain", "example.com\n"),
            ("reply_to", "not an address"),
            ("local_hostname", 5),
            ("local_hostname", "x\r\nRSET"),
            ("local_hostname", "host\n"),
            ("host", "a\r\nb"),
            ("host", "smtp example.com"),
            ("host", "smtp.exa$mple.com"),
            ("host", "smtp..example.com"),
            ("host", "-smtp.example.com"),
            ("host", "[::1]"),
            ("host", "smtp.example.com:25"),
            ("host", 25),
        ],
    )
    def test_bad_values_name_field_and_value(self, key: str, value: Any) -> None:
        """A malformed option raises ConfigError whose message names the field and value."""
        with pytest.raises(ConfigError) as info:
            SMTPNotifier.from_config({"from": "sla@example.com", key: value})
        assert key in str(info.value)
        assert repr(value) in str(info.value)

    def test_a_password_or_ssl_context_of_the_wrong_type_is_a_config_error(self) -> None:
        """The password is named but not echoed; an ssl_context must be an SSLContext."""
        with pytest.raises(ConfigError, match="password must be a string") as info:
            SMTPNotifier.from_config({"from": "sla@example.com", "username": "u", "password": 5})
        assert "5" not in str(info.value)
        with pytest.raises(ConfigError, match=r"ssl\.SSLContext") as ctx:
            SMTPNotifier(sender="sla@example.com", ssl_context="x")  # type: ignore[arg-type]
        assert ctx.value.field == "ssl_context"
        for name in ("mail.example.com", "[192.0.2.1]", "[IPv6:2001:db8::1]"):
            assert (
                SMTPNotifier(sender="sla@example.com", local_hostname=name).local_hostname == name
            )

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("smtp.example.com", "smtp.example.com"),
            (" smtp.example.com ", "smtp.example.com"),
            ("smtp.example.com.", "smtp.example.com."),
            ("mail_relay", "mail_relay"),
            ("localhost", "localhost"),
            ("192.0.2.1", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
        ],
    )
    def test_host_is_a_host_name_or_ip_address(self, host: str, expected: str) -> None:
        """A host name (underscores allowed, as in container names) or an IP address."""
        assert SMTPNotifier(sender="sla@example.com", host=host).host == expected

    def test_bad_address_entry_names_the_handle(self) -> None:
        """A malformed addresses entry is reported with its handle and value."""
        with pytest.raises(ConfigError, match=r"addresses\.alice .* 'alice at example'"):
            SMTPNotifier.from_config(
                {"from": "sla@example.com", "addresses": {"alice": "alice at example"}}
            )

    def test_address_keys_may_carry_an_at(self) -> None:
        """ "@bob" in addresses serves recipient bob and @bob, as "bob" does; both is an error."""
        n = SMTPNotifier.from_config(
            {
                "from": "sla@example.com",
                "addresses": {"@bob": "robert.b@partner.example"},
                "default_domain": "example.com",
            }
        )
        assert n.address_for("bob") == n.address_for("@bob") == "robert.b@partner.example"
        with pytest.raises(ConfigError, match="names 'bob' twice"):
            SMTPNotifier.from_config(
                {
                    "from": "sla@example.com",
                    "addresses": {"@bob": "a@x.example", "bob": "b@x.example"},
                }
            )

    def test_default_port_follows_security(self) -> None:
        """Without a port, ssl uses 465, starttls 587 and none 25."""
        ports = {
            mode: SMTPNotifier(sender="sla@example.com", security=mode).port
            for mode in ("ssl", "starttls", "none")
        }
        assert ports == {"ssl": 465, "starttls": 587, "none": 25}

    def test_password_env_is_read_when_built(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """password_env names the variable that holds the password; the repr never shows it."""
        monkeypatch.setenv("SLAKIT_TEST_SMTP_PASSWORD", "hunter2")
        n = SMTPNotifier.from_config(
            {
                "from": "sla@example.com",
                "username": "u",
                "password_env": "SLAKIT_TEST_SMTP_PASSWORD",
            }
        )
        assert "hunter2" not in repr(n)
        monkeypatch.delenv("SLAKIT_TEST_SMTP_PASSWORD")
        with pytest.raises(ConfigError, match="SLAKIT_TEST_SMTP_PASSWORD"):
            SMTPNotifier.from_config(
                {
                    "from": "sla@example.com",
                    "username": "u",
                    "password_env": "SLAKIT_TEST_SMTP_PASSWORD",
                }
            )

    def test_username_needs_a_password(self) -> None:
        """A username without a password (or the reverse) is a config error."""
        with pytest.raises(ConfigError, match="password"):
            SMTPNotifier(sender="sla@example.com", username="u")
        with pytest.raises(ConfigError, match="username"):
            SMTPNotifier(sender="sla@example.com", password="p")


class TestAddressFor:
    def test_resolution_order(self) -> None:
        """The addresses table wins, then a recipient that is an address, then the domain."""
        n = SMTPNotifier(
            sender="sla@example.com",
            addresses={"alice": "Alice <alice.w@corp.example>"},
            default_domain="example.com",
        )
        assert n.address_for("alice") == "alice.w@corp.example"
        assert n.address_for("@alice") == "alice.w@corp.example"
        assert n.address_for("carol@elsewhere.example") == "carol@elsewhere.example"
        assert n.address_for("bob") == "bob@example.com"

    def test_unknown_handle_without_domain_is_permanent(self) -> None:
        """A handle with no mapping and no default_domain raises PermanentNotifyError."""
        n = SMTPNotifier(sender="sla@example.com")
        with pytest.raises(PermanentNotifyError, match="'bob'"):
            n.address_for("bob")

    def test_handle_unfit_for_an_address_is_permanent(self) -> None:
        """A handle that is not a valid local part is not glued to the domain."""
        n = SMTPNotifier(sender="sla@example.com", default_domain="example.com")
        with pytest.raises(PermanentNotifyError, match="local part"):
            n.address_for("Bob Smith")

    def test_allowed_domains_keep_mail_inside(self) -> None:
        """With allowed_domains, an owner field that is an outside address (a web form's
        input) is refused, permanently, naming it; inside ones and subdomains pass, and
        the addresses table (the operator's own) is always allowed."""
        n = SMTPNotifier(
            sender="sla@example.com",
            addresses={"partner": "p@partner.example"},
            default_domain="example.com",
            allowed_domains=["Example.com", "@corp.example"],
        )
        assert n.address_for("ann@example.com") == "ann@example.com"
        assert n.address_for("ann@EU.Example.com") == "ann@EU.Example.com"
        assert n.address_for("bo@corp.example") == "bo@corp.example"
        assert n.address_for("partner") == "p@partner.example"
        assert n.address_for("bob") == "bob@example.com"
        for outside in ("attacker@evil.example", "x@notexample.com", "y@example.com.evil"):
            with pytest.raises(PermanentNotifyError, match="outside allowed_domains") as err:
                n.address_for(outside)
            assert err.value.value == outside

    @pytest.mark.parametrize("value", ["example.com", ["exa mple.com"], [3], {"a": 1}])
    def test_allowed_domains_must_be_a_list_of_domains(self, value: object) -> None:
        with pytest.raises(ConfigError) as err:
            SMTPNotifier(sender="sla@example.com", allowed_domains=value)  # type: ignore[arg-type]
        assert err.value.field == "allowed_domains"


class TestBuildMessage:
    def test_html_part_is_escaped(self) -> None:
        """Text with markup appears escaped in the HTML part and verbatim in the plain part."""
        n = SMTPNotifier(sender="sla@example.com", default_domain="example.com")
        msg = n.build_message(sample_notification(text="<script>alert(1)</script> & more"))
        body = parts(msg)
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body["text/html"]
        assert "<script>" not in body["text/html"]
        assert "<script>alert(1)</script> & more" in body["text/plain"]

    def test_line_breaks_in_header_values_are_folded(self) -> None:
        """A subject with line breaks cannot inject headers."""
        n = SMTPNotifier(sender="sla@example.com", default_domain="example.com")
        msg = n.build_message(sample_notification(subject="hi\r\nBcc: victim@example.com"))
        assert msg["Bcc"] is None
        assert msg["Subject"] == "hi Bcc: victim@example.com"

    def test_only_web_links_become_anchors(self) -> None:
        """An http(s) link is an anchor; a javascript: link stays escaped text."""
        n = SMTPNotifier(sender="sla@example.com", default_domain="example.com")
        web = n.build_message(
            sample_notification(payload={"link": "https://crm.example/l/1?a=1&b=2"})
        )
        assert '<a href="https://crm.example/l/1?a=1&amp;b=2">' in parts(web)["text/html"]
        assert "Open: https://crm.example/l/1?a=1&b=2" in parts(web)["text/plain"]
        js = n.build_message(sample_notification(payload={"link": "javascript:alert(1)"}))
        assert "<a " not in parts(js)["text/html"]


class TestSMTPNotifierDelivery:
    def test_delivers_a_multipart_message(self, smtp_peer: Callable[..., Peer]) -> None:
        """The server receives one message with the headers and both parts."""
        peer = smtp_peer()
        n = sample_notification(payload={"link": "https://crm.example/leads/1"})
        notifier_for(peer, reply_to="desk@example.com").send(n)
        [got] = peer.handler.received
        assert got.mail_from == "sla@example.com"
        assert got.rcpt_tos == ("dana@example.com",)
        msg = got.message
        assert msg["From"] == SENDER
        assert msg["To"] == "dana@example.com"
        assert msg["Subject"] == "[speed-to-lead] lead-1: step 1x"
        assert msg["Reply-To"] == "desk@example.com"
        assert msg["Message-ID"] == message_id_for(n.idempotency_key)
        assert msg["X-Slakit-Idempotency-Key"] == n.idempotency_key
        assert msg["X-Slakit-Trace-Id"] == n.trace_id
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg.get_content_type() == "multipart/alternative"
        body = parts(msg)
        assert set(body) == {"text/plain", "text/html"}
        assert n.text in body["text/plain"]
        assert n.text in body["text/html"]
        assert 'href="https://crm.example/leads/1"' in body["text/html"]

    def test_a_resend_carries_the_same_message_id(self, smtp_peer: Callable[..., Peer]) -> None:
        """Sending the same notification twice yields two messages a receiver can dedupe."""
        peer = smtp_peer()
        notifier = notifier_for(peer)
        notifier.send(sample_notification())
        notifier.send(sample_notification())
        ids = {r.message["Message-ID"] for r in peer.handler.received}
        assert len(peer.handler.received) == 2
        assert len(ids) == 1

    def test_non_ascii_text_and_subject(self, smtp_peer: Callable[..., Peer]) -> None:
        """Non-ASCII subject and text arrive intact."""
        peer = smtp_peer()
        notifier_for(peer).send(sample_notification(subject="Relance — Zoë", text="Zoë attend ☎"))
        msg = peer.handler.received[0].message
        assert msg["Subject"] == "Relance — Zoë"
        assert "Zoë attend ☎" in parts(msg)["text/plain"]

    def test_login_succeeds(self, smtp_peer: Callable[..., Peer]) -> None:
        """With the right password the server authenticates the session and takes the mail."""
        peer = smtp_peer(auth=True)
        notifier_for(peer, security="none", username=USER, password=PASSWORD).send(
            sample_notification()
        )
        assert len(peer.handler.received) == 1
        assert peer.handler.sessions_authenticated == [True]

    def test_wrong_password_is_permanent(self, smtp_peer: Callable[..., Peer]) -> None:
        """A rejected login raises PermanentNotifyError and sends nothing."""
        peer = smtp_peer(auth=True)
        notifier = notifier_for(peer, security="none", username=USER, password="wrong")
        with pytest.raises(PermanentNotifyError, match="login as 'sla-bot' failed: 535"):
            notifier.send(sample_notification())
        assert peer.handler.received == []

    def test_missing_login_is_permanent(self, smtp_peer: Callable[..., Peer]) -> None:
        """A server that requires a login refuses an anonymous sender with a 5xx."""
        peer = smtp_peer(auth=True)
        with pytest.raises(PermanentNotifyError, match="530"):
            notifier_for(peer).send(sample_notification())

    def test_password_is_not_sent_in_clear_by_default(self, smtp_peer: Callable[..., Peer]) -> None:
        """Without security set and without STARTTLS on offer, a login is refused."""
        peer = smtp_peer(auth=True)
        notifier = notifier_for(peer, username=USER, password=PASSWORD)
        with pytest.raises(PermanentNotifyError, match="STARTTLS"):
            notifier.send(sample_notification())
        assert peer.handler.received == []

    def test_starttls_demanded_but_not_offered_is_permanent(
        self, smtp_peer: Callable[..., Peer]
    ) -> None:
        """security = starttls against a server without STARTTLS fails permanently."""
        peer = smtp_peer()
        with pytest.raises(PermanentNotifyError, match="STARTTLS"):
            notifier_for(peer, security="starttls").send(sample_notification())

    @pytest.mark.parametrize(
        ("stage", "reply", "error"),
        [
            ("rcpt", "451 4.3.0 Mailbox busy, try later", TransientNotifyError),
            ("rcpt", "550 5.1.1 No such user", PermanentNotifyError),
            ("data", "452 4.3.1 Insufficient storage", TransientNotifyError),
            ("data", "554 5.6.0 Message rejected", PermanentNotifyError),
        ],
    )
    def test_reply_codes_split_transient_and_permanent(
        self,
        smtp_peer: Callable[..., Peer],
        stage: str,
        reply: str,
        error: type[Exception],
    ) -> None:
        """A 4xx reply raises TransientNotifyError, a 5xx PermanentNotifyError, with the text."""
        handler = ScriptedHandler(**{stage: [reply]})
        peer = smtp_peer(handler)
        with pytest.raises(error, match=reply.split()[0]) as info:
            notifier_for(peer).send(sample_notification())
        assert reply.split(" ", 2)[2] in str(info.value)
        assert peer.handler.received == []

    def test_connection_refused_is_transient(self, closed_port: int) -> None:
        """Nothing listening raises TransientNotifyError."""
        n = SMTPNotifier(
            sender="sla@example.com", host="127.0.0.1", port=closed_port, default_domain="x.example"
        )
        with pytest.raises(TransientNotifyError, match="cannot connect"):
            n.send(sample_notification())

    def test_silent_server_times_out_as_transient(self, silent_peer: int) -> None:
        """A server that never greets raises TransientNotifyError after the timeout."""
        n = SMTPNotifier(
            sender="sla@example.com",
            host="127.0.0.1",
            port=silent_peer,
            default_domain="x.example",
            timeout=0.3,
        )
        with pytest.raises(TransientNotifyError, match="timed out"):
            n.send(sample_notification())

    def test_unknown_recipient_fails_before_connecting(self, closed_port: int) -> None:
        """An unmapped handle is permanent even when the server is unreachable."""
        n = SMTPNotifier(sender="sla@example.com", host="127.0.0.1", port=closed_port)
        with pytest.raises(PermanentNotifyError, match="no e-mail address"):
            n.send(sample_notification())


class TestSMTPNotifierTLS:
    def test_starttls_with_a_trusted_certificate(
        self, smtp_peer: Callable[..., Peer], certificate: Certificate
    ) -> None:
        """security = starttls upgrades the connection, logs in and delivers."""
        peer = smtp_peer(auth=True, tls_context=certificate.server_context())
        notifier = notifier_for(
            peer,
            security="starttls",
            username=USER,
            password=PASSWORD,
            ssl_context=certificate.client_context(),
        )
        notifier.send(sample_notification())
        assert peer.handler.sessions_authenticated == [True]

    def test_starttls_is_used_when_offered(
        self, smtp_peer: Callable[..., Peer], certificate: Certificate
    ) -> None:
        """With security unset, an offered STARTTLS is taken, so a login may follow."""
        peer = smtp_peer(auth=True, tls_context=certificate.server_context())
        notifier = notifier_for(
            peer, username=USER, password=PASSWORD, ssl_context=certificate.client_context()
        )
        notifier.send(sample_notification())
        assert len(peer.handler.received) == 1

    def test_implicit_tls(self, smtp_peer: Callable[..., Peer], certificate: Certificate) -> None:
        """security = ssl speaks TLS from the first byte."""
        peer = smtp_peer(ssl_context=certificate.server_context())
        notifier_for(peer, security="ssl", ssl_context=certificate.client_context()).send(
            sample_notification()
        )
        assert len(peer.handler.received) == 1

    def test_untrusted_certificate_is_permanent(
        self, smtp_peer: Callable[..., Peer], certificate: Certificate
    ) -> None:
        """A certificate the client does not trust fails permanently and sends nothing."""
        peer = smtp_peer(tls_context=certificate.server_context())
        with pytest.raises(PermanentNotifyError, match="certificate"):
            notifier_for(peer, security="starttls").send(sample_notification())
        assert peer.handler.received == []
