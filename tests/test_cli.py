"""``pigeon admin``: what an operator sees and does, against the server's own database.

The commands run in a worker thread (they call ``asyncio.run``) while the API,
on the same database, runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from pigeon.cli import main as cli
from pigeon.config import Settings
from tests.support import Outbox, bearer, register

PHONE = "+14155550123"
OTHER_PHONE = "+14155550199"


@pytest.fixture(autouse=True)
def narrow_console(monkeypatch: pytest.MonkeyPatch) -> None:
    # Output piped to a file or another program is laid out for 80 columns.
    monkeypatch.setattr(cli, "console", Console(width=80))


async def pigeon(settings: Settings, *args: str) -> Result:
    options = [
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.effective_database_url,
    ]
    arguments = ["admin", *args, *options]
    return await asyncio.to_thread(lambda: CliRunner().invoke(cli.app, arguments))


async def test_admin_users_lists_registered_users(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    alice = await register(client, outbox, PHONE)
    bob = await register(client, outbox, OTHER_PHONE)
    name = "Alice Liddell of the Looking-Glass House"
    await client.patch("/v1/me", json={"name": name}, headers=bearer(alice))

    result = await pigeon(settings, "users")
    assert result.exit_code == 0, result.output
    for user_id, phone in [(alice["user_id"], PHONE), (bob["user_id"], OTHER_PHONE)]:
        [line] = [line for line in result.output.splitlines() if user_id in line]
        assert phone in line


async def test_admin_users_on_an_empty_database(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    result = await pigeon(settings, "users")
    assert result.exit_code == 0, result.output
    assert "phone" in result.output  # the table header
    assert re.search(r"\+[0-9]", result.output) is None


async def test_admin_devices_lists_one_users_devices(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    phone = await register(client, outbox, PHONE, device="Pixel 9 Pro", platform="android")
    laptop = await register(client, outbox, PHONE, device="Work laptop", platform="desktop")
    other = await register(client, outbox, OTHER_PHONE, device="Someone else's phone")

    result = await pigeon(settings, "devices", phone["user_id"])
    assert result.exit_code == 0, result.output
    for session, platform in [(phone, "android"), (laptop, "desktop")]:
        # The whole id, as `revoke-device` needs it.
        [line] = [line for line in result.output.splitlines() if session["device_id"] in line]
        assert platform in line
    assert "Pixel 9 Pro" in result.output
    assert other["device_id"] not in result.output
    assert "Someone" not in result.output


async def test_admin_revoke_device(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    phone = await register(client, outbox, PHONE, device="phone")
    stolen = await register(client, outbox, PHONE, device="stolen")

    result = await pigeon(settings, "revoke-device", stolen["device_id"])
    assert result.exit_code == 0, result.output
    assert stolen["device_id"] in result.output

    response = await client.get("/v1/me", headers=bearer(stolen))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    refresh = {"refresh_token": stolen["refresh_token"]}
    assert (await client.post("/v1/auth/refresh", json=refresh)).status_code == 401
    assert (await client.get("/v1/me", headers=bearer(phone))).status_code == 200

    listing = await pigeon(settings, "devices", phone["user_id"])
    assert phone["device_id"] in listing.output
    assert stolen["device_id"] not in listing.output


async def test_admin_revoke_unknown_device_exits_1(
    client: httpx.AsyncClient, outbox: Outbox, settings: Settings
) -> None:
    session = await register(client, outbox, PHONE)
    unknown = "01JZZZZZZZZZZZZZZZZZZZZZZZ"
    result = await pigeon(settings, "revoke-device", unknown)
    assert result.exit_code == 1
    assert unknown in result.output
    assert (await client.get("/v1/me", headers=bearer(session))).status_code == 200


@pytest.mark.parametrize("command", [["users"], ["devices", "01JZZZZZZZZZZZZZZZZZZZZZZZ"]])
def test_admin_on_a_directory_without_a_database_says_so_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "vra"
    arguments = ["admin", *command, "--data-dir", str(typo)]
    result = CliRunner().invoke(cli.app, arguments)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"No Pigeon database at {typo / 'pigeon.db'}. Point --data-dir (or PIGEON_DATA_DIR) "
        "at the server's data directory, or --database-url at its database."
    ]
    assert not typo.exists()


def test_admin_on_a_file_that_is_not_a_pigeon_database_says_so(tmp_path: Path) -> None:
    (tmp_path / "pigeon.db").write_bytes(b"")  # an empty SQLite database
    arguments = ["admin", "users", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(cli.app, arguments)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert "it has no Pigeon tables" in line
    assert "pigeon migrate" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pigeon.db"]
