"""Many HTTP writes at once on SQLite: nobody waits on the lock until it times out.

SQLite takes one writer at a time. Every write unit of work of the server
goes through its one writer (``storage/sqlite_writer.py``), in arrival
order, instead of each request taking the write lock on a pooled
connection and waiting inside SQLite (where, past the busy timeout, a
request failed with 503 ``unavailable``). Here 100 people sign up at once
against ``pigeon serve`` (a code request, its verify, then a profile
update, each person's three in a row, everyone's at the same time): every
answer is the one the API documents, none is a 5xx, and the server never
logs that the database was locked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.faults.support import ServerProcess, fresh_database
from tests.support import Outbox

PEOPLE = 100


@pytest.mark.timeout(120)
async def test_a_hundred_sign_ups_and_profile_updates_at_once_on_sqlite(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        server = ServerProcess(
            tmp_path,
            url,
            # Everyone comes from 127.0.0.1 here; the per-address limits are not the subject.
            send_code_limit_per_ip="100000/hour",
            verify_limit_per_ip="100000/hour",
        )
        await server.start()
        outbox = Outbox(tmp_path / "sms-outbox.jsonl")
        statuses: Counter[tuple[str, int]] = Counter()
        unexpected: list[str] = []

        async def person(http: httpx.AsyncClient, n: int) -> None:
            phone = f"+1415556{n:04d}"

            def saw(step: str, response: httpx.Response, wanted: int) -> None:
                statuses[(step, response.status_code)] += 1
                if response.status_code != wanted:
                    unexpected.append(f"{step} {phone}: {response.status_code} {response.text}")

            sent = await http.post("/v1/auth/code", json={"phone": phone})
            saw("code", sent, 202)
            if sent.status_code != 202:
                return
            body = {
                "phone": phone,
                "code": outbox.last_code(phone),
                "device": {"name": "phone", "platform": "android"},
            }
            verified = await http.post("/v1/auth/verify", json=body)
            saw("verify", verified, 200)
            if verified.status_code != 200:
                return
            token = verified.json()["accessToken"]
            updated = await http.patch(
                "/v1/me",
                json={"name": f"person {n}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            saw("profile", updated, 200)

        limits = httpx.Limits(max_connections=PEOPLE)
        try:
            async with httpx.AsyncClient(
                base_url=server.http_url, timeout=30, limits=limits
            ) as http:
                await asyncio.gather(*(person(http, n) for n in range(PEOPLE)))
        finally:
            await server.stop()
        log = server.log_text()
    print(f"\n[concurrent writes] {dict(sorted(statuses.items()))}")
    assert unexpected == [], unexpected[:10]
    assert statuses == {("code", 202): PEOPLE, ("verify", 200): PEOPLE, ("profile", 200): PEOPLE}
    assert "database is locked" not in log, server.log_tail()
    assert "Traceback" not in log, server.log_tail()
