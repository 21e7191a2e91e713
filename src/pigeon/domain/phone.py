"""Phone numbers: every number Pigeon stores is E.164 (``+14155550123``)."""

import phonenumbers

from pigeon.domain.errors import InvalidInput


def normalize_phone(raw: str, default_region: str | None = None) -> str:
    """Parse ``raw`` and return it in E.164, or raise ``invalid_phone``.

    Numbers without a leading ``+`` need ``default_region`` (an ISO country
    code such as ``"GB"``). Only numbers that are valid for their region are
    accepted, so typos fail here rather than as an undeliverable SMS.
    """
    if len(raw) > 32:
        raise InvalidInput("invalid_phone", "The phone number is too long.")
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("invalid_phone", "The phone number could not be parsed.") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("invalid_phone", "The phone number is not a valid number.")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def region_of(e164: str) -> str | None:
    """The ISO region of a stored number (``+14155550123`` -> ``"US"``), if it has one."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None
    return str(region) if region and region != "ZZ" else None
