"""Real SMTP peers for the tests: aiosmtpd servers on 127.0.0.1 with scripted replies."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "sla-bot"
PASSWORD = "correct horse"


@attrs.frozen
class Received:
    """One message a test server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        """The parsed message."""
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class ScriptedHandler:
    """Accepts mail, except that the first RCPT/DATA commands get the scripted replies.

    :param rcpt: replies for the first RCPT commands, in order (e.g. ``"451 4.3.0 later"``);
        a 2xx reply accepts the recipient.
    :param data: replies for the first DATA commands, in order.
    """

    def __init__(self, rcpt: list[str] | None = None, data: list[str] | None = None) -> None:
        self.rcpt = list(rcpt or [])
        self.data = list(data or [])
        self.received: list[Received] = []
        self.rcpt_attempts = 0
        self.sessions_authenticated: list[bool] = []
        self._lock = threading.Lock()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self._lock:
            self.rcpt_attempts += 1
            reply = self.rcpt.pop(0) if self.rcpt else "250 OK"
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.data:
                return self.data.pop(0)
            content = envelope.original_content or b""
            self.received.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=content if isinstance(content, bytes) else content.encode(),
                )
            )
            self.sessions_authenticated.append(bool(session.authenticated))
        return "250 Message accepted for delivery"


@attrs.define
class Peer:
    """A running test server."""

    host: str
    port: int
    handler: ScriptedHandler
    controller: Controller


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.frozen
class Certificate:
    """A self-signed certificate for 127.0.0.1 / localhost."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this certificate."""
        return ssl.create_default_context(cafile=str(self.cert))
