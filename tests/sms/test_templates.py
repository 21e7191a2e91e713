"""SMS texts: the template catalog, the SMS service and the console provider."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from pigeon.domain.errors import Unavailable
from pigeon.observability.metrics import Metrics
from pigeon.services.ports import SmsMessage
from pigeon.services.sms import SmsService
from pigeon.sms.console import ConsoleSmsProvider
from pigeon.sms.templates import TemplateCatalog
from pigeon.sms.twilio import TwilioSmsProvider
from tests.fakes.twilio import FakeTwilio
from tests.sms.conftest import ACCOUNT_SID, AUTH_TOKEN, SENDER
from tests.support import Outbox

PHONE = "+14155550123"
CODE = {"code": "123456", "minutes": "10"}
ENGLISH = "Your Pigeon code is 123456. It expires in 10 minutes. Never share it with anyone."
SPANISH = "Tu código de Pigeon es 123456. Caduca en 10 minutos. No lo compartas con nadie."
GERMAN = "Dein Pigeon-Code lautet 123456. Er läuft in 10 Minuten ab. Gib ihn niemandem weiter."
FRENCH = "Votre code Pigeon est 123456. Il expire dans 10 minutes. Ne le partagez avec personne."


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text, "utf-8")
    return directory


def sent_count(metrics: Metrics, template: str) -> float | None:
    return metrics.registry.get_sample_value("pigeon_sms_sent_total", {"template": template})


# -- TemplateCatalog ---------------------------------------------------------


def test_english_is_the_default() -> None:
    catalog = TemplateCatalog()
    assert catalog.render("verification_code", None, CODE) == ENGLISH
    assert {"de", "en", "es", "fr"} <= set(catalog.locales)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("es", SPANISH),
        ("ES", SPANISH),
        ("es-419", SPANISH),
        ("de-DE", GERMAN),
        ("de_AT", GERMAN),
        ("fr-CA", FRENCH),
        ("pt-BR", ENGLISH),  # no Portuguese built in: pt-BR, then pt, then the default
        ("xx", ENGLISH),
        ("", ENGLISH),
    ],
)
def test_best_matching_language_is_chosen(locale: str, expected: str) -> None:
    assert TemplateCatalog().render("verification_code", locale, CODE) == expected


def test_pt_br_falls_back_to_pt_then_to_the_default(tmp_path: Path) -> None:
    overrides = write(tmp_path, "pt.toml", 'verification_code = "Seu código Pigeon é $code."\n')
    catalog = TemplateCatalog(override_dir=overrides)

    assert catalog.render("verification_code", "pt-BR", CODE) == "Seu código Pigeon é 123456."
    # pt has no pin_reset text, so pt-BR gets the default language's.
    assert catalog.render("pin_reset", "pt-BR", {"days": "7"}).startswith(
        "Someone asked to reset the two-step PIN"
    )


def test_a_regional_file_wins_over_its_language(tmp_path: Path) -> None:
    write(tmp_path, "pt.toml", 'verification_code = "Pigeon pt $code"\n')
    write(tmp_path, "pt-BR.toml", 'verification_code = "Pigeon pt-BR $code"\n')
    catalog = TemplateCatalog(override_dir=tmp_path)

    assert catalog.render("verification_code", "pt-BR", CODE) == "Pigeon pt-BR 123456"
    assert catalog.render("verification_code", "pt_br", CODE) == "Pigeon pt-BR 123456"
    assert catalog.render("verification_code", "pt-PT", CODE) == "Pigeon pt 123456"


def test_an_override_file_named_with_an_underscore_is_used(tmp_path: Path) -> None:
    write(tmp_path, "pt_BR.toml", 'verification_code = "Pigeon pt-BR $code"\n')
    catalog = TemplateCatalog(override_dir=tmp_path)

    assert catalog.render("verification_code", "pt-BR", CODE) == "Pigeon pt-BR 123456"


@pytest.mark.parametrize("default", ["de", "de-DE", "DE"])
def test_operator_default_language_is_the_fallback(default: str) -> None:
    catalog = TemplateCatalog(default_locale=default)
    assert catalog.render("verification_code", "pt-BR", CODE) == GERMAN
    assert catalog.render("verification_code", None, CODE) == GERMAN
    assert catalog.render("verification_code", "es", CODE) == SPANISH


def test_operator_override_replaces_one_text_only(tmp_path: Path) -> None:
    overrides = write(
        tmp_path, "en.toml", 'verification_code = "ACME chat: $code (valid $minutes min)"\n'
    )
    catalog = TemplateCatalog(override_dir=overrides)

    assert catalog.render("verification_code", None, CODE) == "ACME chat: 123456 (valid 10 min)"
    assert catalog.render("pin_reset", None, {"days": "7"}).startswith(
        "Someone asked to reset the two-step PIN"
    )
    assert catalog.render("verification_code", "es", CODE) == SPANISH


def test_unknown_template_raises_key_error() -> None:
    catalog = TemplateCatalog()
    with pytest.raises(KeyError, match="no_such_template"):
        catalog.render("no_such_template", None, {})
    with pytest.raises(KeyError, match="no_such_template"):
        catalog.render("no_such_template", "es", {})


# -- SmsService --------------------------------------------------------------


async def test_sms_service_renders_in_the_language_and_sends(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "sms-outbox.jsonl")
    metrics = Metrics()
    sms = SmsService(ConsoleSmsProvider(outbox.path), TemplateCatalog(), metrics.count_sms)

    await sms.send(PHONE, "pin_reset", "fr", days="7")

    [sent] = outbox.messages()
    assert sent["to"] == PHONE
    assert sent["template"] == "pin_reset"
    assert sent["body"].startswith("Quelqu'un a demandé la réinitialisation")
    assert "dans 7 jours" in sent["body"]
    assert sent_count(metrics, "pin_reset") == 1


async def test_sms_service_does_not_count_what_the_provider_failed_to_send(
    twilio: FakeTwilio,
) -> None:
    twilio.outage = True
    metrics = Metrics()
    provider = TwilioSmsProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=SENDER, base_url=twilio.base_url
    )
    sms = SmsService(provider, TemplateCatalog(), metrics.count_sms)
    try:
        with pytest.raises(Unavailable):
            await sms.send(PHONE, "verification_code", "es", **CODE)
        twilio.outage = False
        await sms.send(PHONE, "verification_code", "es", **CODE)
    finally:
        await provider.aclose()

    assert [m["body"] for m in twilio.outbox] == [SPANISH]
    assert sent_count(metrics, "verification_code") == 1


async def test_sms_service_with_unknown_template_sends_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "sms-outbox.jsonl")
    sms = SmsService(ConsoleSmsProvider(outbox.path), TemplateCatalog())
    with pytest.raises(KeyError):
        await sms.send(PHONE, "no_such_template", None)
    assert outbox.messages() == []


# -- ConsoleSmsProvider ------------------------------------------------------


async def test_console_provider_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "not-yet-there" / "sms-outbox.jsonl"
    provider = ConsoleSmsProvider(path)

    await provider.send(SmsMessage(to=PHONE, template="verification_code", body=GERMAN))
    await provider.send(SmsMessage(to="+447700900123", template="pin_reset", body="🐦 ñandú"))

    raw = path.read_text("utf-8")
    # Readable as written, not \u-escaped.
    assert "läuft" in raw
    assert "🐦 ñandú" in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert [set(line) for line in lines] == [{"to", "template", "body", "sent_at"}] * 2
    assert [(m["to"], m["template"], m["body"]) for m in lines] == [
        (PHONE, "verification_code", GERMAN),
        ("+447700900123", "pin_reset", "🐦 ñandú"),
    ]
    for line in lines:
        assert datetime.fromisoformat(line["sent_at"]).tzinfo is not None


async def test_console_provider_keeps_lines_whole_under_concurrent_sends(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "sms-outbox.jsonl")
    provider = ConsoleSmsProvider(outbox.path)
    bodies = [f"message {i} " + "é" * 2000 for i in range(20)]

    await asyncio.gather(
        *(provider.send(SmsMessage(to=PHONE, template="t", body=b)) for b in bodies)
    )

    assert sorted(m["body"] for m in outbox.messages()) == sorted(bodies)


async def test_console_provider_returns_once_the_line_is_in_the_file(tmp_path: Path) -> None:
    """Sends made together share writes, yet none returns before its own line is written."""
    outbox = Outbox(tmp_path / "sms-outbox.jsonl")
    provider = ConsoleSmsProvider(outbox.path)

    async def send_then_read(body: str) -> bool:
        await provider.send(SmsMessage(to=PHONE, template="t", body=body))
        return body in [m["body"] for m in outbox.messages()]

    found = await asyncio.gather(*(send_then_read(f"code {i}") for i in range(50)))

    assert all(found)


async def test_console_provider_fails_every_send_of_a_failed_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    provider = ConsoleSmsProvider(blocker / "sms-outbox.jsonl")

    results = await asyncio.gather(
        *(provider.send(SmsMessage(to=PHONE, template="t", body=str(i))) for i in range(5)),
        return_exceptions=True,
    )

    assert all(isinstance(result, OSError) for result in results)


# -- through the API ---------------------------------------------------------


async def test_code_request_with_locale_es_sends_spanish(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    response = await client.post("/v1/auth/code", json={"phone": PHONE, "locale": "es"})
    assert response.status_code == 202, response.text

    [sms] = outbox.messages()
    code = outbox.last_code(PHONE)
    assert sms["body"] == SPANISH.replace("123456", code)
