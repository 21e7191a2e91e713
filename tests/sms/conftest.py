"""Fixtures for the SMS tests: a local Twilio speaking the real HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.twilio import FakeTwilio

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
SENDER = "+15005550006"
MESSAGING_SERVICE_SID = "MG" + "fedcba9876543210" * 2


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    """A running fake Twilio for one account, stopped after the test."""
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake
