"""Property-based fuzzing of every documented operation against /openapi.json.

Schemathesis generates valid and invalid requests from the schema and checks
that the API never answers 5xx and that each answer (status code, content
type, headers, body) is one the schema documents. SQLite only: the shape of
the API is under test here, not the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation

from pigeon.api.app import create_app
from pigeon.config import Settings
from tests.support import Outbox

MAX_EXAMPLES = 30

CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # A request the schema allows may still be refused for what the schema cannot
            # say: a number that does not exist or a wrong code (400, 403, ...), a size
            # over a configured limit (413). Those are documented answers. 422 is not
            # among them: the schema must allow no less than the API does.
            "positive_data_acceptance": {
                "expected-statuses": [
                    "2xx",
                    "400",
                    "401",
                    "403",
                    "404",
                    "409",
                    "413",
                    "416",
                    "423",
                    "429",
                ]
            }
        }
    }
)


class Sessions:
    """A valid access token, re-registered (as a new number) whenever one stops working.

    Fuzzing ``POST /v1/auth/logout`` revokes the token it is given, so each
    case first checks that the token still works.
    """

    def __init__(self, app: FastAPI, outbox: Outbox) -> None:
        self._client = asgi.get_client(app)
        self._outbox = outbox
        self._numbers = (f"+1415555{n:04d}" for n in itertools.count(1000))
        self._token: str | None = None
        self.registered = 0

    def token(self) -> str:
        if self._token is not None:
            response = self._client.get("/v1/me", headers=self._headers(self._token))
            if response.status_code == 200:
                return self._token
            assert response.status_code == 401, response.text
        self._token = self._register(next(self._numbers))
        return self._token

    def _register(self, phone: str) -> str:
        response = self._client.post("/v1/auth/code", json={"phone": phone})
        assert response.status_code == 202, response.text
        response = self._client.post(
            "/v1/auth/verify",
            json={
                "phone": phone,
                "code": self._outbox.last_code(phone),
                "device": {"name": "fuzz"},
            },
        )
        assert response.status_code == 200, response.text
        self.registered += 1
        token: str = response.json()["accessToken"]
        return token

    @staticmethod
    def _headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'pigeon.db'}",
        secret_key="fuzz-secret-key",
        auto_migrate=True,
        # Rate limits would turn most generated requests into (documented) 429s.
        send_code_limit_per_number="100000/minute",
        send_code_limit_per_ip="100000/minute",
        verify_limit_per_ip="100000/minute",
        pin_attempt_limit="100000/minute",
        pin_hash_time_cost=1,
        pin_hash_memory_kib=64,
        pin_hash_parallelism=1,
    )
    app = create_app(app_settings)
    yield app
    # Schemathesis runs the app (and its lifespan) on a loop of its own; close it there.
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def sessions(fuzz_app: FastAPI) -> Sessions:
    container = fuzz_app.state.container
    return Sessions(fuzz_app, Outbox(container.settings.data_dir / "sms-outbox.jsonl"))


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=CONFIG)


def operations(api_schema: BaseSchema) -> list[APIOperation]:
    found = [result.ok() for result in api_schema.get_all_operations()]
    assert len(found) >= 10  # the schema really was read
    return found


# About a minute on a quiet machine; the margin is for a busy one.
@pytest.mark.timeout(300)
def test_every_operation_answers_as_documented(
    api_schema: BaseSchema, sessions: Sessions, subtests: pytest.Subtests
) -> None:
    answered: dict[str, set[int]] = {}
    secured: set[str] = set()
    for operation in operations(api_schema):
        if operation.definition.raw.get("security"):
            secured.add(operation.label)
        with subtests.test(msg=operation.label):
            answered[operation.label] = fuzz(operation, sessions)

    # The fuzzing got past authentication everywhere (the token was good)...
    assert {label for label in secured & answered.keys() if answered[label] <= {401}} == set()
    # ...and reached real successes, not only refusals.
    succeeded = {label for label, statuses in answered.items() if any(s < 300 for s in statuses)}
    assert {"GET /v1/me", "PATCH /v1/me", "GET /v1/devices", "GET /health"} <= succeeded


def fuzz(operation: APIOperation, sessions: Sessions) -> set[int]:
    """Valid and invalid requests to ``operation``; the first failure is shrunk and raised.

    Returns the status codes the operation answered with.
    """
    secured = bool(operation.definition.raw.get("security"))
    cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )
    statuses: set[int] = set()

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        headers = {"Authorization": f"Bearer {sessions.token()}"} if secured else None
        response = case.call_and_validate(headers=headers)
        statuses.add(response.status_code)

    run()
    return statuses
