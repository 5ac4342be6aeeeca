"""Local HTTP peers for notifier tests: serve a request handler on 127.0.0.1.

A real server on a free loopback port, rather than a mocked client, lets a
notifier's own HTTP library (timeouts, retries, headers) run as in production::

    class Hook(PeerRequestHandler):
        def do_POST(self) -> None:
            received.append(self.read_body())
            self.reply(204)

    with serve_http(Hook) as peer:
        notifier = MyNotifier(url=peer.url + "/hook")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

__all__ = ["LocalServer", "PeerRequestHandler", "serve_http"]


class PeerRequestHandler(BaseHTTPRequestHandler):
    """A request handler for test peers: it logs nothing, reads bodies and replies."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a test's output is not the place for an access log."""

    def read_body(self) -> bytes:
        """The request body, as long as its ``Content-Length`` says (empty without one)."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        """Answer with ``status``, ``headers`` and ``body``; ``Content-Length`` is added
        (except on 204 and 304, which have no body).

        :param delay: seconds to wait first, to test a client's timeout. A client
            that has hung up by the time the answer is written is ignored.
        """
        if delay:
            time.sleep(delay)
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


@attrs.frozen
class LocalServer:
    """A server :func:`serve_http` runs.

    :ivar url: the base URL, ``http://127.0.0.1:<port>`` (no trailing slash).
    :ivar server: the server itself.
    """

    url: str
    server: ThreadingHTTPServer

    @property
    def port(self) -> int:
        """The port the server listens on."""
        port: int = self.server.server_address[1]
        return port


@contextmanager
def serve_http(handler_class: type[BaseHTTPRequestHandler]) -> Iterator[LocalServer]:
    """Serve ``handler_class`` on 127.0.0.1 (a free port) for the duration of the block.

    Each request runs in its own daemon thread, so a handler that sleeps (to
    test a client's timeout) holds up no other request. On exit the server stops
    accepting, closes its socket and its thread is joined.

    :param handler_class: the request handler, e.g. a :class:`PeerRequestHandler` subclass.
    :returns: a context manager yielding the running :class:`LocalServer`.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    # A short poll interval keeps shutdown, once per test, fast.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="slakit-test-http", daemon=True
    )
    thread.start()
    try:
        yield LocalServer(url=f"http://127.0.0.1:{server.server_address[1]}", server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
