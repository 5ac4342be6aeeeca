"""Fixtures: real SMTP peers on 127.0.0.1 (aiosmtpd), started per test."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from smtp_peers import Certificate, Peer, ScriptedHandler, authenticate, free_port


@pytest.fixture
def smtp_peer() -> Iterator[Callable[..., Peer]]:
    """Start aiosmtpd servers: ``smtp_peer(handler=None, auth=False, **smtp_options)``.

    ``auth=True`` requires a login (``USER``/``PASSWORD``) over the plain connection.
    """
    running: list[Controller] = []

    def start(handler: ScriptedHandler | None = None, auth: bool = False, **options: Any) -> Peer:
        handler = handler or ScriptedHandler()
        if auth:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=False)
        last: Exception | None = None
        # The port is free when picked; another process may take it before we bind.
        for _ in range(5):
            port = free_port()
            controller = Controller(
                handler,
                hostname="127.0.0.1",
                port=port,
                server_hostname="localhost",
                ready_timeout=10.0,
                **options,
            )
            try:
                controller.start()
            except OSError as exc:
                last = exc
                continue
            running.append(controller)
            return Peer("127.0.0.1", port, handler, controller)
        raise RuntimeError(f"could not start an SMTP server: {last}")

    yield start
    for controller in running:
        controller.stop()


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening."""
    return free_port()


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A port that accepts TCP connections but never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port: int = s.getsockname()[1]
        yield port


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate made with the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)
