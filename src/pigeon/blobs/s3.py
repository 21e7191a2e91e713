"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2...), through aioboto3."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

CHUNK = 64 * 1024


class S3BlobStore:
    """Objects live at ``<prefix><sha256>``; the bucket stays private, Pigeon authorizes."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        prefix: str = "blobs/",
        path_style: bool = True,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if path_style else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                self._session.client("s3", **self._client_args)
            )
        return self._client

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    async def ensure_bucket(self) -> None:
        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self._bucket)
        except ClientError:
            await s3.create_bucket(Bucket=self._bucket)

    async def put(self, key: str, path: Path, content_type: str) -> None:
        s3 = await self._s3()
        # upload_file switches to a multipart upload for large files by itself.
        await s3.upload_file(
            str(path), self._bucket, self._key(key), ExtraArgs={"ContentType": content_type}
        )

    async def exists(self, key: str) -> bool:
        s3 = await self._s3()
        try:
            await s3.head_object(Bucket=self._bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        s3 = await self._s3()
        byte_range = f"bytes={start}-{'' if end is None else end}"
        response = await s3.get_object(Bucket=self._bucket, Key=self._key(key), Range=byte_range)
        body = response["Body"]
        try:
            while chunk := await body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        await s3.delete_object(Bucket=self._bucket, Key=self._key(key))

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
