"""What a person types on ``pigeon chat``'s command line, checked before it goes anywhere.

Each check fails with one line saying what is expected, instead of letting
the server (or a URL parser deep in a library) answer with a code or a
traceback.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pigeon.cli.terminal import fail

_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_PHONE_LIKE = re.compile(r"^\+?[0-9][0-9 ().-]{5,}$")
_CODE = re.compile(r"^[0-9]{6}$")


def server_url(text: str) -> str:
    """``http(s)://host[:port]``, without a trailing slash."""
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if "://" not in url:
        fail(f"The server URL needs its scheme: --server http://{url} (or https://{url}).")
    fail(f"The server URL must start with http:// or https://, not {url!r}.")


def phone_number(text: str) -> str:
    """A number in international form; the server checks the rest."""
    number = text.strip()
    if not number.startswith("+"):
        fail(
            f"Add + and the country code to the number: +1{number.lstrip('0')} for the US, "
            f"+44{number.lstrip('0')} for the UK, and so on."
        )
    return number


def is_code(text: str) -> bool:
    return _CODE.fullmatch(text.strip()) is not None


def is_phone(text: str) -> bool:
    """Whether ``text`` reads as a phone number rather than an id."""
    return _PHONE_LIKE.fullmatch(text.strip()) is not None


def chat_or_phone(text: str) -> str:
    """A chat id, or a phone number to open the 1:1 chat with (``open``'s argument)."""
    value = text.strip()
    if is_phone(value):
        return phone_number(value)
    if not _ID.fullmatch(value):
        fail(
            f"Give a chat id (as `pigeon chat list` shows them) or a phone number "
            f"(+ and the country code first), not {value!r}."
        )
    return value


def chat_id(text: str) -> str:
    """A chat id (a typer callback for the CHAT_ID argument)."""
    value = text.strip()
    if not _ID.fullmatch(value):
        fail(f"CHAT_ID takes a chat id, as `pigeon chat list` shows them, not {value!r}.")
    return value


def message_id(text: str) -> str:
    """A message id (a typer callback for the MESSAGE_ID argument)."""
    value = text.strip()
    if not _ID.fullmatch(value):
        fail(f"MESSAGE_ID takes a message id, as `pigeon chat open` shows them, not {value!r}.")
    return value


def user_id(text: str, option: str) -> str:
    """A user id; a phone number is refused with how to find the id instead."""
    value = text.strip()
    if _PHONE_LIKE.fullmatch(value):
        fail(
            f"{option} takes a user id (like 01JQ7Z0K8M5V3T2R1P9N6B4C2A), not a phone number. "
            f"To chat with a number, run: pigeon chat open {value}"
        )
    if not _ID.fullmatch(value):
        fail(f"{option} takes a user id (like 01JQ7Z0K8M5V3T2R1P9N6B4C2A), not {value!r}.")
    return value
