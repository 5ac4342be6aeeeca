"""A local Slack Web API server, enough of it for the notifier's three methods.

It speaks the Web API's protocol as Slack does: ``POST /api/<method>`` with a
form or JSON body and ``Authorization: Bearer <token>``; HTTP 200 with
``{"ok": false, "error": …}`` for API errors; HTTP 429 with ``Retry-After``
for rate limits. Scripted responses let a test make a method fail.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs

from slakit.testing.peers import PeerRequestHandler, serve_http

TOKEN = "xoxb-test"


@attrs.frozen
class Call:
    """One request the peer received."""

    method: str
    args: Mapping[str, Any]
    headers: Mapping[str, str]


@attrs.frozen
class Scripted:
    """A canned response: status, JSON body, headers, and an optional delay before it."""

    status: int = 200
    body: Mapping[str, Any] | str = attrs.field(factory=lambda: {"ok": True})
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0


class SlackAPIPeer:
    """The server's state: a user directory, open DMs, posted messages, scripted failures.

    :param users: e-mail address → user id.
    """

    def __init__(self, users: Mapping[str, str] | None = None, token: str = TOKEN) -> None:
        self.token = token
        self.users = dict(users or {})
        self.calls: list[Call] = []
        self.messages: list[Mapping[str, Any]] = []
        self.dms: dict[str, str] = {}
        self._scripts: dict[str, deque[Scripted]] = {}
        self._lock = threading.Lock()
        self._base: str | None = None

    @property
    def url(self) -> str:
        """The ``base_url`` to give ``WebClient``."""
        assert self._base is not None
        return f"{self._base}/api/"

    def script(self, method: str, *responses: Scripted) -> None:
        """Answer the next calls of ``method`` with ``responses``, in order."""
        with self._lock:
            self._scripts.setdefault(method, deque()).extend(responses)

    def calls_to(self, method: str) -> list[Call]:
        """The calls of one method, in order."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # -- the protocol ----------------------------------------------------------

    def handle(self, method: str, args: Mapping[str, Any], headers: Mapping[str, str]) -> Scripted:
        """The response to one call."""
        with self._lock:
            self.calls.append(Call(method, dict(args), dict(headers)))
            queue = self._scripts.get(method)
            if queue:
                return queue.popleft()
        auth = headers.get("authorization", "")
        if not auth:
            return _error("not_authed")
        if auth != f"Bearer {self.token}":
            return _error("invalid_auth")
        if method == "users.lookupByEmail":
            return self._lookup(args)
        if method == "conversations.open":
            return self._open(args)
        if method == "chat.postMessage":
            return self._post(args)
        return Scripted(404, {"ok": False, "error": "unknown_method"})

    def _lookup(self, args: Mapping[str, Any]) -> Scripted:
        email = str(args.get("email", "")).casefold()
        for address, user_id in self.users.items():
            if address.casefold() == email:
                return Scripted(body={"ok": True, "user": {"id": user_id, "name": address}})
        return _error("users_not_found")

    def _open(self, args: Mapping[str, Any]) -> Scripted:
        user_id = str(args.get("users", ""))
        if user_id not in self.users.values():
            return _error("user_not_found")
        with self._lock:
            channel = self.dms.setdefault(user_id, "D" + user_id[1:])
        return Scripted(body={"ok": True, "channel": {"id": channel}})

    def _post(self, args: Mapping[str, Any]) -> Scripted:
        channel = args.get("channel")
        with self._lock:
            known = channel in self.dms.values()
        if not known:
            return _error("channel_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        blocks = args.get("blocks")
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50):
            return _error("invalid_blocks")
        metadata = args.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return _error("invalid_metadata_format")
        with self._lock:
            self.messages.append(dict(args))
            ts = f"{1700000000 + len(self.messages)}.000100"
        return Scripted(body={"ok": True, "channel": channel, "ts": ts})

    # -- the server ------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[SlackAPIPeer]:
        """Serve on 127.0.0.1 (a free port) for the duration of the block."""
        peer = self

        class Handler(PeerRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                if not parts.path.startswith("/api/"):
                    self._reply(Scripted(404, {"ok": False, "error": "unknown_method"}))
                    return
                raw = self.read_body().decode("utf-8")
                args: dict[str, Any] = dict(parse_qsl(parts.query))
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/json"):
                    args.update(json.loads(raw or "{}"))
                elif raw:
                    args.update(parse_qsl(raw))
                headers = {k.lower(): v for k, v in self.headers.items()}
                self._reply(peer.handle(parts.path[len("/api/") :], args, headers))

            def _reply(self, response: Scripted) -> None:
                if isinstance(response.body, str):
                    body, ctype = response.body, "text/html"
                else:
                    body, ctype = json.dumps(response.body), "application/json"
                headers = {"Content-Type": f"{ctype}; charset=utf-8", **response.headers}
                self.reply(response.status, body.encode(), headers, delay=response.delay)

        with serve_http(Handler) as served:
            self._base = served.url
            yield self


def _error(code: str) -> Scripted:
    return Scripted(body={"ok": False, "error": code})


def ratelimited(retry_after: int) -> Scripted:
    """Slack's rate-limit answer."""
    return Scripted(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def api_error(code: str) -> Scripted:
    """An ``ok: false`` answer with HTTP 200, as Slack sends API errors."""
    return _error(code)
