"""The SMTP notifier: one plain-text + HTML e-mail per notification, sent with ``smtplib``."""

from __future__ import annotations

import hashlib
import html
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

from slakit.abc import Notifier
from slakit.errors import ConfigError, NotifyError, PermanentNotifyError, TransientNotifyError
from slakit.notify import is_host, positive_seconds, secret_from, table_option
from slakit.records import Notification

__all__ = ["CONFIG_KEYS", "DEFAULT_PORTS", "SECURITY_MODES", "SMTPNotifier", "message_id_for"]

#: The ``security`` values: plain SMTP, STARTTLS upgrade, or TLS from the first byte.
SECURITY_MODES = ("none", "starttls", "ssl")
#: The port used when ``port`` is not given, by ``security``.
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
#: The keys a ``[[notifiers]]`` table with ``adapter = "smtp"`` may hold.
CONFIG_KEYS = (
    "host",
    "port",
    "security",
    "username",
    "password",
    "password_env",
    "from",
    "addresses",
    "default_domain",
    "allowed_domains",
    "timeout",
    "reply_to",
    "local_hostname",
    "ssl_context",
)

# RFC 5322 dot-atom local part, ASCII only: a handle that passes can be used as-is
# before "@default_domain" without quoting.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
#: An EHLO address literal: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``.
_ADDRESS_LITERAL = re.compile(r"\[[0-9A-Za-z:.]+\]")


def message_id_for(idempotency_key: str) -> str:
    """The ``Message-ID`` of the e-mail for a notification: the same for every retry.

    A receiver (or a mail archive) that sees the same id twice can drop the copy.

    :param idempotency_key: the notification's idempotency key.
    :returns: ``<32 hex digits of sha256(key)@slakit>``.
    """
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@slakit>"


def _one_line(value: str) -> str:
    # Header values may not carry line breaks (header injection); fold them to spaces.
    return " ".join(value.split())


def _check_address(field: str, value: Any) -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ConfigError(
            f"smtp notifier {field} must be an e-mail address, got {value!r}",
            field=field,
            value=value,
        )
    _name, addr = parseaddr(value)
    if not _ADDRESS.match(addr):
        raise ConfigError(
            f"smtp notifier {field} must be an e-mail address, got {value!r}",
            field=field,
            value=value,
        )
    return value


class SMTPNotifier(Notifier):
    """Sends each notification as one e-mail through an SMTP server.

    The message is ``multipart/alternative`` (plain text and escaped HTML) with
    a ``Message-ID`` derived from the idempotency key (see :func:`message_id_for`)
    and the headers ``X-Slakit-Idempotency-Key``, ``X-Slakit-Trace-Id`` and
    ``X-Slakit-Handoff-Id``. One connection per notification; nothing is shared
    between calls, so :meth:`send` is safe from several threads.

    :param host: the SMTP server: a host name or an IP address (IPv6 without brackets).
    :param port: its port; by default 465 for ``ssl``, 587 for ``starttls``, else 25.
    :param security: ``"none"``, ``"starttls"`` or ``"ssl"``. Unset: TLS on port
        465, otherwise STARTTLS when the server offers it; a login is then refused
        over a connection that stayed plain.
    :param username: login name; needs a password.
    :param password: the password (prefer ``password_env``).
    :param password_env: the name of an environment variable holding the password,
        read when the notifier is built.
    :param sender: the ``From`` address (``from`` in config), e.g. ``"SLA <sla@example.com>"``.
    :param addresses: owner handle → e-mail address.
    :param default_domain: when a handle has no entry in ``addresses``, send to
        ``handle@default_domain``.
    :param allowed_domains: when given, a recipient that is itself an e-mail
        address (an owner field filled from a web form, say) is mailed only when
        its domain is one of these or under one; ``addresses`` entries are
        always allowed.
    :param timeout: seconds for connecting and for each server reply.
    :param reply_to: an optional ``Reply-To`` address.
    :param local_hostname: the name sent with ``EHLO`` (default: this host's FQDN).
    :param ssl_context: TLS settings for ``ssl``/``starttls`` (code only; default:
        the system's trust store with hostname checks).
    :raises ConfigError: for a missing or malformed option, naming it.
    """

    def __init__(
        self,
        *,
        sender: str,
        host: str = "localhost",
        port: int | None = None,
        security: str | None = None,
        username: str | None = None,
        password: str | None = None,
        password_env: str | None = None,
        addresses: Mapping[str, str] | None = None,
        default_domain: str | None = None,
        allowed_domains: Sequence[str] | None = None,
        timeout: float = 30.0,
        reply_to: str | None = None,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = "smtp"
        if not isinstance(host, str) or not is_host(host.strip()):
            # A line break here would only fail at the first send, inside smtplib.
            raise ConfigError(
                f"smtp notifier host must be a host name or an IP address, got {host!r}",
                field="host",
                value=host,
            )
        self.host = host.strip()
        if security is not None and security not in SECURITY_MODES:
            raise ConfigError(
                f"smtp notifier security must be one of {', '.join(SECURITY_MODES)}, "
                f"got {security!r}",
                field="security",
                value=security,
            )
        self.security = security
        if port is None:
            port = DEFAULT_PORTS[security] if security is not None else 25
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(
                f"smtp notifier port must be an integer from 1 to 65535, got {port!r}",
                field="port",
                value=port,
            )
        self.port = port
        password = secret_from("smtp notifier", password, password_env, field="password")
        if password is not None and not isinstance(password, str):
            raise ConfigError(
                "smtp notifier password must be a string (not echoed)",
                field="password",
                value="…",
            )
        if (username is None) != (password is None):
            missing = "password (or password_env)" if password is None else "username"
            raise ConfigError(
                f"smtp notifier needs both username and password; {missing} is missing",
                field="password" if password is None else "username",
                value=None,
            )
        if username is not None and not isinstance(username, str):
            raise ConfigError(
                f"smtp notifier username must be a string, got {username!r}",
                field="username",
                value=username,
            )
        self.username = username
        self._password = password
        self.sender = _check_address("from", sender)
        self.envelope_sender = parseaddr(sender)[1]
        self.reply_to = _check_address("reply_to", reply_to) if reply_to is not None else None
        table = table_option("smtp notifier", "addresses", addresses, shape="handle = address")
        # Keys are handles with or without a leading @, as recipients are written.
        self.addresses: dict[str, str] = {}
        for handle, addr in table.items():
            bare = str(handle).strip().lstrip("@")
            if bare in self.addresses:
                raise ConfigError(
                    f"smtp notifier addresses names {bare!r} twice (with and without '@')",
                    field="addresses",
                    value=handle,
                )
            self.addresses[bare] = _check_address(f"addresses.{handle}", addr)
        if default_domain is not None and (
            not isinstance(default_domain, str) or not _DOMAIN.fullmatch(default_domain)
        ):
            raise ConfigError(
                f"smtp notifier default_domain must be a domain name, got {default_domain!r}",
                field="default_domain",
                value=default_domain,
            )
        self.default_domain = default_domain
        self.allowed_domains = _check_domains(allowed_domains)
        self.timeout = positive_seconds("smtp notifier", "timeout", timeout)
        if local_hostname is not None and (
            not isinstance(local_hostname, str)
            or not (_DOMAIN.fullmatch(local_hostname) or _ADDRESS_LITERAL.fullmatch(local_hostname))
        ):
            raise ConfigError(
                f"smtp notifier local_hostname must be a host name, got {local_hostname!r}",
                field="local_hostname",
                value=local_hostname,
            )
        self.local_hostname = local_hostname
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(
                "smtp notifier ssl_context must be an ssl.SSLContext (set it in code), "
                f"got {type(ssl_context).__name__}",
                field="ssl_context",
                value=type(ssl_context).__name__,
            )
        self.ssl_context = ssl_context

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> SMTPNotifier:
        """Build from a ``[[notifiers]]`` table (without ``adapter`` and ``name``).

        :raises ConfigError: for an unknown key, a missing ``from``, or a bad value.
        """
        unknown = sorted(set(options) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"smtp notifier: unknown option {unknown[0]!r} (allowed: {', '.join(CONFIG_KEYS)})",
                field=unknown[0],
                value=options[unknown[0]],
            )
        if "from" not in options:
            raise ConfigError(
                "smtp notifier needs a 'from' address, e.g. from = \"sla@example.com\"",
                field="from",
                value=None,
            )
        kwargs = {k: v for k, v in options.items() if k != "from"}
        return cls(sender=options["from"], **kwargs)

    def __repr__(self) -> str:
        return (
            f"SMTPNotifier(name={self.name!r}, host={self.host!r}, port={self.port!r}, "
            f"security={self.security!r}, from={self.sender!r})"
        )

    # -- building --------------------------------------------------------------

    def address_for(self, recipient: str) -> str:
        """The e-mail address of a recipient handle.

        In order: the ``addresses`` entry (with or without a leading ``@``), the
        recipient itself when it already is an address, ``handle@default_domain``.

        :raises PermanentNotifyError: when none applies.
        """
        bare = recipient.strip().lstrip("@")
        if bare in self.addresses:
            return parseaddr(self.addresses[bare])[1]
        if _ADDRESS.match(bare):
            domain = bare.rpartition("@")[2].lower()
            allowed = self.allowed_domains
            if allowed is not None and not any(
                domain == d or domain.endswith("." + d) for d in allowed
            ):
                raise PermanentNotifyError(
                    f"smtp notifier: recipient {recipient!r} is an address outside "
                    f"allowed_domains ({', '.join(allowed)}); add it to addresses to mail it",
                    field="recipient",
                    value=recipient,
                )
            return bare
        if self.default_domain is not None and _LOCAL_PART.match(bare):
            return f"{bare}@{self.default_domain}"
        hint = (
            "add it to addresses"
            if self.default_domain is None
            else "it cannot be used as an address local part; add it to addresses"
        )
        raise PermanentNotifyError(
            f"smtp notifier has no e-mail address for recipient {recipient!r}: {hint}",
            field="recipient",
            value=recipient,
        )

    def build_message(self, notification: Notification, to: str | None = None) -> EmailMessage:
        """The e-mail for a notification (``to`` defaults to :meth:`address_for`).

        :raises PermanentNotifyError: when the recipient has no address.
        """
        n = notification
        if to is None:
            to = self.address_for(n.recipient)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = _one_line(n.subject)
        msg["Date"] = format_datetime(n.created_at)
        msg["Message-ID"] = message_id_for(n.idempotency_key)
        if self.reply_to is not None:
            msg["Reply-To"] = self.reply_to
        # RFC 3834: tells auto-responders not to answer.
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Slakit-Idempotency-Key"] = _one_line(n.idempotency_key)
        msg["X-Slakit-Trace-Id"] = _one_line(n.trace_id)
        msg["X-Slakit-Handoff-Id"] = _one_line(n.handoff_id)
        link = _link(n)
        msg.set_content(_plain_body(n, link))
        msg.add_alternative(_html_body(n, link), subtype="html")
        return msg

    # -- sending ---------------------------------------------------------------

    def send(self, notification: Notification) -> None:
        """Deliver one notification as one e-mail.

        :raises PermanentNotifyError: unknown recipient, rejected login, a 5xx
            reply, or a server that lacks what ``security`` demands.
        :raises TransientNotifyError: connection failure, timeout, or a 4xx reply.
        """
        to = self.address_for(notification.recipient)
        msg = self.build_message(notification, to)
        where = f"{self.host}:{self.port}"
        try:
            smtp = self._connect()
        except Exception as exc:
            raise _classify(exc, f"smtp {where}: cannot connect") from exc
        try:
            self._secure(smtp)
            if self.username is not None:
                assert self._password is not None
                smtp.login(self.username, self._password)
            smtp.send_message(msg, from_addr=self.envelope_sender, to_addrs=[to])
        except NotifyError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise _classify(exc, f"smtp {where}: login as {self.username!r} failed") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classify(exc, f"smtp {where}: recipient {to!r} refused") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _classify(exc, f"smtp {where}: sender {self.envelope_sender!r} refused") from exc
        except Exception as exc:
            raise _classify(exc, f"smtp {where}: sending to {to!r} failed") from exc
        finally:
            _quit_quietly(smtp)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl" or (self.security is None and self.port == 465):
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._context(),
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context if self.ssl_context is not None else ssl.create_default_context()

    def _secure(self, smtp: smtplib.SMTP) -> None:
        if isinstance(smtp, smtplib.SMTP_SSL):
            return
        smtp.ehlo()
        if self.security == "starttls" or (self.security is None and smtp.has_extn("starttls")):
            # Raises SMTPNotSupportedError when the server does not offer it: permanent.
            smtp.starttls(context=self._context())
            smtp.ehlo()
        elif self.security is None and self.username is not None:
            raise PermanentNotifyError(
                f"smtp {self.host}:{self.port} offers no STARTTLS; refusing to send the "
                'password in clear (set security = "none" to allow it)',
                field="security",
                value=self.security,
            )


def _link(n: Notification) -> str | None:
    link = n.payload.get("link")
    if not isinstance(link, str) or not link.strip():
        return None
    return link.strip()


def _plain_body(n: Notification, link: str | None) -> str:
    lines = [n.text, ""]
    if link is not None:
        lines += [f"Open: {link}", ""]
    lines += [
        f"Handoff: {n.handoff_id}",
        f"Policy: {n.policy}, step {n.step} (stage {n.stage})",
        f"Trace: {n.trace_id}",
    ]
    return "\n".join(lines) + "\n"


def _html_body(n: Notification, link: str | None) -> str:
    e = html.escape
    text = "<br>\n".join(e(line) for line in n.text.splitlines()) or e(n.text)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>' + e(n.subject) + "</title></head><body>",
        f"<p>{text}</p>",
    ]
    # Only web links become anchors; anything else (javascript:, data:) stays text.
    if link is not None and urlsplit(link).scheme in ("http", "https"):
        parts.append(f'<p><a href="{e(link)}">Open the record</a></p>')
    elif link is not None:
        parts.append(f"<p>{e(link)}</p>")
    parts += [
        '<table style="font-size:smaller;color:#555">',
        f"<tr><th align=left>Handoff</th><td>{e(n.handoff_id)}</td></tr>",
        f"<tr><th align=left>Policy</th><td>{e(n.policy)}</td></tr>",
        f"<tr><th align=left>Step</th><td>{e(n.step)} (stage {n.stage})</td></tr>",
        f"<tr><th align=left>Trace</th><td>{e(n.trace_id)}</td></tr>",
        "</table>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {_one_line(text)}".strip()


def _by_code(code: int, message: str) -> NotifyError:
    # 4xx is the server saying "not now"; 5xx (and anything else it chose to say) is "never".
    if 400 <= code < 500:
        return TransientNotifyError(message)
    if 500 <= code < 600:
        return PermanentNotifyError(message)
    return TransientNotifyError(message)


def _classify(exc: BaseException, what: str) -> NotifyError:
    """Map an smtplib/socket failure to the outbox's transient/permanent split."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        text = "; ".join(_reply_text(code, msg) for code, msg in replies)
        message = f"{what}: {text}"
        if any(400 <= code < 500 for code, _ in replies):
            return TransientNotifyError(message)
        return PermanentNotifyError(message)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, f"{what}: {_reply_text(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentNotifyError(f"{what}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentNotifyError(f"{what}: TLS certificate not trusted: {exc.verify_message}")
    if isinstance(exc, TimeoutError):
        return TransientNotifyError(f"{what}: timed out")
    if isinstance(exc, smtplib.SMTPException | OSError):
        return TransientNotifyError(f"{what}: {type(exc).__name__}: {exc}")
    return TransientNotifyError(f"{what}: {type(exc).__name__}: {exc}")


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    # The message is already handed over (or the attempt failed); a failing QUIT must
    # not turn a delivered message into a retry, which would send it twice.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _check_domains(value: Any) -> tuple[str, ...] | None:
    """``allowed_domains``: ``None``, or a list of domain names (kept in lower case).

    :raises ConfigError: naming the option for anything else.
    """
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(
            f"smtp notifier allowed_domains must be a list of domain names, got {value!r}",
            field="allowed_domains",
            value=value,
        )
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _DOMAIN.fullmatch(item.lstrip("@")):
            raise ConfigError(
                f"smtp notifier allowed_domains holds {item!r}, which is not a domain name",
                field="allowed_domains",
                value=item,
            )
        out.append(item.lstrip("@").lower())
    return tuple(out)
