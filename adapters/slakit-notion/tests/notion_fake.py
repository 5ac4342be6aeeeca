"""A local stand-in for Notion's ``POST /v1/pages``: checks headers, records bodies, fails on cue.

It answers like Notion does: 401 ``unauthorized`` for a wrong token, 400
``missing_version`` without ``Notion-Version: 2022-06-28``, 400
``validation_error`` for a body without a database parent, otherwise 200 with
a page object. Scripted answers (429 with ``Retry-After``, 5xx, 400, 401…)
replace the next good requests' answers. Each request is recorded with the
monotonic time it arrived.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slakit_notion.sink import NotionTraceSink

import attrs

from slakit.testing.peers import PeerRequestHandler, serve_http

TOKEN = "ntn_test_0123456789"
DATABASE_ID = "0f3c7a52-e1b4-4d6f-9a8e-2b1c3d4e5f60"


@attrs.frozen
class Answer:
    """A scripted answer: status, JSON body and headers."""

    status: int = 200
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


def notion_error(status: int, code: str, message: str, **headers: str) -> Answer:
    """An error answer in Notion's shape (``object``, ``status``, ``code``, ``message``)."""
    body = {"object": "error", "status": status, "code": code, "message": message}
    return Answer(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


@attrs.frozen
class Request:
    """One request the fake got: when (monotonic), its headers, its JSON body and the answer."""

    at: float
    headers: Mapping[str, str]
    body: Any
    status: int


class FakeNotion:
    """The fake's state: requests, created pages, scripted answers and a gate.

    While :attr:`gate` is clear, requests wait (up to 10 s) before they are answered.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.pages: list[Any] = []
        self.gate = threading.Event()
        self.gate.set()
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._base: str | None = None

    @property
    def url(self) -> str:
        """The base URL to give the sink."""
        assert self._base is not None
        return self._base

    def script(self, *answers: Answer) -> None:
        """Answer the next well-formed requests with ``answers``, in order."""
        with self._lock:
            self._answers.extend(answers)

    def statuses(self) -> list[int]:
        """The status of each answer, in order."""
        with self._lock:
            return [r.status for r in self.requests]

    def titles(self) -> list[str]:
        """The title text of each created page, in order."""
        with self._lock:
            return [p["properties"]["Name"]["title"][0]["text"]["content"] for p in self.pages]

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` requests arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} request(s) arrived"
            time.sleep(0.005)

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Answer:
        """Check the request as Notion would, then answer it."""
        arrived = time.monotonic()
        self.gate.wait(10)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        answer = self._check(path, headers, body)
        with self._lock:
            if answer is None:
                answer = self._answers.popleft() if self._answers else None
            if answer is None:
                self.pages.append(body)
                answer = Answer(200, {"object": "page", "id": str(uuid.uuid4())})
            self.requests.append(Request(arrived, dict(headers), body, answer.status))
        return answer

    def _check(self, path: str, headers: Mapping[str, str], body: Any) -> Answer | None:
        if path != "/v1/pages":
            return notion_error(400, "invalid_request_url", "Invalid request URL.")
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return notion_error(401, "unauthorized", "API token is invalid.")
        if headers.get("notion-version") != "2022-06-28":
            return notion_error(400, "missing_version", "Notion-Version header failed validation.")
        if not headers.get("content-type", "").startswith("application/json"):
            return notion_error(400, "invalid_json", "Error parsing JSON body.")
        if not isinstance(body, dict) or not isinstance(body.get("parent"), dict):
            return notion_error(400, "validation_error", "body.parent should be defined.")
        if not isinstance(body.get("properties"), dict):
            return notion_error(400, "validation_error", "body.properties should be an object.")
        return None

    @contextmanager
    def running(self) -> Iterator[FakeNotion]:
        """Serve on 127.0.0.1 (a free port) for the duration of the block."""
        fake = self

        class Handler(PeerRequestHandler):
            def do_POST(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = fake.answer(self.path, headers, self.read_body())
                data = json.dumps(answer.body).encode() if answer.body is not None else b""
                self.reply(
                    answer.status, data, {"Content-Type": "application/json", **answer.headers}
                )

        with serve_http(Handler) as served:
            self._base = served.url
            try:
                yield self
            finally:
                self.gate.set()


#: The ``make_sink`` fixture: builds a sink for the fake (see conftest.py).
MakeSink = Callable[..., "NotionTraceSink"]
