"""The ports services depend on; adapters (storage, sms, ratelimit, ...) implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from pigeon.domain.models import CodePurpose, Device, User, VerificationCode


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class UserRepository(Protocol):
    async def get(self, user_id: str) -> User | None: ...
    async def get_by_phone(self, phone: str) -> User | None: ...
    async def add(self, user: User) -> None: ...
    async def update_profile(self, user_id: str, values: Mapping[str, str | None]) -> None: ...
    async def set_pin(self, user_id: str, pin_hash: str | None) -> None: ...
    async def set_pin_reset_requested(self, user_id: str, at: datetime | None) -> None: ...
    async def list(self, limit: int, after_id: str | None = None) -> Sequence[User]: ...


class DeviceRepository(Protocol):
    async def add(self, device: Device) -> None: ...
    async def get(self, device_id: str) -> Device | None: ...
    async def get_by_access_hash(self, token_hash: str) -> Device | None: ...
    async def get_by_refresh_hash(self, token_hash: str) -> Device | None: ...
    async def list_for_user(self, user_id: str) -> Sequence[Device]: ...
    async def count_for_user(self, user_id: str) -> int: ...
    async def count(self) -> int: ...
    async def delete(self, device_id: str) -> bool: ...
    async def replace_tokens(self, device: Device) -> None:
        """Store ``device``'s token hashes, expiries and last-seen time."""
        ...


@dataclass(slots=True, frozen=True)
class CodeAttempt:
    """A code as it stood when one verification attempt was claimed against it."""

    code_hash: str
    expires_at: datetime
    attempts: int


class CodeRepository(Protocol):
    async def put(self, code: VerificationCode) -> None:
        """Store ``code``, replacing any earlier code for the same phone and purpose."""
        ...

    async def claim_attempt(
        self, phone: str, purpose: CodePurpose, max_attempts: int
    ) -> CodeAttempt | None:
        """Count one guess, atomically, unless ``max_attempts`` are already used.

        Returns None when there is no code or its guesses are used up, so that
        concurrent guesses can never evaluate more than ``max_attempts``.
        """
        ...

    async def consume(self, phone: str, purpose: CodePurpose, code_hash: str) -> bool:
        """Delete the code if it is still there; True for exactly one caller."""
        ...

    async def exists(self, phone: str, purpose: CodePurpose) -> bool: ...
    async def purge_expired(self, now: datetime) -> int: ...


class UnitOfWork(Protocol):
    """One transaction over all repositories; rolled back unless ``commit`` is called."""

    @property
    def users(self) -> UserRepository: ...
    @property
    def devices(self) -> DeviceRepository: ...
    @property
    def codes(self) -> CodeRepository: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class RateLimiter(Protocol):
    async def hit(self, rule: str, key: str) -> None:
        """Count one event against ``rule`` for ``key``; raise RateLimited when over."""
        ...

    async def retry_after(self, rule: str, key: str) -> int:
        """Seconds until ``rule`` allows ``key`` another event (0 if it does now)."""
        ...


class PinHasher(Protocol):
    async def hash(self, pin: str) -> str: ...
    async def verify(self, pin_hash: str, pin: str) -> bool: ...


@dataclass(slots=True, frozen=True)
class SmsMessage:
    to: str
    template: str
    body: str


class SmsProvider(Protocol):
    async def send(self, message: SmsMessage) -> None:
        """Hand ``message`` to the carrier; raise PigeonError on refusal or outage."""
        ...


class SmsTemplates(Protocol):
    def render(self, template: str, locale: str | None, params: Mapping[str, str]) -> str: ...
