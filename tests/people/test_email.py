"""The email channel and the recovery email: codes by email, the console outbox, and SMTP
checked as received by a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from pigeon.config import Settings
from tests.gateway.conftest import Register
from tests.support import Outbox, bearer, register

PHONE = "+14155550151"


def outbox(settings: Settings) -> list[dict[str, Any]]:
    path = settings.data_dir / "email-outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def code_in(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


async def set_email(
    client: httpx.AsyncClient, session: dict[str, Any], address: str, **extra: Any
) -> httpx.Response:
    return await client.put(
        "/v1/me/email", json={"email": address, **extra}, headers=bearer(session)
    )


async def verify(client: httpx.AsyncClient, session: dict[str, Any], code: str) -> httpx.Response:
    return await client.post("/v1/me/email/verify", json={"code": code}, headers=bearer(session))


class TestConsole:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"email_code_limit_per_account": "4/hour"})

    async def test_a_recovery_email_is_set_by_its_code_and_the_old_one_is_told(
        self, user: Register, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        alice = await user()
        started = await set_email(client, alice, "ada@example.org")
        assert started.status_code == 202, started.text
        assert started.json() == {
            "email": None,
            "verifiedAt": None,
            "pendingEmail": "ada@example.org",
        }
        [sent] = outbox(settings)
        assert (sent["to"], sent["template"]) == ("ada@example.org", "recovery_email_code")
        code = code_in(sent["text"])
        wrong = "000000" if code != "000000" else "111111"
        refused = await verify(client, alice, wrong)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "invalid_code")
        done = await verify(client, alice, code)
        assert done.status_code == 200, done.text
        assert done.json()["email"] == "ada@example.org"
        assert done.json()["pendingEmail"] is None
        assert (await client.get("/v1/me/email", headers=bearer(alice))).json() == done.json()
        # The code is used up.
        assert (await verify(client, alice, code)).status_code == 403

        # A new address: once verified, the old one is told.
        await set_email(client, alice, "ada@new.example")
        new_code = code_in(outbox(settings)[-1]["text"])
        assert (await verify(client, alice, new_code)).json()["email"] == "ada@new.example"
        told = outbox(settings)[-1]
        assert (told["to"], told["template"]) == ("ada@example.org", "recovery_email_changed")
        # Removing it tells the address too.
        assert (await client.delete("/v1/me/email", headers=bearer(alice))).status_code == 204
        told = outbox(settings)[-1]
        assert (told["to"], told["template"]) == ("ada@new.example", "recovery_email_changed")
        assert (await client.get("/v1/me/email", headers=bearer(alice))).json()["email"] is None

    async def test_bad_addresses_guesses_and_floods_are_refused(
        self, user: Register, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        alice = await user()
        for bad in ("not-an-address", "a@b", "x <y@example.org>", "a b@example.org"):
            response = await set_email(client, alice, bad)
            assert (response.status_code, response.json()["error"]["code"]) == (
                400,
                "invalid_email",
            ), bad
        no_code = await verify(client, alice, "123456")
        assert (no_code.status_code, no_code.json()["error"]["code"]) == (403, "invalid_code")
        await set_email(client, alice, "ada@example.org")
        code = code_in(outbox(settings)[-1]["text"])
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(5):
            assert (await verify(client, alice, wrong)).status_code == 403
        locked = await verify(client, alice, code)
        assert (locked.status_code, locked.json()["error"]["code"]) == (429, "too_many_attempts")
        # Codes sent per account are limited (4 an hour here, with the 5 refused above
        # not counting: they never reached the limiter).
        for _ in range(3):
            assert (await set_email(client, alice, "ada@example.org")).status_code == 202
        flood = await set_email(client, alice, "ada@example.org")
        assert flood.status_code == 429
        assert int(flood.headers["Retry-After"]) > 0


class TestPinResetByEmail:
    async def test_a_code_sent_to_the_recovery_email_lifts_the_pin_at_once(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        sms = Outbox(settings.data_dir / "sms-outbox.jsonl")
        alice = await register(client, sms, PHONE)
        assert (
            await client.put("/v1/me/pin", json={"pin": "246810"}, headers=bearer(alice))
        ).status_code == 204
        await set_email(client, alice, "ada@example.org")
        await verify(client, alice, code_in(outbox(settings)[-1]["text"]))

        # A new phone without the PIN: locked until the email's code is given.
        await client.post("/v1/auth/code", json={"phone": PHONE})
        device = {"name": "new phone", "platform": "android"}
        attempt = {"phone": PHONE, "code": sms.last_code(PHONE), "device": device}
        locked = await client.post("/v1/auth/verify", json=attempt)
        assert locked.json()["error"]["code"] == "pin_required"

        asked = await client.post("/v1/auth/pin-reset/email", json={"phone": PHONE})
        assert asked.status_code == 202
        sent = outbox(settings)[-1]
        assert (sent["to"], sent["template"]) == ("ada@example.org", "pin_reset_code")
        code = code_in(sent["text"])
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        refused = await client.post(
            "/v1/auth/pin-reset/confirm", json={"phone": PHONE, "code": wrong}
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "invalid_code")
        confirmed = await client.post(
            "/v1/auth/pin-reset/confirm", json={"phone": PHONE, "code": code}
        )
        assert confirmed.status_code == 204
        registered = await client.post("/v1/auth/verify", json=attempt)
        assert registered.status_code == 200, registered.text
        # The code worked once.
        again = await client.post("/v1/auth/pin-reset/confirm", json={"phone": PHONE, "code": code})
        assert again.status_code == 403

    async def test_numbers_without_a_recovery_email_get_the_same_answer(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        sms = Outbox(settings.data_dir / "sms-outbox.jsonl")
        await register(client, sms, PHONE)
        for phone in (PHONE, "+14155550177"):  # an account without email, and nobody
            asked = await client.post("/v1/auth/pin-reset/email", json={"phone": phone})
            assert asked.status_code == 202
        assert outbox(settings) == []


class Mailbox:
    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


class TestSmtp:
    @pytest.fixture
    def settings(self, settings: Settings, mailbox: tuple[Mailbox, int]) -> Settings:
        return settings.model_copy(
            update={
                "email_provider": "smtp",
                "smtp_host": "127.0.0.1",
                "smtp_port": mailbox[1],
                "smtp_security": "none",
                "email_from": "Pigeon <no-reply@pigeon.test>",
            }
        )

    async def test_the_code_arrives_as_multipart_text_and_html_with_a_utf8_subject(
        self, user: Register, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int]
    ) -> None:
        box, _ = mailbox
        alice = await user()
        named = await client.patch("/v1/me", json={"name": "<b>Ada</b>"}, headers=bearer(alice))
        assert named.status_code == 200
        response = await set_email(client, alice, "ada@example.org", locale="de")
        assert response.status_code == 202, response.text

        [message] = box.received
        assert box.envelopes == [("no-reply@pigeon.test", ["ada@example.org"])]
        assert message["To"] == "ada@example.org"
        assert message["From"] == "Pigeon <no-reply@pigeon.test>"
        assert message["Message-ID"]
        code = code_in(str(message["Subject"]))
        assert str(message["Subject"]) == f"Bestätigungscode für Pigeon: {code}"
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        assert text is not None
        assert html is not None
        plain, markup = text.get_content(), html.get_content()
        assert code in plain
        assert code in markup
        # The name is as typed in the text, and escaped in the HTML.
        assert "<b>Ada</b>" in plain
        assert "&lt;b&gt;Ada&lt;/b&gt;" in markup
        assert "<b>Ada</b>" not in markup
        assert (await verify(client, alice, code)).json()["email"] == "ada@example.org"


class TestSmtpDown:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        update = {"email_provider": "smtp", "smtp_host": "127.0.0.1", "smtp_port": free_port()}
        return settings.model_copy(update={**update, "smtp_security": "none"})

    async def test_an_unreachable_mail_server_is_a_clear_503(
        self, user: Register, client: httpx.AsyncClient
    ) -> None:
        alice = await user()
        refused = await set_email(client, alice, "ada@example.org")
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "email_unavailable")
