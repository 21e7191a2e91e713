"""The SDK's errors as one line for a person: what happened and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pigeon.client import (
    ApiError,
    AuthenticationError,
    CommandError,
    ConnectionClosed,
    NetworkError,
    PigeonError,
    StoreError,
)

if TYPE_CHECKING:
    from pigeon.cli.chat_session import SavedSession

# Server codes whose own message already says what to do, as a person reads it.
_SELF_EXPLANATORY = frozenset(
    {
        "not_admin",
        "not_member",
        "already_member",
        "not_a_group",
        "last_admin",
        "group_full",
        "invalid_name",
        "message_too_long",
        "empty_message",
        "invalid_participants",
        "pin_required",
        "too_many_devices",
    }
)


def explain(exc: PigeonError, saved: SavedSession | None = None) -> str:
    """One line for ``exc``; ``saved`` (the session file) makes the advice concrete."""
    if isinstance(exc, AuthenticationError):
        return f"This device is logged out ({_why(exc.code)}). Log in again: {_login(saved)}"
    if isinstance(exc, ApiError):
        return _api(exc)
    if isinstance(exc, NetworkError):
        server = saved.server if saved else "the server"
        return f"Cannot reach {server} ({exc.code}): is the server running, and is the URL right?"
    if isinstance(exc, ConnectionClosed) and exc.code == "replaced":
        return (
            "Another `pigeon chat` command with this session took over the connection "
            "(a device has one at a time). Run this one again when it is done."
        )
    if isinstance(exc, CommandError):
        return _command(exc)
    if isinstance(exc, StoreError):
        return f"The local message store failed: {exc.message}."
    return f"{exc.message} ({exc.code})"


def _why(code: str) -> str:
    return {
        "device_revoked": "this device was removed",
        "invalid_token": "the session expired or was revoked",
    }.get(code, code)


def _login(saved: SavedSession | None) -> str:
    server = saved.server if saved else "URL"
    phone = saved.phone if saved and saved.phone else "NUMBER"
    file = f" --session-file {saved.path}" if saved else ""
    return f"pigeon chat login --server {server} --phone {phone}{file}"


def _api(exc: ApiError) -> str:
    if exc.status == 429:
        wait = f"wait {exc.retry_after} seconds" if exc.retry_after else "wait a while"
        if exc.code == "too_many_attempts":
            return f"Too many wrong codes: {wait}, then log in again for a new code."
        return f"Too many requests: {wait}, then try again."
    if exc.code == "invalid_phone":
        return "Not a valid phone number: write it with + and the country code, e.g. +14155550123."
    if exc.code == "invalid_code":
        return "That code is wrong or has expired: log in again for a new one."
    if exc.code == "invalid_pin":
        return "Wrong two-step PIN."
    if exc.code == "attachment_not_found":
        return (
            "No such file that you may read: it was not sent to you, or every device "
            "received it and the server deleted it (attachment_not_found)."
        )
    if exc.code in _SELF_EXPLANATORY:
        return exc.message
    return f"The server refused: {exc.message} ({exc.code}, HTTP {exc.status})."


def _command(exc: CommandError) -> str:
    if exc.code == "chat_not_found":
        return "No such chat among yours: `pigeon chat list` shows their ids."
    if exc.code == "user_not_found":
        return (
            f"{exc.message} Ask the person for the id `pigeon chat whoami` shows them, "
            "or the operator (`pigeon admin users`)."
        )
    if exc.code == "message_not_found":
        return (
            "No such message that you may change: check the message id (`pigeon chat open` "
            "shows them); only its sender edits it, and only its sender or a group admin "
            "deletes it."
        )
    if exc.code == "invalid_reaction":
        return 'A reaction is one emoji, like 👍 (or "" to remove yours).'
    if exc.code in _SELF_EXPLANATORY or exc.code in _MESSAGE_CHANGES:
        return exc.message
    return f"{exc.message} ({exc.code})"


# Message changes whose server message already says it all.
_MESSAGE_CHANGES = frozenset(
    {"message_not_editable", "edit_window_closed", "delete_window_closed", "forward_limited"}
)
