"""Fixtures for media: every test runs on both blob stores (files and S3) and both databases.

The S3 store talks to a moto server on 127.0.0.1, started once per session; each
test gets a bucket of its own. Tests change media settings by parametrizing
``media_settings`` (a dict of Settings fields).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import httpx
import pytest
import sqlalchemy as sa
from moto.server import ThreadedMotoServer
from PIL import Image
from pydantic import SecretStr

from pigeon.bootstrap import Container
from pigeon.config import Settings
from pigeon.storage.schema import attachments, blobs, uploads
from tests.gateway.conftest import Connect, Register, connect, server, user  # noqa: F401
from tests.support import bearer

S3_KEY_ID = "pigeon-test"
S3_SECRET = "pigeon-test-secret"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto S3 server for the whole session, on a port the OS picked."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        moto.stop()


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def media_settings() -> dict[str, Any]:
    """Settings a test changes; parametrize this name to override (``indirect`` not needed)."""
    return {}


@pytest.fixture
def settings(
    settings: Settings,
    blob_store: str,
    media_settings: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Settings:
    values = settings.model_dump()
    if blob_store == "s3":
        values |= {
            "blob_store": "s3",
            "s3_endpoint_url": request.getfixturevalue("moto_url"),
            "s3_bucket": f"pigeon-{uuid.uuid4().hex[:16]}",
            "s3_region": "us-east-1",
            "s3_access_key_id": S3_KEY_ID,
            "s3_secret_access_key": SecretStr(S3_SECRET),
            "s3_path_style": True,
        }
    values |= media_settings
    return Settings(**values)


# -- looking at what is stored ----------------------------------------------------

StoredObjects = Callable[[], Awaitable[list[str]]]


@pytest.fixture
def stored_objects(settings: Settings) -> StoredObjects:
    """Every object in the blob store (all files under blobs/, or all keys in the bucket)."""

    async def list_filesystem() -> list[str]:
        root = settings.data_dir / "blobs"
        if not root.exists():
            return []
        return sorted(p.name for p in root.rglob("*") if p.is_file())

    async def list_bucket() -> list[str]:
        session = aioboto3.Session(
            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET, region_name="us-east-1"
        )
        async with session.client("s3", endpoint_url=settings.s3_endpoint_url) as s3:
            keys: list[str] = []
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=settings.s3_bucket):
                keys += [item["Key"] for item in page.get("Contents", [])]
            return sorted(keys)

    return list_bucket if settings.blob_store == "s3" else list_filesystem


def blob_names(keys: list[str]) -> list[str]:
    """Object keys without the S3 prefix, so both stores compare alike."""
    return sorted(key.rsplit("/", 1)[-1] for key in keys)


RowCounts = Callable[[], Awaitable[dict[str, int]]]


@pytest.fixture
def row_counts(container: Container) -> RowCounts:
    async def count() -> dict[str, int]:
        async with container.engine.connect() as conn:
            return {
                table.name: int(
                    await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0
                )
                for table in (attachments, blobs, uploads)
            }

    return count


@pytest.fixture
def staged(settings: Settings) -> Callable[[], list[Path]]:
    """Files left in the staging directory (partial uploads in progress)."""

    def files() -> list[Path]:
        root = settings.data_dir / "uploads"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    return files


# -- content ------------------------------------------------------------------


def png(width: int = 320, height: int = 200, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def pdf(text: str = "hello") -> bytes:
    """Enough of a PDF for the sniffer (which reads the magic number)."""
    return b"%PDF-1.4\n%" + text.encode() + b"\n" + bytes(range(32, 127)) * 4 + b"\n%%EOF\n"


# -- talking to the API ------------------------------------------------------------


async def upload(
    client: httpx.AsyncClient,
    session: dict[str, Any],
    body: bytes,
    *,
    name: str = "file.bin",
    digest: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /v1/attachments with the raw body (the response is not checked)."""
    return await client.post(
        "/v1/attachments",
        content=body,
        headers={
            **bearer(session),
            "X-Content-SHA256": digest or sha256(body),
            "X-File-Name": name,
            "Content-Type": "application/octet-stream",
            **(headers or {}),
        },
    )


async def uploaded(
    client: httpx.AsyncClient, session: dict[str, Any], body: bytes, name: str = "file.bin"
) -> dict[str, Any]:
    """Upload that must succeed; the attachment's metadata."""
    response = await upload(client, session, body, name=name)
    assert response.status_code == 201, response.text
    meta: dict[str, Any] = response.json()
    return meta


async def download(
    client: httpx.AsyncClient,
    session: dict[str, Any] | None,
    attachment_id: str,
    range_: str | None = None,
) -> httpx.Response:
    headers = bearer(session) if session else {}
    if range_ is not None:
        headers["Range"] = range_
    return await client.get(f"/v1/attachments/{attachment_id}", headers=headers)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


__all__ = ["Connect", "Register"]
