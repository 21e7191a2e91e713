"""``GET /``: the web client's page and assets, under its security headers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pigeon.api.app import create_app
from pigeon.bootstrap import Container
from pigeon.config import Settings


async def test_the_page_and_its_assets_carry_the_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    policy = page.headers["content-security-policy"]
    assert "connect-src 'self' ws://pigeon.test wss://pigeon.test;" in policy
    assert "frame-ancestors 'none'" in policy
    asset = page.text.split('src="', 1)[1].split('"', 1)[0]
    script = await client.get(asset)
    assert script.status_code == 200
    assert script.headers["content-security-policy"] == policy
    assert script.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/assets/nothing.js")).status_code == 404


async def test_a_host_header_that_is_not_a_host_stays_out_of_the_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/", headers={"Host": "evil.test; script-src *"})
    assert "connect-src 'self'; " in page.headers["content-security-policy"]
    assert "evil" not in page.headers["content-security-policy"]


async def test_without_a_build_the_page_says_how_to_make_one(
    settings: Settings, container: Container, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pigeon.api.routes.web.STATIC_DIR", tmp_path / "empty")
    app = create_app(settings, container)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pigeon.test") as client:
        page = await client.get("/")
    assert page.status_code == 404
    assert page.json()["error"]["code"] == "web_not_built"
    assert page.headers["x-content-type-options"] == "nosniff"
