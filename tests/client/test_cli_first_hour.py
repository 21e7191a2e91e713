"""``pigeon chat`` in a newcomer's first hour: help that renders, mistakes answered in one
line with what to do (never a traceback), and the commands a group needs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import Result

from pigeon.client import MessageEvent, PigeonClient
from pigeon.config import Settings
from tests.client.conftest import OpenDevice, Register
from tests.client.test_cli_chat import (  # noqa: F401 (fixtures)
    PHONE,
    Pipe,
    code_for,
    login,
    narrow_console,
    pigeon_chat,
    server_logs_apart,
    stored,
    streaming_input,
)
from tests.client.test_cli_chat import pipe as pipe  # a fixture
from tests.client.test_cli_chat import session_file as session_file  # a fixture
from tests.client.test_cli_open import created_id
from tests.live import LiveServer
from tests.support import FakeClock, Outbox


def one_line_error(result: Result) -> str:
    """The command failed with exit status 1 and said so in one line, without a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


async def test_open_help_shows_how_files_are_listed() -> None:
    result = await pigeon_chat("open", "--help")
    assert result.exit_code == 0, result.output
    assert "[name, type, size, id]" in result.output


async def test_a_server_url_without_its_scheme_is_answered_with_the_right_one(
    server: LiveServer, outbox: Outbox, session_file: Path
) -> None:
    bare = f"127.0.0.1:{server.port}"
    result = await pigeon_chat(
        "login", "--server", bare, "--phone", PHONE, "--session-file", str(session_file)
    )
    assert f"--server http://{bare}" in one_line_error(result)
    assert outbox.messages() == []


async def test_a_phone_number_without_country_code_says_to_add_it(
    server: LiveServer, outbox: Outbox, session_file: Path
) -> None:
    result = await pigeon_chat(
        "login",
        "--server",
        server.http_url,
        "--phone",
        "4155550123",
        "--session-file",
        str(session_file),
    )
    line = one_line_error(result)
    assert "Add + and the country code" in line
    assert "+14155550123" in line
    assert outbox.messages() == []


async def test_a_code_that_is_not_six_digits_is_asked_for_again(
    server: LiveServer, outbox: Outbox, session_file: Path, pipe: Pipe
) -> None:
    running = asyncio.create_task(
        pigeon_chat(
            "login",
            "--server",
            server.http_url,
            "--phone",
            PHONE,
            "--session-file",
            str(session_file),
            stdin=pipe.reader,
        )
    )
    try:
        code = await code_for(outbox, PHONE)
        pipe.type("12ab56\n")
        pipe.type(f"{code}\n")
    finally:
        pipe.end()
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output
    assert "The code is six digits" in result.output
    assert f"Logged in as user {stored(session_file)['user_id']}" in result.output


class TestRateLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"send_code_limit_per_number": "1/minute"})

    async def test_a_rate_limit_says_how_long_to_wait(
        self, server: LiveServer, outbox: Outbox, session_file: Path, pipe: Pipe
    ) -> None:
        await login(server, outbox, session_file, pipe)
        again = await pigeon_chat(
            "login", "--server", server.http_url, "--phone", PHONE, "--session-file", "x.json"
        )
        line = one_line_error(again)
        wait = re.search(r"wait (\d+) seconds", line)
        assert wait is not None, line
        assert 1 <= int(wait.group(1)) <= 60


async def test_an_expired_session_says_to_log_in_again(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    clock: FakeClock,
    settings: Settings,
) -> None:
    await login(server, outbox, session_file, pipe)
    clock.advance(seconds=settings.refresh_token_ttl_seconds + 1)
    line = one_line_error(await pigeon_chat("list", "--session-file", str(session_file)))
    assert "log in again" in line.lower()
    assert (
        f"pigeon chat login --server {server.http_url} --phone {PHONE} "
        f"--session-file {session_file}" in line
    )


async def test_a_phone_number_given_for_a_user_id_says_what_is_expected(
    server: LiveServer, outbox: Outbox, session_file: Path, pipe: Pipe
) -> None:
    await login(server, outbox, session_file, pipe)
    options = ("--session-file", str(session_file))
    for args in [
        ("new", "--with", "+14155550199"),
        ("new", "--group", "Trip", "--member", "4155550199"),
        ("add", "01JQ80G5H6J7K8M9N0P1Q2R3S4", "+1 415 555 0199"),
    ]:
        line = one_line_error(await pigeon_chat(*args, *options))
        assert "takes a user id" in line, args
        assert "not a phone number" in line
        assert "pigeon chat open " in line  # a chat starts from a number there


async def test_set_name_and_whoami(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    sdk: PigeonClient,
) -> None:
    await login(server, outbox, session_file, pipe)
    options = ("--session-file", str(session_file))
    named = await pigeon_chat("set-name", "Alice Liddell", *options)
    assert named.exit_code == 0, named.output
    assert "Alice Liddell" in named.output

    me = await pigeon_chat("whoami", *options)
    assert me.exit_code == 0, me.output
    user_id = stored(session_file)["user_id"]
    assert f"user id: {user_id}" in me.output
    assert "name:    Alice Liddell" in me.output
    assert PHONE in me.output
    # Others see the name.
    assert (await sdk.get_user(await register(), user_id)).name == "Alice Liddell"

    too_long = one_line_error(await pigeon_chat("set-name", "x" * 65, *options))
    assert "at most 64 characters" in too_long


async def test_group_members_names_and_leaving_from_the_command_line(
    server: LiveServer,
    outbox: Outbox,
    session_file: Path,
    pipe: Pipe,
    register: Register,
    open_device: OpenDevice,
    sdk: PigeonClient,
) -> None:
    await login(server, outbox, session_file, pipe)
    alice_id = stored(session_file)["user_id"]
    bob = await open_device(await register())
    carol_session = await register()
    await sdk.update_profile(carol_session, name="Carol")
    options = ("--session-file", str(session_file))
    created = await pigeon_chat("new", "--group", "Trip", "--member", bob.user_id, *options)
    group_id = created_id(created.output)

    added = await pigeon_chat("add", group_id, carol_session.user_id, *options)
    assert added.exit_code == 0, added.output
    assert "Added Carol." in added.output
    renamed = await pigeon_chat("rename", group_id, "Trip 2026", *options)
    assert renamed.exit_code == 0, renamed.output
    removed = await pigeon_chat("remove", group_id, carol_session.user_id, *options)
    assert removed.exit_code == 0, removed.output
    assert "Removed Carol." in removed.output
    left = await pigeon_chat("leave", group_id, *options)
    assert left.exit_code == 0, left.output

    changes = [(m.system or {}) for m in await bob.messages(5)]
    assert [change.get("action") for change in changes] == [
        "created",
        "added",
        "renamed",
        "removed",
        "left",
    ]
    assert changes[2]["name"] == "Trip 2026"
    assert changes[4]["userId"] == alice_id
    # Not a member any more: the next attempt says what is wrong, in one line.
    line = one_line_error(await pigeon_chat("rename", group_id, "Mine again", *options))
    assert "pigeon chat list" in line
    assert all(isinstance(m, MessageEvent) for m in bob.received_messages())
