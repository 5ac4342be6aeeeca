"""Test data shared by the Slack tests: the peer's users."""

from __future__ import annotations

DANA = "U0DANA0001"
LEE = "U0LEE00001"
