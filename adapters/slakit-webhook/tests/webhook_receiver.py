"""A local webhook receiver that verifies with the ``standardwebhooks`` package and dedupes.

It behaves as a careful receiver should: verify the signature (and the
timestamp's freshness) with an implementation independent of the notifier,
then handle each ``webhook-id`` once, answering 2xx to a duplicate without
handling it again. Scripted answers make it fail before handling.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from slakit.testing.peers import PeerRequestHandler, serve_http

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@attrs.frozen
class Delivery:
    """One request the receiver got, and what it made of it."""

    headers: Mapping[str, str]
    body: bytes
    outcome: str  # "handled" | "duplicate" | "rejected" | "failed"
    status: int


@attrs.frozen
class Answer:
    """A scripted answer: status, headers, body, and a delay before it."""

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: str = ""
    delay: float = 0.0


class WebhookReceiver:
    """The receiver's state: deliveries, handled payloads by webhook-id, scripted answers.

    :param secret: the shared secret to verify with; ``None`` accepts unsigned requests.
    """

    def __init__(self, secret: str | None = SECRET) -> None:
        self.verifier = Webhook(secret) if secret is not None else None
        self.deliveries: list[Delivery] = []
        self.handled: dict[str, Any] = {}
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._base: str | None = None

    @property
    def url(self) -> str:
        """Where to POST."""
        assert self._base is not None
        return f"{self._base}/hooks/slakit"

    def script(self, *answers: Answer) -> None:
        """Answer the next verified requests with ``answers`` instead of handling them."""
        with self._lock:
            self._answers.extend(answers)

    def outcomes(self) -> list[str]:
        """What became of each request, in order."""
        with self._lock:
            return [d.outcome for d in self.deliveries]

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """Verify, then handle once per ``webhook-id``."""
        if self.verifier is not None:
            try:
                payload = self.verifier.verify(body, dict(headers))
            except WebhookVerificationError as exc:
                return self._record(headers, body, "rejected", Answer(401, body=str(exc)))
        else:
            payload = json.loads(body)
        msg_id = headers.get("webhook-id", "")
        with self._lock:
            scripted = self._answers.popleft() if self._answers else None
        if scripted is not None:
            return self._record(headers, body, "failed", scripted)
        with self._lock:
            duplicate = msg_id in self.handled
            if not duplicate:
                self.handled[msg_id] = payload
        outcome = "duplicate" if duplicate else "handled"
        return self._record(headers, body, outcome, Answer(200 if duplicate else 204))

    def _record(
        self, headers: Mapping[str, str], body: bytes, outcome: str, answer: Answer
    ) -> Answer:
        with self._lock:
            self.deliveries.append(Delivery(dict(headers), body, outcome, answer.status))
        return answer

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        """Serve on 127.0.0.1 (a free port) for the duration of the block."""
        receiver = self

        class Handler(PeerRequestHandler):
            def do_POST(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = receiver.receive(headers, self.read_body())
                self.reply(answer.status, answer.body.encode(), answer.headers, delay=answer.delay)

        with serve_http(Handler) as served:
            self._base = served.url
            yield self
