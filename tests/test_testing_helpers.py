"""The notifier-test helpers in slakit.testing work as documented."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import attrs
import pytest

import slakit
import slakit.testing
from slakit.abc import Notifier
from slakit.adapters.memory import MemoryStore
from slakit.records import Notification, OutboxState
from slakit.testing.notifiers import (
    SAMPLE_START,
    SAMPLE_TRACE_ID,
    CrashAfterSendStore,
    engine_with,
    sample_notification,
    sample_policy,
)
from slakit.testing.peers import LocalServer, PeerRequestHandler, serve_http


class Recorder(Notifier):
    """Keeps what it is asked to send."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        """Keep the notification."""
        self.sent.append(notification)


def due(engine: slakit.Engine, clock: slakit.ManualClock) -> slakit.Engine:
    """Start the sample handoff and run the check that makes its 1x notification."""
    engine.start("lead-1", owner="dana", channel="web", trace_id=SAMPLE_TRACE_ID)
    assert engine.check(clock.advance(minutes=30)).count == 1
    return engine


class TestSampleNotification:
    def test_is_what_the_sample_policy_builds(self) -> None:
        """An engine running the sample policy queues exactly the sample for lead-1."""
        clock = slakit.ManualClock(SAMPLE_START)
        engine = due(engine_with(Recorder("console"), clock=clock), clock)
        [row] = engine.store.outbox()
        assert row.notification == sample_notification()
        assert row.notification.payload == sample_notification().payload

    def test_payload_has_the_engines_shape(self) -> None:
        """The payload holds handoff, step, stage and link, and survives a JSON round trip."""
        n = sample_notification()
        assert set(n.payload) == {"handoff", "step", "stage", "link"}
        assert n.payload["handoff"]["id"] == n.handoff_id == "lead-1"
        assert n.payload["handoff"]["owner"] == n.recipient == "dana"
        assert (n.step, n.stage, n.action) == ("1x", 0, "notify:owner")
        assert json.loads(json.dumps(dict(n.payload))) == dict(n.payload)

    def test_changes_replace_fields(self) -> None:
        """Keyword arguments replace fields; the others keep the sample's values."""
        n = sample_notification(recipient="lee", notifier="slack")
        assert (n.recipient, n.notifier) == ("lee", "slack")
        assert attrs.evolve(n, recipient="dana", notifier="console") == sample_notification()

    def test_an_unknown_field_is_a_type_error(self) -> None:
        """A name Notification has no field for fails loudly."""
        with pytest.raises(TypeError, match="recipients"):
            sample_notification(recipients=["dana"])

    def test_each_call_is_a_fresh_copy(self) -> None:
        """Changing one sample's nested handoff leaves the next sample alone."""
        first = sample_notification()
        first.payload["handoff"]["owner"] = "mallory"
        assert sample_notification().payload["handoff"]["owner"] == "dana"


class TestCrashAfterSendStore:
    def test_the_first_completion_raises_and_the_row_is_sent_again(self) -> None:
        """A completion that dies leaves the row pending; after the lease it is sent again."""
        clock = slakit.ManualClock(SAMPLE_START)
        notifier = Recorder()
        engine = due(engine_with(notifier, clock=clock, store=CrashAfterSendStore()), clock)
        now = clock.now()
        with pytest.raises(RuntimeError, match="killed between send and record"):
            engine.deliver(now)
        [row] = engine.store.outbox()
        assert row.state == OutboxState.PENDING
        assert engine.deliver(now).sent == 0  # the dead worker still holds the lease
        assert engine.deliver(now + timedelta(seconds=engine.outbox_lease + 1)).sent == 1
        keys = [n.idempotency_key for n in notifier.sent]
        assert keys == ["lead-1:0:notify:owner:dana"] * 2
        [row] = engine.store.outbox()
        assert row.state == OutboxState.SENT

    def test_crashes_counts_the_failing_completions(self) -> None:
        """With crashes=2 two deliveries die before the third one is recorded."""
        clock = slakit.ManualClock(SAMPLE_START)
        store = CrashAfterSendStore(crashes=2)
        notifier = Recorder()
        engine = due(engine_with(notifier, clock=clock, store=store), clock)
        now = clock.now()
        lease = timedelta(seconds=engine.outbox_lease + 1)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                engine.deliver(now)
            now += lease
        assert store.crashes == 0
        assert engine.deliver(now).sent == 1
        assert len(notifier.sent) == 3

    def test_no_crashes_is_a_plain_memory_store(self) -> None:
        """crashes=0 completes rows at once."""
        clock = slakit.ManualClock(SAMPLE_START)
        engine = due(engine_with(Recorder(), clock=clock, store=CrashAfterSendStore(0)), clock)
        assert engine.deliver(clock.now()).sent == 1


class TestEngineWith:
    def test_defaults(self) -> None:
        """One notifier, the sample policy, a memory store and a manual clock at SAMPLE_START."""
        notifier = Recorder()
        engine = engine_with(notifier)
        assert engine.notifiers == [notifier]
        assert list(engine.policies) == ["speed-to-lead"]
        assert engine.policies["speed-to-lead"] == sample_policy()
        assert isinstance(engine.store, MemoryStore)
        assert isinstance(engine.clock, slakit.ManualClock)
        assert engine.clock.now() == SAMPLE_START

    def test_the_default_rng_is_seeded(self) -> None:
        """Two engines draw the same backoff jitter."""
        a, b = engine_with(Recorder()), engine_with(Recorder())
        assert [a.backoff(n) for n in range(1, 6)] == [b.backoff(n) for n in range(1, 6)]

    def test_arguments_are_passed_on(self) -> None:
        """policy, clock, store and further Engine options replace the defaults."""
        clock = slakit.ManualClock(SAMPLE_START + timedelta(days=1))
        store = MemoryStore()
        policy = slakit.Policy.default(basis="wall")
        engine = engine_with(Recorder(), policy=policy, clock=clock, store=store, max_attempts=2)
        assert (engine.clock, engine.store, engine.max_attempts) == (clock, store, 2)
        assert engine.policies == {"default": policy}


class Echo(PeerRequestHandler):
    """Answers a GET with its path and a POST with its body; ``/wait`` waits for ``/release``."""

    released = threading.Event()
    slow_done = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/wait":
            self.released.wait(timeout=5)
        if self.path == "/release":
            self.released.set()
        if self.path == "/empty":
            self.reply(204, headers={"X-Seen": "yes"})
            return
        slow = self.path == "/slow"
        self.reply(200, self.path.encode(), delay=0.5 if slow else 0.0)
        if slow:
            self.slow_done.set()

    def do_POST(self) -> None:
        self.reply(200, self.read_body(), {"Content-Type": "application/octet-stream"})


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode()
        return text


class TestServeHTTP:
    def test_serves_the_handler_on_a_loopback_port(self) -> None:
        """The yielded URL is http://127.0.0.1:<port> and reaches the handler."""
        with serve_http(Echo) as served:
            assert isinstance(served, LocalServer)
            assert served.url == f"http://127.0.0.1:{served.port}"
            assert served.server.server_address[1] == served.port
            assert get(served.url + "/hello") == "/hello"

    def test_requests_run_concurrently(self) -> None:
        """A request that blocks does not hold up the next one."""
        Echo.released.clear()
        with serve_http(Echo) as served:
            waiting: list[str] = []
            thread = threading.Thread(target=lambda: waiting.append(get(served.url + "/wait")))
            thread.start()
            assert get(served.url + "/release") == "/release"
            thread.join(timeout=5)
            assert waiting == ["/wait"]

    def test_the_server_stops_with_the_block(self) -> None:
        """After the block the port refuses connections and the serving thread is gone."""
        with serve_http(Echo) as served:
            url = served.url
        with pytest.raises(urllib.error.URLError):
            get(url + "/late")
        assert not any(t.name == "slakit-test-http" and t.is_alive() for t in threading.enumerate())

    def test_the_handler_logs_nothing(self, capfd: pytest.CaptureFixture[str]) -> None:
        """Requests leave stderr empty."""
        with serve_http(Echo) as served:
            get(served.url + "/quiet")
        assert capfd.readouterr().err == ""


class TestPeerRequestHandler:
    def test_read_body_and_reply(self) -> None:
        """read_body gives the request's bytes; reply sends status, headers, body and length."""
        with serve_http(Echo) as served:
            request = urllib.request.Request(served.url + "/echo", data=b"\x00ping\xff")
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/octet-stream"
                assert response.headers["Content-Length"] == "6"
                assert response.read() == b"\x00ping\xff"

    def test_a_204_has_no_content_length(self) -> None:
        """A 204 carries its headers but no Content-Length."""
        with serve_http(Echo) as served:
            with urllib.request.urlopen(served.url + "/empty", timeout=5) as response:
                assert response.status == 204
                assert response.headers["X-Seen"] == "yes"
                assert "Content-Length" not in response.headers

    def test_a_delayed_reply_outlasts_a_client_timeout_quietly(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A client that gives up before a delayed reply times out; the peer stays quiet."""
        Echo.slow_done.clear()
        with serve_http(Echo) as served:
            with pytest.raises((TimeoutError, urllib.error.URLError)):
                get(served.url + "/slow", timeout=0.1)
            assert get(served.url + "/after") == "/after"
            assert Echo.slow_done.wait(timeout=5)
        assert capfd.readouterr().err == ""


class TestLazyExports:
    def test_importing_slakit_testing_loads_no_helpers(self) -> None:
        """``import slakit.testing`` imports neither pytest nor the notifier helpers."""
        helpers = {"pytest", "http.server", "slakit.testing.notifiers", "slakit.testing.peers"}
        code = (
            f"import sys, slakit.testing\nsys.exit(sorted({helpers!r} & set(sys.modules)) or None)"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
        # A non-empty list is printed to stderr with exit status 1.
        assert (result.returncode, result.stderr) == (0, b"")

    def test_the_helpers_are_reachable_from_the_package(self) -> None:
        """The package resolves the helpers to the modules' own objects on first use."""
        assert slakit.testing.sample_notification is sample_notification
        assert slakit.testing.engine_with is engine_with
        assert slakit.testing.CrashAfterSendStore is CrashAfterSendStore
        assert slakit.testing.serve_http is serve_http
        with pytest.raises(AttributeError, match="no_such_helper"):
            _ = slakit.testing.no_such_helper
