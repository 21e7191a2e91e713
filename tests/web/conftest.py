"""The web client in Debian's chromium against ``pigeon serve`` on 127.0.0.1.

Each test gets its own server process on a free port with an empty data
directory, like ``make run``; the browser is shared by the session, each
person is a browser context of their own (a profile: its own IndexedDB).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.conftest import _run_in_thread, _truncate
from tests.web.support import CHROMIUM, Web, WebServer

ARTIFACTS = Path(os.environ.get("PIGEON_WEB_ARTIFACTS", "test-artifacts/web"))

# Tests register several people (and helper devices) within seconds, from one address.
RELAXED_LIMITS = {
    "PIGEON_SEND_CODE_LIMIT_PER_NUMBER": "100/second",
    "PIGEON_SEND_CODE_LIMIT_PER_IP": "1000/minute",
    "PIGEON_VERIFY_LIMIT_PER_IP": "1000/minute",
}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    yield browser
    browser.close()


@pytest.fixture
def backend() -> str:
    """SQLite, like `make run`; a test parametrizes ``backend`` to run on PostgreSQL too."""
    return "sqlite"


@pytest.fixture
def server_settings() -> dict[str, str]:
    """Settings of this test's server on top of the relaxed limits (parametrize to change)."""
    return {}


@pytest.fixture
def server(
    tmp_path: Path, backend: str, server_settings: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[WebServer]:
    env = {**RELAXED_LIMITS, **server_settings}
    if backend == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
        _run_in_thread(lambda: _truncate(url))
        env["PIGEON_DATABASE_URL"] = url
    running = WebServer(tmp_path / "data", env)
    try:
        running.start()
        yield running
    finally:
        running.kill()


@pytest.fixture
def web(browser: Browser, server: WebServer, tmp_path: Path) -> Iterator[Web]:
    helper = Web(browser, server, tmp_path / "data", ARTIFACTS)
    yield helper
    helper.close()
