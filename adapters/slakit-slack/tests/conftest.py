"""Fixtures: a local Slack Web API peer and notifications to send through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slack_api_peer import TOKEN, SlackAPIPeer
from slack_helpers import DANA, LEE
from slakit_slack.notifier import SlackNotifier


@pytest.fixture
def slack_peer() -> Iterator[SlackAPIPeer]:
    """A Slack Web API on 127.0.0.1 that knows dana and lee at example.com."""
    peer = SlackAPIPeer(users={"dana@example.com": DANA, "lee@example.com": LEE})
    with peer.running():
        yield peer


@pytest.fixture
def notifier(slack_peer: SlackAPIPeer) -> SlackNotifier:
    """A notifier pointed at the local peer, resolving handles at example.com."""
    return SlackNotifier(token=TOKEN, base_url=slack_peer.url, default_domain="example.com")
