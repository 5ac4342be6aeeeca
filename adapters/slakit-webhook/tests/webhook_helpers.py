"""Test data shared by the webhook tests: a sample notification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slakit.records import Notification


def make_notification(**changes: Any) -> Notification:
    """A notification for owner ``dana`` of handoff ``lead-1`` at step ``1x``."""
    values: dict[str, Any] = {
        "idempotency_key": "lead-1:0:notify:owner:dana",
        "notifier": "webhook",
        "recipient": "dana",
        "handoff_id": "lead-1",
        "stage": 0,
        "step": "1x",
        "action": "notify:owner",
        "subject": "[speed-to-lead] lead-1: step 1x",
        "text": "speed-to-lead: lead-1 passed its 30-minute SLA with no response.",
        "trace_id": "trace-1",
        "policy": "speed-to-lead",
        "created_at": datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        "payload": {
            "handoff": {"id": "lead-1", "owner": "dana", "channel": "web"},
            "step": "1x",
            "stage": 0,
            "link": "https://crm.example.com/leads/lead-1",
        },
    }
    values.update(changes)
    return Notification(**values)
