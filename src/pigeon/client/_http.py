"""Registration and sessions over the HTTP API (httpx)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from pigeon.client._errors import ApiError, AuthenticationError, NetworkError, PigeonError
from pigeon.client._models import (
    Attachment,
    CodeSent,
    Contact,
    ContactLookup,
    ContactMatch,
    Profile,
    Session,
    UploadStatus,
    parse_attachment,
    upload_status,
)

if TYPE_CHECKING:
    from pigeon.client._connection import Connection, ReconnectPolicy
    from pigeon.client._store import LocalStore

__all__ = ["PigeonClient", "websocket_url"]

USER_AGENT = "pigeon-client/0.1"

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 4 * MiB
DEFAULT_RESUMABLE_OVER = 8 * MiB
_READ_BLOCK = 256 * 1024  # what one read of the file (or one write of a download) moves
_RETRY_STATUSES = frozenset({502, 503, 504})  # a proxy or a busy server: worth trying again
_MAX_RETRY_DELAY = 10.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")


def websocket_url(base_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` -> ``ws(s)://host[:port][/prefix]/v1/ws``."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    path = parts.path.rstrip("/") + "/v1/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class PigeonClient:
    """The HTTP side of a Pigeon server: register devices, refresh tokens, open connections.

    Use it as an async context manager (or call :meth:`aclose`) so its HTTP
    connection pool is released::

        async with PigeonClient("https://pigeon.example") as client:
            await client.request_code("+14155550123")
            session = await client.verify("+14155550123", "123456", "laptop")
            async with client.connect(session) as conn:
                ...
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = websocket_url(self.base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- registration ------------------------------------------------------------

    async def request_code(self, phone: str, locale: str | None = None) -> CodeSent:
        """Ask the server to text a six-digit verification code to ``phone``."""
        body: dict[str, Any] = {"phone": phone}
        if locale is not None:
            body["locale"] = locale
        data = await self._post("/v1/auth/code", body)
        return CodeSent(phone=data["phone"], expires_in=int(data["expiresIn"]))

    async def verify(
        self,
        phone: str,
        code: str,
        device_name: str,
        platform: str = "cli",
        pin: str | None = None,
    ) -> Session:
        """Prove the number with its code (and PIN, if set): registers this device.

        A number protected by a PIN answers ``ApiError`` with code ``pin_required``
        (status 423) until ``pin`` is given.
        """
        body: dict[str, Any] = {
            "phone": phone,
            "code": code,
            "device": {"name": device_name, "platform": platform},
        }
        if pin is not None:
            body["pin"] = pin
        return _session(await self._post("/v1/auth/verify", body))

    async def refresh(self, session: Session) -> Session:
        """New tokens for the session's device; the old tokens stop working."""
        body = {"refreshToken": session.refresh_token}
        return _session(await self._post("/v1/auth/refresh", body))

    async def logout(self, session: Session) -> None:
        """Revoke the session's device (its live connection is closed by the server)."""
        await self._request("POST", "/v1/auth/logout", session=session)

    async def get_user(self, session: Session, user_id: str) -> Profile:
        """A user's public profile (name and about)."""
        data = await self._request("GET", f"/v1/users/{quote(user_id, safe='')}", session=session)
        return Profile(user_id=data["id"], name=data.get("name", ""), about=data.get("about", ""))

    async def update_profile(
        self, session: Session, *, name: str | None = None, about: str | None = None
    ) -> Profile:
        """Change this user's name and/or about (what others see); returns the new profile."""
        changes = {
            key: value for key, value in (("name", name), ("about", about)) if value is not None
        }
        data = await self._request("PATCH", "/v1/me", json=changes, session=session)
        return Profile(user_id=data["id"], name=data.get("name", ""), about=data.get("about", ""))

    # -- contacts ------------------------------------------------------------------

    async def lookup_contacts(self, session: Session, phones: list[str]) -> ContactLookup:
        """Which of ``phones`` (as a person typed them) belong to users; they become
        this user's contacts. Limited per account and address (``ApiError`` 429)."""
        data = await self._request(
            "POST", "/v1/contacts/lookup", json={"phones": phones}, session=session
        )
        matches = [ContactMatch(m["input"], _contact(m)) for m in data["matches"]]
        return ContactLookup(matches=matches, skipped=int(data["skipped"]))

    async def list_contacts(self, session: Session) -> list[Contact]:
        """This user's contacts (users found by its lookups), by name."""
        data = await self._request("GET", "/v1/contacts", session=session)
        return [_contact(c) for c in data["contacts"]]

    async def find_user(self, session: Session, phone: str) -> Contact | None:
        """The user with this number, or None if nobody on the server has it."""
        found = await self.lookup_contacts(session, [phone])
        return found.matches[0].contact if found.matches else None

    # -- attachments ---------------------------------------------------------------

    async def upload_file(
        self,
        session: Session,
        path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        resumable_over: int = DEFAULT_RESUMABLE_OVER,
        max_retries: int = 5,
        retry_delay: float = 0.5,
    ) -> Attachment:
        """Upload a file and return its :class:`Attachment` (send it with ``send_message``).

        The file is streamed from disk, never read into memory whole: a first
        pass computes its SHA-256, a second sends it. Files of at most
        ``resumable_over`` bytes go in one request (``POST /v1/attachments``);
        larger ones through a resumable upload (``POST /v1/uploads``), in
        parts of ``chunk_size`` bytes. After a network error (or a 502, 503,
        504) the upload asks the server how far it got and goes on from
        there; ``max_retries`` failures in a row without progress raise
        ``NetworkError`` (or the last ``ApiError``). ``file_name`` defaults
        to the file's name. The server sniffs the type and refuses types it
        does not accept (``ApiError`` ``unsupported_media_type``, 400) and
        files above its limit (``attachment_too_large``, 413).
        """
        if chunk_size < 1 or resumable_over < 0 or max_retries < 0 or retry_delay < 0:
            raise ValueError("chunk_size must be positive; the others not negative")
        source = Path(path)
        size, digest = await asyncio.to_thread(_hash_file, source)
        name = source.name if file_name is None else file_name
        if size <= resumable_over:
            return await self._upload_whole(
                session, source, size, digest, name, max_retries, retry_delay
            )
        failures = 0
        while True:
            status = await self._with_retries(
                lambda: self.start_upload(
                    session, source, file_name=name, sha256=digest, size=size
                ),
                max_retries,
                retry_delay,
            )
            try:
                return await self._send_parts(
                    session, status, source, chunk_size, max_retries, retry_delay
                )
            except _UploadGone as gone:
                # The upload vanished after a failure: most likely its last part
                # did arrive (the server then deletes the upload) but the answer
                # was lost. Its attachment id is unknown: upload again.
                failures += 1
                if failures > max_retries:
                    raise gone.error from None
                await asyncio.sleep(_backoff(retry_delay, failures))

    async def start_upload(
        self,
        session: Session,
        path: str | os.PathLike[str],
        *,
        file_name: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> UploadStatus:
        """Begin a resumable upload of ``path`` (no bytes sent yet); see :meth:`resume_upload`.

        ``sha256`` and ``size`` are computed from the file unless given.
        Keep ``UploadStatus.upload_id`` to resume after the process restarts.
        """
        source = Path(path)
        if sha256 is None or size is None:
            size, sha256 = await asyncio.to_thread(_hash_file, source)
        body = {
            "size": size,
            "sha256": sha256,
            "fileName": source.name if file_name is None else file_name,
        }
        return upload_status(await self._request("POST", "/v1/uploads", json=body, session=session))

    async def upload_status(self, session: Session, upload_id: str) -> UploadStatus:
        """How many bytes of a resumable upload the server has (``offset``).

        ``ApiError`` ``upload_not_found`` (404) once the upload completed,
        failed its hash check or expired.
        """
        data = await self._request(
            "GET", f"/v1/uploads/{quote(upload_id, safe='')}", session=session
        )
        return upload_status(data)

    async def resume_upload(
        self,
        session: Session,
        upload_id: str,
        path: str | os.PathLike[str],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_retries: int = 5,
        retry_delay: float = 0.5,
    ) -> Attachment:
        """Send the rest of the resumable upload ``upload_id`` from ``path``.

        It asks the server for its offset first, so it works after a crash,
        a lost connection or a part sent by other means. The file must be the
        one the upload was started with (the server checks the hash at the end).
        """
        if chunk_size < 1 or max_retries < 0 or retry_delay < 0:
            raise ValueError("chunk_size must be positive; the others not negative")
        source = Path(path)
        status = await self._with_retries(
            lambda: self.upload_status(session, upload_id), max_retries, retry_delay
        )
        try:
            return await self._send_parts(
                session, status, source, chunk_size, max_retries, retry_delay
            )
        except _UploadGone as gone:
            raise gone.error from None

    async def download_attachment(
        self,
        session: Session,
        attachment_id: str,
        dest_path: str | os.PathLike[str],
        *,
        resume: bool = True,
        max_retries: int = 5,
        retry_delay: float = 0.5,
    ) -> Path:
        """Download an attachment to ``dest_path``, streaming; returns the path.

        The bytes go to a temporary file next to it
        (``.<name>.<attachment id>.part``) which is renamed to ``dest_path``
        once complete, so ``dest_path`` never holds half a file. After a
        network error the download goes on where it stopped with a ``Range``
        request (bounded by ``max_retries`` failures in a row without
        progress). With ``resume`` a temporary file left by an earlier call
        is continued the same way; without it, it is started over.

        Anyone who may not read the attachment gets ``ApiError``
        ``attachment_not_found`` (404), as for a missing one. A recipient can
        read it while the message that carries it is stored: until every
        recipient device acked it. Download before that (see ``events()``).
        """
        if max_retries < 0 or retry_delay < 0:
            raise ValueError("max_retries and retry_delay must not be negative")
        dest = Path(dest_path)
        partial = dest.with_name(f".{dest.name}.{attachment_id}.part")
        if not resume:
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        url = f"/v1/attachments/{quote(attachment_id, safe='')}"
        failures = 0
        last_error: PigeonError | None = None
        while True:
            have = await asyncio.to_thread(_size_or_zero, partial)
            try:
                total = await self._download_into(session, url, partial, have)
            except (NetworkError, _Incomplete, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in _RETRY_STATUSES:
                    raise
                now = await asyncio.to_thread(_size_or_zero, partial)
                failures = 1 if now > have else failures + 1
                last_error = (
                    exc
                    if isinstance(exc, PigeonError)
                    else NetworkError("incomplete", f"the download of {attachment_id} ended early")
                )
                if failures > max_retries:
                    raise last_error from None
                await asyncio.sleep(_backoff(retry_delay, failures))
                continue
            if total is None:  # the server answered 416: the range started past the end
                continue
            await asyncio.to_thread(os.replace, partial, dest)
            return dest

    async def _download_into(
        self, session: Session, url: str, partial: Path, have: int
    ) -> int | None:
        """One GET appending to ``partial`` (a Range from ``have``); the file's size when done.

        None when the server refused the range (the partial file was wrong and
        has been removed, or was complete and is left in place with its size).
        """
        headers = {"Authorization": f"Bearer {session.access_token}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and have:
                    match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", ""))
                    if match is None or int(match.group(1)) != have:
                        await asyncio.to_thread(partial.unlink, missing_ok=True)
                        return None
                    return have  # the partial file is already complete
                if not response.is_success:
                    await response.aread()
                    raise _error(response)
                start, total = 0, _int_or_none(response.headers.get("content-length"))
                if response.status_code == 206:
                    match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
                    if match is None:
                        raise NetworkError("protocol_error", "a 206 answer without Content-Range")
                    start, total = int(match.group(1)), int(match.group(3))
                    if start != have:
                        raise NetworkError("protocol_error", "the server sent another range")
                handle = await asyncio.to_thread(partial.open, "ab" if start else "wb")
                try:
                    async for chunk in response.aiter_bytes():
                        await asyncio.to_thread(handle.write, chunk)
                    await asyncio.to_thread(handle.flush)
                    await asyncio.to_thread(os.fsync, handle.fileno())
                finally:
                    # Not in a thread: an await here could be cancelled and leak the file.
                    handle.close()
        except httpx.TransportError as exc:
            raise NetworkError("unreachable", f"{self.base_url}: {exc!r}") from exc
        size = await asyncio.to_thread(_size_or_zero, partial)
        if total is not None and size != total:
            if size > total:  # not the file we thought: start over
                await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise _Incomplete
        return size

    async def _upload_whole(
        self,
        session: Session,
        source: Path,
        size: int,
        digest: str,
        name: str,
        max_retries: int,
        retry_delay: float,
    ) -> Attachment:
        headers = {
            "X-Content-SHA256": digest,
            "X-File-Name": quote(name, safe=""),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }

        async def post() -> Any:
            return await self._request(
                "POST",
                "/v1/attachments",
                session=session,
                content=_file_chunks(source, 0, size),
                headers=headers,
            )

        return parse_attachment(await self._with_retries(post, max_retries, retry_delay))

    async def _send_parts(
        self,
        session: Session,
        status: UploadStatus,
        source: Path,
        chunk_size: int,
        max_retries: int,
        retry_delay: float,
    ) -> Attachment:
        """PATCH the parts from ``status.offset``; after a failure, ask the server where it is."""
        size = await asyncio.to_thread(_size_or_zero, source)
        if size != status.size:
            raise PigeonError(
                "file_changed",
                f"{source} has {size} bytes; the upload was started with {status.size}",
            )
        url = f"/v1/uploads/{quote(status.upload_id, safe='')}"
        offset: int | None = status.offset
        failures = 0
        while True:
            try:
                if offset is None:
                    try:
                        offset = (await self.upload_status(session, status.upload_id)).offset
                    except ApiError as exc:
                        if exc.status == 404 and failures:
                            raise _UploadGone(exc) from None
                        raise
                length = min(chunk_size, size - offset)
                data = await self._request(
                    "PATCH",
                    url,
                    session=session,
                    content=_file_chunks(source, offset, length),
                    headers={
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(length),
                    },
                )
            except (NetworkError, ApiError) as exc:
                retry = isinstance(exc, NetworkError) or exc.status in _RETRY_STATUSES
                if isinstance(exc, ApiError) and exc.code == "offset_mismatch":
                    retry = True  # another writer, or a part that did arrive: ask where we are
                if not retry:
                    raise
                failures += 1
                if failures > max_retries:
                    raise
                offset = None
                await asyncio.sleep(_backoff(retry_delay, failures))
                continue
            if data.get("attachment"):
                return parse_attachment(data["attachment"])
            new_offset = int(data["offset"])
            if new_offset <= offset:  # the server took nothing: do not spin
                failures += 1
                if failures > max_retries:
                    raise NetworkError("no_progress", f"the server stays at offset {new_offset}")
            else:
                failures = 0
            offset = new_offset

    async def _with_retries(
        self, call: Callable[[], Any], max_retries: int, retry_delay: float
    ) -> Any:
        """``await call()``, again after a network error or a 502/503/504 (bounded)."""
        failures = 0
        while True:
            try:
                return await call()
            except (NetworkError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in _RETRY_STATUSES:
                    raise
                failures += 1
                if failures > max_retries:
                    raise
                await asyncio.sleep(_backoff(retry_delay, failures))

    # -- the WebSocket -------------------------------------------------------------

    def connect(
        self,
        session: Session,
        *,
        auto_refresh: bool = True,
        on_session: Callable[[Session], None] | None = None,
        request_timeout: float = 10.0,
        send_attempts: int = 5,
        reconnect: ReconnectPolicy | None = None,
        ping_interval: float | None = 20.0,
        store: LocalStore | None = None,
    ) -> Connection:
        """A :class:`Connection` for ``session``; open it with ``async with``.

        With ``auto_refresh`` an access token refused on (re)connect is
        refreshed once with the refresh token; ``on_session`` is then called
        with the new session so the application can store it. With ``store``
        every message and receipt is kept in it before it is acked.
        """
        from pigeon.client._connection import Connection

        return Connection(
            self.ws_url,
            session,
            refresh=self.refresh if auto_refresh else None,
            on_session=on_session,
            request_timeout=request_timeout,
            send_attempts=send_attempts,
            reconnect=reconnect,
            ping_interval=ping_interval,
            store=store,
        )

    # -- plumbing --------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._request("POST", path, json=body)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        session: Session | None = None,
        content: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = dict(headers or {})
        if session is not None:
            sent["Authorization"] = f"Bearer {session.access_token}"
        try:
            response = await self._http.request(
                method, path, json=json, content=content, headers=sent or None
            )
        except httpx.TransportError as exc:
            raise NetworkError("unreachable", f"{self.base_url}: {exc!r}") from exc
        if response.is_success:
            return response.json() if response.content else None
        raise _error(response)


class _UploadGone(Exception):
    """The resumable upload is no longer on the server (after a failed part)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class _Incomplete(Exception):
    """A download ended before the whole file came."""


def _error(response: httpx.Response) -> PigeonError:
    code, message = _error_of(response)
    if response.status_code == 401:
        return AuthenticationError(code, message)
    retry_after = response.headers.get("retry-after", "")
    seconds = int(retry_after) if retry_after.isascii() and retry_after.isdigit() else None
    return ApiError(response.status_code, code, message, retry_after=seconds)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.reason_phrase or "HTTP error"


def _hash_file(path: Path) -> tuple[int, str]:
    """The file's size and SHA-256 (hex), read in blocks (a worker-thread function)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(MiB):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def _file_chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of the file from ``start``, a block at a time (a request body)."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        remaining = length
        while remaining > 0:
            block = await asyncio.to_thread(handle.read, min(_READ_BLOCK, remaining))
            if not block:
                raise PigeonError("file_changed", f"{path} became shorter during the upload")
            remaining -= len(block)
            yield block
    finally:
        handle.close()  # not awaited: a cancelled await here would leak the file


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _backoff(delay: float, failures: int) -> float:
    return float(min(_MAX_RETRY_DELAY, delay * 2 ** min(failures - 1, 16)))


def _contact(data: dict[str, Any]) -> Contact:
    return Contact(
        user_id=data["userId"],
        phone=data["phone"],
        name=data.get("name", ""),
        about=data.get("about", ""),
    )


def _session(data: dict[str, Any]) -> Session:
    return Session(
        user_id=data["userId"],
        device_id=data["deviceId"],
        access_token=data["accessToken"],
        refresh_token=data["refreshToken"],
    )
