"""Fixtures: a local receiver that verifies Standard Webhooks signatures, and a notifier for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slakit_webhook.notifier import WebhookNotifier
from webhook_receiver import SECRET, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1 that verifies with the shared secret and dedupes on webhook-id."""
    r = WebhookReceiver()
    with r.running():
        yield r


@pytest.fixture
def notifier(receiver: WebhookReceiver) -> Iterator[WebhookNotifier]:
    """A notifier signing with the receiver's secret."""
    n = WebhookNotifier(receiver.url, secret=SECRET, headers={"X-Source": "slakit-tests"})
    yield n
    n.close()
