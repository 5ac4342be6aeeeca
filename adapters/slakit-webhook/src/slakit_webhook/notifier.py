"""The webhook notifier: one signed JSON POST per notification.

Headers follow the Standard Webhooks spec: ``webhook-id`` is the
notification's idempotency key (the same on every retry and redelivery, so
the receiver can drop duplicates), ``webhook-timestamp`` the Unix time of the
attempt, ``webhook-signature`` the ``v1`` HMAC. Nothing here sleeps: the
engine's outbox schedules retries.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import httpx

from slakit.abc import Notifier
from slakit.errors import ConfigError, PermanentNotifyError, TransientNotifyError
from slakit.notify import (
    is_host,
    parse_retry_after,
    positive_seconds,
    secret_from,
    table_option,
)
from slakit.records import Notification
from slakit_webhook.signature import decode_secret, sign, webhook_id

__all__ = [
    "EVENT_TYPE",
    "RESERVED_HEADERS",
    "WebhookNotifier",
    "build_payload",
    "parse_retry_after",
]

#: The payload's ``type``.
EVENT_TYPE = "slakit.notification"
#: Headers the notifier or its HTTP connection sets; ``headers`` may not replace them.
#: The Standard Webhooks three, the body's type and length, ``host`` (the URL's) and
#: the hop-by-hop headers of the connection itself.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class WebhookNotifier(Notifier):
    """POSTs each notification as JSON to one URL, signed per Standard Webhooks.

    A 2xx answer means delivered. 408, 429, 5xx, timeouts and network errors
    are transient (``Retry-After`` honoured); any other answer (3xx, 4xx) is
    permanent and dead-letters the notification.

    :param url: where to POST (``http://`` or ``https://``, in any case), with a host
        name or an IP address.
    :param secret: the shared ``whsec_…`` secret; without one (and without
        ``secret_env``) requests carry no ``webhook-signature``.
    :param secret_env: the environment variable holding the secret.
    :param timeout: seconds to wait for the receiver, per attempt.
    :param headers: extra request headers (e.g. an ``Authorization`` the receiver wants).
    :param headers_env: extra request headers whose values are read from
        environment variables: header name → variable name (for tokens kept
        out of ``slakit.toml``).
    :raises ConfigError: for a malformed option or an unset ``secret_env``; the message names it.
    """

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        secret_env: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        headers_env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = "webhook"
        self.url = _check_url(url)
        self._key = _load_secret(secret, secret_env)
        self.timeout = positive_seconds("webhook", "timeout", timeout)
        self.headers = _check_headers(headers, "headers")
        for name, variable in _check_headers(headers_env, "headers_env").items():
            value = os.environ.get(variable, "")
            if not value:
                raise ConfigError(
                    f"webhook headers_env.{name} names {variable!r}, which is not set",
                    field=f"headers_env.{name}",
                    value=variable,
                )
            if name.lower() in {h.lower() for h in self.headers}:
                raise ConfigError(
                    f"webhook header {name!r} is in both headers and headers_env",
                    field=f"headers_env.{name}",
                    value=name,
                )
            _check_header_value("headers_env", name, value)
            self.headers[name] = value
        from slakit_webhook import __version__

        self.client = httpx.Client(
            timeout=self.timeout,
            follow_redirects=False,
            headers={"user-agent": f"slakit-webhook/{__version__}"},
        )
        parsed = httpx.URL(self.url)
        # Webhook URLs often carry a token in their path; errors and traces name the host only.
        self._where = f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}"

    @property
    def signed(self) -> bool:
        """Whether requests carry a ``webhook-signature``."""
        return self._key is not None

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r}, url={self._where + '/…'!r})"

    def send(self, notification: Notification) -> None:
        """POST the notification.

        :raises PermanentNotifyError: on 3xx and 4xx other than 408 and 429.
        :raises TransientNotifyError: on 408, 429, 5xx (with ``retry_after``
            from ``Retry-After``), timeouts and connection errors.
        """
        body = json.dumps(
            build_payload(notification), separators=(",", ":"), ensure_ascii=False, default=str
        ).encode("utf-8")
        msg_id = webhook_id(notification.idempotency_key)
        timestamp = int(time.time())
        headers = {
            **self.headers,
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, msg_id, timestamp, body)
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientNotifyError(
                f"webhook POST to {self._where} timed out after {self.timeout:g} s "
                f"({type(exc).__name__})"
            ) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentNotifyError(
                f"webhook POST to {self._where} cannot be sent: {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientNotifyError(
                f"webhook POST to {self._where} failed: {type(exc).__name__}: {exc}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        message = f"webhook POST to {self._where} answered HTTP {status}{_snippet(response)}"
        if status in (408, 429) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise TransientNotifyError(message, retry_after=retry_after)
        raise PermanentNotifyError(message)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()


def build_payload(notification: Notification) -> dict[str, Any]:
    """The JSON body: ``type``, ``timestamp`` and ``data`` (the step and the handoff).

    ``data`` holds ``idempotency_key``, ``handoff_id``, ``policy``, ``stage``,
    ``step``, ``action``, ``recipient``, ``subject``, ``text``, ``trace_id``,
    ``link`` and ``handoff`` (the record as JSON).
    """
    n = notification
    handoff = n.payload.get("handoff")
    created = n.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "type": EVENT_TYPE,
        "timestamp": created,
        "data": {
            "idempotency_key": n.idempotency_key,
            "handoff_id": n.handoff_id,
            "policy": n.policy,
            "stage": n.stage,
            "step": n.step,
            "action": n.action,
            "recipient": n.recipient,
            "subject": n.subject,
            "text": n.text,
            "trace_id": n.trace_id,
            "link": n.payload.get("link") or None,
            "handoff": dict(handoff) if isinstance(handoff, Mapping) else None,
        },
    }


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f": {text}" if text else ""


def _shown_url(url: str) -> str:
    """``url`` for an error message: scheme and host only, as at run time. Its user
    info, path and query may hold credentials (hook tokens live in paths)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…" if rest else url[:8] + "…"


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise ConfigError(
            f"webhook url must be an http:// or https:// URL, got {url!r}",
            field="url",
            value="…",
        )
    scheme = _SCHEME.match(url)
    # Schemes are case-insensitive: HTTPS://… is https://….
    if scheme is None or scheme.group(1).lower() not in ("http", "https"):
        # Text without a scheme may be a token: not echoed.
        shown = "text without a scheme" if scheme is None else f"scheme {scheme.group(1)!r}"
        raise ConfigError(
            f"webhook url must be an http:// or https:// URL, got {shown}",
            field="url",
            value="…",
        )
    shown = _shown_url(url)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(
            f"webhook url {shown!r} is invalid: {type(exc).__name__}", field="url", value=shown
        ) from None
    if not parsed.host:
        raise ConfigError(f"webhook url {shown!r} has no host", field="url", value=shown)
    if not is_host(parsed.raw_host.decode("ascii", "replace")):
        # httpx percent-encodes a space or a '<' in the host and fails only when sending.
        raise ConfigError(
            f"webhook url {shown!r}: the host is not a host name or an IP address",
            field="url",
            value=shown,
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(
            f"webhook url {shown!r} has port {parsed.port}, outside 1-65535",
            field="url",
            value=shown,
        )
    return url


#: A URL's scheme, up to ``://``.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")


def _load_secret(secret: str | None, secret_env: str | None) -> bytes | None:
    value = secret_from("webhook", secret, secret_env, field="secret")
    if value is None:
        return None
    # decode_secret refuses a set but blank variable as an empty secret.
    return decode_secret(value, field="secret" if secret_env is None else "secret_env")


def _check_headers(headers: Mapping[str, str] | None, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in table_option("webhook", field, headers, shape="name = value").items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(
                f"webhook {field}.{name} must be a string, got {value!r}",
                field=f"{field}.{name}",
                value=value,
            )
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError(
                f"webhook {field}.{name} is set by the notifier or its HTTP connection "
                "and cannot be replaced",
                field=f"{field}.{name}",
                value=name,
            )
        if not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"webhook {field}: {name!r} is not a header name (letters, digits and "
                "!#$%&'*+-.^_`|~ only)",
                field=f"{field}.{name}",
                value=name,
            )
        if field == "headers":
            _check_header_value(field, name, value)
        out[name] = value
    return out


#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A header value the request can carry: visible ASCII, spaces and tabs.
_VALUE = re.compile(r"[\t\x20-\x7e]*")


def _check_header_value(field: str, name: str, value: str) -> None:
    """:raises ConfigError: for a value with a line break, a control or a non-ASCII
    character, which would fail every send (or split the request)."""
    if not _VALUE.fullmatch(value):
        raise ConfigError(
            f"webhook {field}.{name} must be one line of ASCII text",
            field=f"{field}.{name}",
            value="…",  # may be a token: not echoed
        )
