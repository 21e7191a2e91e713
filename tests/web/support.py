"""Driving the web client as a person would: by its data-testid hooks (issue 17)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect
from websockets.sync.client import connect

from tests.support import Outbox
from tests.test_server import PIGEON, Server, free_port

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 10_000


class WebServer:
    """``pigeon serve`` on a fixed free port and data directory, so it can be restarted."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIGEON_")} | env
        self.log = data_dir.parent / "server.log"
        self.process: Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as sink:
            process = subprocess.Popen(
                [str(PIGEON), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.process = Server(process, self.base_url, self.log)
        self.process.wait_until_healthy()

    def stop(self) -> None:
        if self.process is not None and self.process.process.poll() is None:
            assert self.process.stop() == 0, self.process.output()

    def kill(self) -> None:
        if self.process is not None and self.process.process.poll() is None:
            self.process.process.kill()
            self.process.process.wait(timeout=15)


class Person:
    """One browser profile (a linked device) with its page."""

    def __init__(self, context: BrowserContext, page: Page, phone: str, name: str) -> None:
        self.context = context
        self.page = page
        self.phone = phone
        self.name = name
        self.user_id = ""

    def by(self, test_id: str) -> Any:
        return self.page.get_by_test_id(test_id)

    def session(self) -> dict[str, Any]:
        """The device's tokens and ids, as the app keeps them in IndexedDB."""
        session: dict[str, Any] = self.page.evaluate(
            """() => new Promise((resolve, reject) => {
                const open = indexedDB.open("pigeon");
                open.onerror = () => reject(open.error);
                open.onsuccess = () => {
                    const get = open.result.transaction("kv").objectStore("kv").get("session");
                    get.onsuccess = () => { resolve(get.result); open.result.close(); };
                };
            })"""
        )
        return session

    def open_chat(self, title: str) -> None:
        self.by("chat-item").filter(has_text=title).first.click()
        expect(self.by("chat-title")).to_have_text(title, timeout=WAIT_MS)

    def send(self, text: str) -> None:
        self.by("composer").fill(text)
        self.by("composer").press("Enter")

    def messages(self) -> Any:
        return self.by("message")

    def bubble(self, text: str) -> Any:
        return self.by("message").filter(has_text=text)


class Web:
    """People in browser contexts against one server; screenshots go to ``artifacts``."""

    def __init__(
        self, browser: Browser, server: WebServer, data_dir: Path, artifacts: Path
    ) -> None:
        self.browser = browser
        self.server = server
        self.outbox = Outbox(data_dir / "sms-outbox.jsonl")
        self.artifacts = artifacts
        self.people: list[Person] = []

    @property
    def url(self) -> str:
        return self.server.base_url

    def person(
        self, phone: str, name: str, init_script: str | None = None, **context_args: Any
    ) -> Person:
        """A new browser profile on the login page, not logged in yet."""
        context = self.browser.new_context(base_url=self.url, **context_args)
        if init_script is not None:
            context.add_init_script(init_script)
        # Any CSP violation is a bug: the app needs no inline script, style or eval.
        context.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " e => console.error('csp violation: ' + e.violatedDirective));"
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                message.text.startswith("csp violation") and errors.append(message.text)
            ),
        )
        page.goto("/")
        person = Person(context, page, phone, name)
        person.page_errors = errors  # type: ignore[attr-defined]
        self.people.append(person)
        return person

    def register(
        self, phone: str, name: str, photo: bytes | None = None, **context_args: Any
    ) -> Person:
        """Log in with the code from the console outbox and set a name, as a new user does
        (and a profile photo, a PNG, when ``photo`` is given)."""
        return self.log_in(self.person(phone, name, **context_args), photo)

    def log_in(self, person: Person, photo: bytes | None = None) -> Person:
        """From the login page to the chat list: code from the outbox, then the name."""
        phone, name = person.phone, person.name
        person.by("phone-input").fill(phone)
        person.by("request-code").click()
        expect(person.by("code-input")).to_be_visible(timeout=WAIT_MS)
        person.by("code-input").fill(self.outbox.last_code(phone))
        person.by("verify-code").click()
        person.by("profile-name").fill(name)
        if photo is not None:
            person.by("profile-photo-input").set_input_files(
                files=[{"name": "me.png", "mimeType": "image/png", "buffer": photo}]
            )
            expect(person.by("profile-photo-preview")).to_be_visible()
        person.by("profile-name").press("Enter")
        expect(person.by("chat-list")).to_be_visible(timeout=WAIT_MS)
        expect(person.by("connection-status")).to_have_attribute(
            "data-state", "online", timeout=WAIT_MS
        )
        person.user_id = person.session()["userId"]
        return person

    def side_device(self, phone: str) -> dict[str, Any]:
        """Another device of the same person, over the HTTP API (as the SDK would)."""
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            client.post("/v1/auth/code", json={"phone": phone}).raise_for_status()
            response = client.post(
                "/v1/auth/verify",
                json={
                    "phone": phone,
                    "code": self.outbox.last_code(phone),
                    "device": {"name": "helper", "platform": "cli"},
                },
            )
            response.raise_for_status()
            session: dict[str, Any] = response.json()
            return session

    def command(self, session: dict[str, Any], type_: str, data: dict[str, Any]) -> Any:
        """One protocol command on a socket of ``session``'s device; its answer's data."""
        ws_url = re.sub(r"^http", "ws", self.url) + "/v1/ws"
        headers = {"Authorization": f"Bearer {session['accessToken']}"}
        with connect(ws_url, additional_headers=headers) as socket:
            socket.send(json.dumps({"id": 1, "type": type_, "data": data}))
            while True:
                frame = json.loads(socket.recv(timeout=10))
                if frame.get("id") == 1:
                    assert frame["ok"], frame
                    return frame["data"]

    def chat_between(self, first: Person, second: Person, greeting: str) -> str:
        """A 1:1 chat started from another device of ``first`` with a greeting both pages get.

        Starting a chat by phone in the page needs contacts lookup (issue 16,
        tests/web/test_new_chat.py); this goes through the protocol instead.
        """
        device = self.side_device(first.phone)
        chat = self.command(device, "createChat", {"participants": [second.user_id]})
        self.command(
            device,
            "sendMessage",
            {"chatId": chat["chatId"], "clientMessageId": "greeting", "message": greeting},
        )
        return str(chat["chatId"])

    def restart_server(self, during: Callable[[], object]) -> None:
        """Stop the server (SIGTERM), run ``during``, start it again on the same port and data."""
        self.server.stop()
        during()
        self.server.start()

    def screenshot(self, person: Person, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        person.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        for person in self.people:
            errors = getattr(person, "page_errors", [])
            person.context.close()
            assert not errors, f"{person.name}'s page raised: {errors}"
