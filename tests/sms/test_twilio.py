"""Sending SMS through Twilio, against a local Twilio speaking the real HTTP API."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from pigeon.bootstrap import build_sms_provider
from pigeon.config import Settings
from pigeon.domain.errors import InvalidInput, Unavailable
from pigeon.services.ports import SmsMessage
from pigeon.sms.twilio import TwilioSmsProvider
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import ACCOUNT_SID, AUTH_TOKEN, MESSAGING_SERVICE_SID, SENDER
from tests.support import Outbox

PHONE = "+14155550123"
MESSAGE = SmsMessage(to=PHONE, template="verification_code", body="Your Pigeon code is 123456.")


def provider_for(twilio: FakeTwilio, **overrides: object) -> TwilioSmsProvider:
    options: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": SENDER,
        "base_url": twilio.base_url,
        "timeout": 5.0,
    }
    options.update(overrides)
    return TwilioSmsProvider(**options)  # type: ignore[arg-type]


# -- the provider on its own -------------------------------------------------


async def test_message_reaches_twilio_with_sender_body_and_credentials(
    twilio: FakeTwilio,
) -> None:
    provider = provider_for(twilio)
    try:
        await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    [sent] = twilio.outbox
    assert sent["to"] == PHONE
    assert sent["from"] == SENDER
    assert sent["body"] == "Your Pigeon code is 123456."
    assert sent["account_sid"] == ACCOUNT_SID  # the fake accepts only the right sid + token
    assert sent["messaging_service_sid"] is None
    assert re.fullmatch(r"SM[0-9a-f]{32}", sent["sid"])
    assert twilio.refused == []
    async with httpx.AsyncClient(base_url=twilio.base_url) as client:
        response = await client.get("/_fake/outbox")
    assert response.json() == {"messages": twilio.outbox}


async def test_messaging_service_is_used_instead_of_a_from_number(twilio: FakeTwilio) -> None:
    provider = provider_for(twilio, sender="", messaging_service_sid=MESSAGING_SERVICE_SID)
    try:
        await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    [sent] = twilio.outbox
    assert sent["messaging_service_sid"] == MESSAGING_SERVICE_SID
    assert sent["from"] is None
    assert sent["status"] == "accepted"
    assert sent["to"] == PHONE


def test_twilio_needs_a_sender_or_a_messaging_service() -> None:
    settings = Settings(
        sms_provider="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
    )
    with pytest.raises(ValueError, match="From number or a messaging service"):
        build_sms_provider(settings)


@pytest.mark.parametrize("to", ["+14155550199", "4155550123", "+1"])
async def test_number_twilio_refuses_is_invalid_phone(twilio: FakeTwilio, to: str) -> None:
    twilio.invalid_numbers.add("+14155550199")
    provider = provider_for(twilio)
    try:
        with pytest.raises(InvalidInput) as caught:
            await provider.send(SmsMessage(to=to, template="verification_code", body="hi"))
    finally:
        await provider.aclose()

    assert caught.value.code == "invalid_phone"
    assert [r["code"] for r in twilio.refused] == [21211]
    assert twilio.outbox == []


async def test_empty_text_twilio_refuses_is_unavailable_not_a_bad_number(
    twilio: FakeTwilio,
) -> None:
    provider = provider_for(twilio)
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.send(SmsMessage(to=PHONE, template="verification_code", body=""))
    finally:
        await provider.aclose()

    assert caught.value.code == "sms_unavailable"
    assert [r["code"] for r in twilio.refused] == [21602]


async def test_twilio_outage_is_unavailable(twilio: FakeTwilio) -> None:
    twilio.outage = True
    provider = provider_for(twilio)
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    assert caught.value.code == "sms_unavailable"
    assert [r["status"] for r in twilio.refused] == [500]


async def test_unreachable_twilio_is_unavailable(twilio: FakeTwilio) -> None:
    provider = provider_for(twilio)
    await twilio.stop()  # nothing listens on its port any more
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    assert caught.value.code == "sms_unavailable"


async def test_wrong_credentials_are_unavailable_not_a_bad_number(twilio: FakeTwilio) -> None:
    provider = provider_for(twilio, auth_token="not-the-token")
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    assert caught.value.code == "sms_unavailable"
    assert [r["code"] for r in twilio.refused] == [20003]
    assert twilio.outbox == []


async def test_twilio_that_hangs_is_unavailable_after_the_timeout(twilio: FakeTwilio) -> None:
    twilio.stall = True
    provider = provider_for(twilio, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as caught:
            await provider.send(MESSAGE)
    finally:
        await provider.aclose()

    assert caught.value.code == "sms_unavailable"
    assert time.monotonic() - started < 5


# -- through the API, with Pigeon configured for Twilio ----------------------


@pytest.fixture
def sms_timeout() -> float:
    return 5.0


@pytest.fixture
def settings(settings: Settings, twilio: FakeTwilio, sms_timeout: float) -> Settings:
    """The suite's settings, with SMS going to the local Twilio."""
    return Settings(
        **{
            **settings.model_dump(),
            "sms_provider": "twilio",
            "twilio_base_url": twilio.base_url,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "twilio_from": SENDER,
            "sms_timeout_seconds": sms_timeout,
        }
    )


def code_in(body: str) -> str:
    match = re.search(r"\b(\d{6})\b", body)
    assert match, body
    return match.group(1)


async def test_verification_code_arrives_by_twilio_and_registers(
    client: httpx.AsyncClient, twilio: FakeTwilio, outbox: Outbox
) -> None:
    response = await client.post("/v1/auth/code", json={"phone": "+1 (415) 555-0123"})
    assert response.status_code == 202, response.text

    [sms] = twilio.outbox
    assert sms["to"] == PHONE
    assert sms["from"] == SENDER
    assert "Your Pigeon code is" in sms["body"]
    assert outbox.messages() == []  # nothing went to the console outbox
    assert response.json()["outbox"] is None  # so a login page points at no file

    response = await client.post(
        "/v1/auth/verify",
        json={
            "phone": PHONE,
            "code": code_in(sms["body"]),
            "device": {"name": "Pixel", "platform": "android"},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["newUser"] is True


async def test_number_twilio_refuses_gets_invalid_phone(
    client: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.invalid_numbers.add(PHONE)
    response = await client.post("/v1/auth/code", json={"phone": PHONE})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_phone"
    assert twilio.outbox == []


async def _outage(twilio: FakeTwilio) -> None:
    twilio.outage = True


async def _rotated_token(twilio: FakeTwilio) -> None:
    twilio.auth_token = "rotated-at-twilio"


async def _stopped(twilio: FakeTwilio) -> None:
    await twilio.stop()


@pytest.mark.parametrize(
    "break_twilio",
    [
        pytest.param(_outage, id="500"),
        pytest.param(_rotated_token, id="401"),
        pytest.param(_stopped, id="unreachable"),
    ],
)
async def test_twilio_failure_gets_503_sms_unavailable(
    client: httpx.AsyncClient,
    twilio: FakeTwilio,
    break_twilio: Callable[[FakeTwilio], Awaitable[None]],
) -> None:
    await break_twilio(twilio)
    response = await client.post("/v1/auth/code", json={"phone": PHONE})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "sms_unavailable"
    assert twilio.outbox == []


async def test_after_an_outage_asking_again_sends_a_code(
    client: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.outage = True
    assert (await client.post("/v1/auth/code", json={"phone": PHONE})).status_code == 503
    twilio.outage = False
    assert (await client.post("/v1/auth/code", json={"phone": PHONE})).status_code == 202
    [sms] = twilio.outbox
    response = await client.post(
        "/v1/auth/verify",
        json={
            "phone": PHONE,
            "code": code_in(sms["body"]),
            "device": {"name": "Pixel", "platform": "android"},
        },
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("sms_timeout", [0.3])
async def test_twilio_that_hangs_gets_503_within_the_configured_timeout(
    client: httpx.AsyncClient, twilio: FakeTwilio
) -> None:
    twilio.stall = True
    started = time.monotonic()
    response = await client.post("/v1/auth/code", json={"phone": PHONE})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "sms_unavailable"
    assert time.monotonic() - started < 5
