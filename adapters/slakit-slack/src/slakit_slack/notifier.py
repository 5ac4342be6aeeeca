"""The Slack notifier: resolve the recipient, open a DM, post the step with its idempotency key.

Three Web API methods are used: ``users.lookupByEmail`` (cached),
``conversations.open`` (cached) and ``chat.postMessage``. The bot needs the
scopes ``users:read``, ``users:read.email``, ``im:write`` and ``chat:write``.
Nothing here sleeps: a rate limit or an outage becomes a
:class:`~slakit.errors.TransientNotifyError` and the engine's outbox schedules
the retry.
"""

from __future__ import annotations

import http.client
import os
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.slack_response import SlackResponse

from slakit.abc import Notifier
from slakit.errors import ConfigError, NotifyError, PermanentNotifyError, TransientNotifyError
from slakit.notify import (
    env_name,
    env_name_shown,
    is_host,
    parse_retry_after,
    positive_seconds,
    table_option,
)
from slakit.records import Notification

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_ENV",
    "METADATA_EVENT_TYPE",
    "PERMANENT_ERRORS",
    "TRANSIENT_ERRORS",
    "SlackNotifier",
    "build_blocks",
    "build_metadata",
    "parse_retry_after",
]

DEFAULT_BASE_URL = "https://slack.com/api/"
DEFAULT_TOKEN_ENV = "SLACK_BOT_TOKEN"
#: ``event_type`` of the message metadata every notification carries.
METADATA_EVENT_TYPE = "slakit_notification"

#: Slack ``error`` codes that no retry can fix: the row is dead-lettered at once.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "not_allowed_token_type",
        "no_permission",
        "ekm_access_denied",
        "team_access_not_granted",
        "user_not_found",
        "users_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "invalid_arguments",
    }
)
#: Slack ``error`` codes worth another try later.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)

# Block Kit limits: a header's plain text, a section's text, a field's text.
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000
_USER_ID = re.compile(r"^[UW][A-Z0-9]{8,}$")


#: What a bot token can hold: visible ASCII, no spaces or line breaks.
_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
#: A domain name: dot-separated labels of letters, digits and inner hyphens.
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class SlackNotifier(Notifier):
    """Sends each notification as a Slack direct message from a bot.

    The recipient (``owner``, ``backup_owner`` or an ``@handle``) is turned
    into a Slack user id: through ``users`` first, then as a user id
    (``U…``/``W…``) or an e-mail address as written, then as
    ``handle@default_domain``. E-mail addresses are looked up with
    ``users.lookupByEmail``; ids and DM channels are cached for the life of
    the notifier.

    :param token: the bot token (``xoxb-…``); default: the environment variable ``token_env``.
    :param token_env: where to read the token when ``token`` is not given.
    :param base_url: the Web API root, ending in ``/api/``.
    :param users: handle → Slack user id or e-mail address.
    :param default_domain: mail domain for handles that are neither in ``users`` nor addresses.
    :param timeout: seconds to wait for each API call.
    :raises ConfigError: for a missing token or a malformed option; the message names it.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        token_env: str = DEFAULT_TOKEN_ENV,
        base_url: str = DEFAULT_BASE_URL,
        users: Mapping[str, str] | None = None,
        default_domain: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = "slack"
        # Checked even when ``token`` is given: a malformed name is a mistake either way.
        token_env = env_name("slack", "token_env", token_env)
        resolved = token if token is not None else os.environ.get(token_env, "")
        if not isinstance(resolved, str) or not resolved.strip():
            field = "token" if token is not None else "token_env"
            raise ConfigError(
                f"slack notifier needs a bot token: set 'token', or the environment "
                f"variable named by token_env ({env_name_shown(token_env)})",
                field=field,
                value=None if token is not None else env_name_shown(token_env),
            )
        if not _TOKEN_TEXT.fullmatch(resolved.strip()):
            # A line break would end up in an error message (and the outbox) with the token.
            raise ConfigError(
                "slack token must be one line of visible ASCII (check the variable "
                f"{token_env!r} or 'token' for a pasted line break)",
                field="token" if token is not None else "token_env",
                value="…",
            )
        host = None
        if isinstance(base_url, str) and base_url.lower().startswith(("http://", "https://")):
            scheme, _, rest = base_url.partition("://")
            base_url = f"{scheme.lower()}://{rest}"  # schemes are case-insensitive
            try:
                parts = urlsplit(base_url)
                host = parts.hostname if parts.port != 0 else None
            except ValueError:  # a port that is not a number, or out of range
                host = None
        if not host or not is_host(host):
            raise ConfigError(
                f"slack base_url must be an http(s) URL with a host name, got {base_url!r}",
                field="base_url",
                value=base_url,
            )
        self.timeout = positive_seconds("slack", "timeout", timeout)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.users = _check_users(users)
        self.default_domain = _check_domain(default_domain)
        # No retry handlers: a retry inside send would sleep while holding the
        # outbox lease; the engine schedules retries with backoff instead.
        self.client = _NoRedirectClient(
            token=resolved.strip(),
            base_url=self.base_url,
            # urlopen takes float seconds; slack_sdk annotates the value as int.
            timeout=self.timeout,  # type: ignore[arg-type]
            retry_handlers=[],
        )
        self._lock = threading.Lock()
        self._user_ids: dict[str, str] = {}
        self._dm_channels: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self.name!r}, base_url={self.base_url!r})"

    # -- sending -------------------------------------------------------------

    def send(self, notification: Notification) -> None:
        """Post the notification to the recipient's DM.

        :raises PermanentNotifyError: bad token, unknown user, archived channel,
            a recipient that cannot be resolved, any other 4xx.
        :raises TransientNotifyError: rate limits (with ``retry_after`` from
            ``Retry-After``), 5xx, timeouts and connection errors, and
            unknown ``ok: false`` errors.
        """
        n = notification
        user_id = self.resolve(n.recipient)
        channel = self._open_dm(user_id, n.recipient)
        try:
            self._call(
                "chat.postMessage",
                n.recipient,
                lambda: self.client.chat_postMessage(
                    channel=channel,
                    # Slack reads the fallback as mrkdwn too: escaped like the blocks.
                    text=_escape(n.text),
                    blocks=build_blocks(n),
                    metadata=build_metadata(n),
                    unfurl_links=False,
                    unfurl_media=False,
                ),
            )
        except PermanentNotifyError:
            # The DM may have been closed or archived since it was cached.
            with self._lock:
                self._dm_channels.pop(user_id, None)
            raise

    def resolve(self, recipient: str) -> str:
        """The Slack user id for a recipient (a handle, an e-mail address or an id).

        :raises PermanentNotifyError: when it cannot be resolved or Slack knows no such user.
        :raises TransientNotifyError: when the lookup failed for a passing reason.
        """
        handle = recipient.strip().lstrip("@")
        target = self.users.get(handle.casefold(), handle)
        if _USER_ID.match(target):
            return target
        if "@" in target:
            email = target
        elif self.default_domain is not None:
            email = f"{target}@{self.default_domain}"
        else:
            raise PermanentNotifyError(
                f"slack cannot resolve recipient {recipient!r}: it is not in 'users', "
                "not a Slack user id or e-mail address, and no 'default_domain' is set"
            )
        key = email.casefold()
        with self._lock:
            cached = self._user_ids.get(key)
        if cached is not None:
            return cached
        response = self._call(
            "users.lookupByEmail", recipient, lambda: self.client.users_lookupByEmail(email=email)
        )
        user_id = _nested_str(response, "user", "id", "users.lookupByEmail")
        with self._lock:
            self._user_ids[key] = user_id
        return user_id

    def _open_dm(self, user_id: str, recipient: str) -> str:
        with self._lock:
            cached = self._dm_channels.get(user_id)
        if cached is not None:
            return cached
        response = self._call(
            "conversations.open", recipient, lambda: self.client.conversations_open(users=user_id)
        )
        channel = _nested_str(response, "channel", "id", "conversations.open")
        with self._lock:
            self._dm_channels[user_id] = channel
        return channel

    def _call(self, method: str, recipient: str, fn: Callable[[], SlackResponse]) -> SlackResponse:
        try:
            return fn()
        except SlackApiError as exc:
            raise _classify(method, recipient, exc) from exc
        except SlackRequestError as exc:
            raise PermanentNotifyError(f"slack {method} cannot be sent: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            # URLError, timeouts, refused or reset connections, a dropped response.
            raise TransientNotifyError(
                f"slack {method} for recipient {recipient!r} failed: {type(exc).__name__}: {exc}"
            ) from exc


# -- message content ---------------------------------------------------------


def build_blocks(notification: Notification) -> list[dict[str, Any]]:
    """The Block Kit blocks of a notification: a header, the text, the record and the step.

    ``notification.text`` is the fallback text Slack shows in push
    notifications; the blocks repeat it and add the record link, step, owner
    and deadline.
    """
    n = notification
    handoff = n.payload.get("handoff")
    handoff = handoff if isinstance(handoff, Mapping) else {}
    link = _safe_url(n.payload.get("link"))
    record = _escape(n.handoff_id)
    if link:
        record = f"<{link}|{record}>"
    fields = [
        f"*Record*\n{record}",
        f"*Step*\n`{_escape(n.step)}` (stage {n.stage})",
    ]
    owner = handoff.get("owner")
    if owner:
        fields.append(f"*Owner*\n{_escape(str(owner))}")
    deadline = _slack_date(handoff.get("deadline_at"))
    if deadline:
        fields.append(f"*Deadline*\n{deadline}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _truncate(n.subject or n.handoff_id, _HEADER_MAX),
            },
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _truncate(_escape(n.text), _SECTION_MAX)},
        },
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": _truncate(f, _FIELD_MAX)} for f in fields],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _truncate(
                        f"slakit · policy `{_escape(n.policy)}` · `{_escape(n.action)}` "
                        f"· trace `{_escape(n.trace_id)}`",
                        _FIELD_MAX,
                    ),
                }
            ],
        },
    ]
    return blocks


def build_metadata(notification: Notification) -> dict[str, Any]:
    """The message metadata: ``event_type`` ``slakit_notification`` and the idempotency key.

    A duplicate delivery (after a crash between send and record) carries the
    same ``idempotency_key``, so it can be recognised in the channel history.
    """
    n = notification
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "idempotency_key": n.idempotency_key,
            "handoff_id": n.handoff_id,
            "stage": n.stage,
            "step": n.step,
            "action": n.action,
            "policy": n.policy,
            "trace_id": n.trace_id,
        },
    }


# -- helpers -------------------------------------------------------------------


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would resend the bot token to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class _NoRedirectClient(WebClient):
    """slack_sdk's client with one change: a 3xx answer is returned as it is, never
    followed, so the ``Authorization`` header goes to ``base_url``'s host alone.

    slack_sdk opens its requests with ``urllib.request.urlopen``, whose redirect
    handler keeps every header but the content ones; this is its one method that
    opens a request, given the same request and returning the same dict.
    """

    def _perform_urllib_http_request_internal(
        self, url: str, req: urllib.request.Request
    ) -> dict[str, Any]:
        if not url.lower().startswith(("http://", "https://")):
            raise SlackRequestError(f"slack base_url must be an http(s) URL, got {url!r}")
        opener = urllib.request.build_opener(
            _RefuseRedirects(), urllib.request.HTTPSHandler(context=self.ssl)
        )
        with opener.open(req, timeout=self.timeout) as resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            body = resp.read().decode(charset)
            return {"status": resp.status, "headers": resp.headers, "body": body}


def _classify(method: str, recipient: str, exc: SlackApiError) -> NotifyError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    headers = getattr(response, "headers", None) or {}
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    label = _truncate(error, 200) if error else "no error code"
    message = f"slack {method} for recipient {recipient!r} failed: {label} (HTTP {status})"
    if 300 <= status < 400:
        # Never followed (see _NoRedirectClient): base_url is not the Web API.
        return PermanentNotifyError(f"{message}; a redirect, which is not followed")
    if status == 429 or error == "ratelimited":
        return TransientNotifyError(message, retry_after=retry_after)
    if error in PERMANENT_ERRORS:
        return PermanentNotifyError(message)
    if status >= 500 or status == 408 or error in TRANSIENT_ERRORS:
        return TransientNotifyError(message, retry_after=retry_after)
    if 400 <= status < 500:
        return PermanentNotifyError(message)
    # An ok:false error this adapter does not know: retried until the attempts run out.
    return TransientNotifyError(message, retry_after=retry_after)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list | tuple) and value else value)
    return None


def _nested_str(response: SlackResponse, outer: str, inner: str, method: str) -> str:
    value = response.get(outer)
    found = value.get(inner) if isinstance(value, dict) else None
    if not isinstance(found, str) or not found:
        raise TransientNotifyError(f"slack {method} answered without {outer}.{inner}")
    return found


def _check_users(users: Mapping[str, str] | None) -> dict[str, str]:
    table = table_option("slack", "users", users, shape="handle = user id or e-mail")
    out: dict[str, str] = {}
    for handle, target in table.items():
        if not isinstance(handle, str) or not isinstance(target, str) or not target.strip():
            raise ConfigError(
                f"slack users.{handle} must be a Slack user id or e-mail address, got {target!r}",
                field=f"users.{handle}",
                value=target,
            )
        target = target.strip()
        if not _USER_ID.match(target) and "@" not in target:
            raise ConfigError(
                f"slack users.{handle} must be a Slack user id (U…/W…) or an e-mail address, "
                f"got {target!r}",
                field=f"users.{handle}",
                value=target,
            )
        key = handle.strip().lstrip("@").casefold()
        if key in out:
            raise ConfigError(
                f"slack users names {key!r} twice (keys differ only by '@' or case)",
                field="users",
                value=handle,
            )
        out[key] = target
    return out


def _check_domain(domain: str | None) -> str | None:
    if domain is None:
        return None
    cleaned = domain.strip().lstrip("@") if isinstance(domain, str) else ""
    if not _DOMAIN.fullmatch(cleaned):
        raise ConfigError(
            f"slack default_domain must be a mail domain like 'example.com', got {domain!r}",
            field="default_domain",
            value=domain,
        )
    return cleaned


def _escape(text: str) -> str:
    # The three characters Slack's mrkdwn reserves for links and mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return None
    # '|' and '>' would end a mrkdwn link early.
    return value.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")


def _slack_date(value: Any) -> str | None:
    """A ``<!date^…>`` token, so each reader sees the deadline in their own time zone."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{value}>"
