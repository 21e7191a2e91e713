"""Contact discovery from the outside: lookups, the contacts list, and the limits on walking
the number space."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pigeon.bootstrap import Container
from pigeon.config import Settings
from pigeon.storage.schema import metadata
from tests.support import Outbox, bearer, register

ADA = "+14155550100"
BOB = "+14155550101"
CY = "+442079460958"  # a London number


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small limits, so the tests reach them in a few requests.
    return settings.model_copy(
        update={
            "contacts_lookup_numbers_per_day": 60,
            "contacts_lookup_limit_per_account": "8/minute",
            "contacts_lookup_limit_per_ip": "12/minute",
            "contacts_lookup_max_numbers": 50,
        }
    )


async def lookup(
    client: httpx.AsyncClient, session: dict[str, Any], phones: list[str]
) -> httpx.Response:
    return await client.post(
        "/v1/contacts/lookup", json={"phones": phones}, headers=bearer(session)
    )


async def name(client: httpx.AsyncClient, session: dict[str, Any], value: str) -> None:
    response = await client.patch(
        "/v1/me", json={"name": value, "about": f"{value} here"}, headers=bearer(session)
    )
    assert response.status_code == 200, response.text


async def test_lookup_finds_users_in_any_format_and_keeps_them_as_contacts(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    ada = await register(client, outbox, ADA)
    bob = await register(client, outbox, BOB)
    cy = await register(client, outbox, CY)
    await name(client, bob, "Bob")
    await name(client, cy, "Cy")

    sent = ["(415) 555-0101", "+44 20 7946 0958", "+1 415 555 0199", "not a number", "12", ADA]
    response = await lookup(client, ada, sent)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["skipped"] == 2  # "not a number" and "12"; a non-user is not "skipped"
    by_input = {m["input"]: m for m in body["matches"]}
    # Ada's own number and the non-user's are not matches; a local number is read in
    # Ada's own country (US).
    assert set(by_input) == {"(415) 555-0101", "+44 20 7946 0958"}
    assert by_input["(415) 555-0101"] == {
        "input": "(415) 555-0101",
        "phone": BOB,
        "userId": bob["user_id"],
        "name": "Bob",
        "about": "Bob here",
        "photo": None,
    }
    assert by_input["+44 20 7946 0958"]["userId"] == cy["user_id"]

    listed = await client.get("/v1/contacts", headers=bearer(ada))
    assert listed.status_code == 200, listed.text
    assert [c["userId"] for c in listed.json()["contacts"]] == [bob["user_id"], cy["user_id"]]
    # Contacts are one-way: Bob looked nobody up.
    assert (await client.get("/v1/contacts", headers=bearer(bob))).json() == {"contacts": []}


async def test_numbers_of_non_users_are_never_stored(
    client: httpx.AsyncClient, outbox: Outbox, container: Container
) -> None:
    ada = await register(client, outbox, ADA)
    await register(client, outbox, BOB)
    response = await lookup(client, ada, [BOB, "+1 415 555 0177", "+14155550178"])
    assert response.status_code == 200
    assert [m["phone"] for m in response.json()["matches"]] == [BOB]

    async with container.engine.connect() as conn:
        stored = [
            str(row)
            for table in metadata.sorted_tables
            for row in (await conn.execute(sa.select(table))).all()
        ]
    dump = "\n".join(stored)
    assert BOB in dump  # a user's number is in the users table, as ever
    for digits in ("5550177", "5550178"):
        assert digits not in dump


async def test_bad_lookups_are_refused_with_a_code(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    ada = await register(client, outbox, ADA)
    too_many = await lookup(client, ada, [f"+1415555{n:04d}" for n in range(51)])
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "too_many_numbers"
    not_a_list = await client.post(
        "/v1/contacts/lookup", json={"phones": "+14155550101"}, headers=bearer(ada)
    )
    assert not_a_list.status_code == 422
    assert not_a_list.json()["error"]["code"] == "invalid_request"
    unauthenticated = await client.post("/v1/contacts/lookup", json={"phones": []})
    assert unauthenticated.status_code == 401
    # NUL characters and junk are skipped, never a 500.
    junk = await lookup(client, ada, ["", "+", "+999999999999999", "☎"])
    assert junk.status_code == 200, junk.text
    assert junk.json() == {"matches": [], "skipped": 4}
    # Text no database can store is refused like in any other field.
    nul = await lookup(client, ada, ["+1415555\x000101"])
    assert (nul.status_code, nul.json()["error"]["code"]) == (422, "invalid_request")


async def test_a_number_range_cannot_be_walked(client: httpx.AsyncClient, outbox: Outbox) -> None:
    """An attacker with an account tries to find who is on Pigeon by looking up a range.

    The daily quota (60 numbers here) stops it: the lookup that would pass it is refused
    as a whole with 429 and Retry-After, so the user further along the range is never
    found. The attacker's own contacts stay free to look up again.
    """
    attacker = await register(client, outbox, "+14155550001")
    victim = await register(client, outbox, "+14155550150")
    early = await register(client, outbox, "+14155550010")

    found: set[str] = set()
    looked_up = 0
    refused: httpx.Response | None = None
    for start in range(0, 200, 20):
        numbers = [f"+1415555{n:04d}" for n in range(start, start + 20)]
        response = await lookup(client, attacker, numbers)
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200, response.text
        looked_up += len(numbers)
        found |= {m["userId"] for m in response.json()["matches"]}

    assert refused is not None
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert looked_up == 60
    assert found == {early["user_id"]}
    assert victim["user_id"] not in found
    # Even one more number is refused: the quota is spent for the day.
    step = await lookup(client, attacker, ["+14155550150"])
    assert step.status_code == 429
    # Re-syncing numbers that are already contacts costs nothing.
    again = await lookup(client, attacker, ["+14155550010"])
    assert again.status_code == 200
    assert [m["userId"] for m in again.json()["matches"]] == [early["user_id"]]


async def test_lookups_are_limited_per_account_and_per_address(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    ada = await register(client, outbox, ADA)
    bob = await register(client, outbox, BOB)
    for _ in range(8):
        assert (await lookup(client, ada, [])).status_code == 200
    per_account = await lookup(client, ada, [])
    assert per_account.status_code == 429
    assert int(per_account.headers["Retry-After"]) > 0
    # Bob is not limited by Ada's account, but shares her address (12 a minute).
    for _ in range(3):
        assert (await lookup(client, bob, [])).status_code == 200
    per_address = await lookup(client, bob, [])
    assert per_address.status_code == 429
    assert per_address.json()["error"]["code"] == "rate_limited"
