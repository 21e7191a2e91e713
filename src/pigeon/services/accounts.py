"""Registration by phone number, device sessions and the two-step PIN."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pigeon.domain import secrets
from pigeon.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    Locked,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from pigeon.domain.ids import new_id
from pigeon.domain.models import CodePurpose, Device, Platform, User, VerificationCode
from pigeon.domain.phone import normalize_phone
from pigeon.services.batching import BatchedLookup
from pigeon.services.ports import (
    Bus,
    Clock,
    CodeAttempt,
    PinHasher,
    RateLimiter,
    UnitOfWork,
    UnitOfWorkFactory,
)
from pigeon.services.sms import SmsService

PIN_PATTERN = re.compile(r"^[0-9]{6}$")

# Rate-limit rule names; their limits come from settings (see ratelimit adapter).
SEND_CODE_PER_NUMBER = "send_code_per_number"
SEND_CODE_PER_IP = "send_code_per_ip"
VERIFY_PER_IP = "verify_per_ip"
PIN_ATTEMPTS = "pin_attempts"

# WebSocket close code for a connection whose device was revoked (policy violation).
DEVICE_REVOKED_CLOSE = 1008


@dataclass(slots=True, frozen=True)
class AccountPolicy:
    secret_key: bytes
    code_ttl: timedelta = timedelta(minutes=10)
    max_code_attempts: int = 5
    access_token_ttl: timedelta = timedelta(days=1)
    refresh_token_ttl: timedelta = timedelta(days=90)
    max_devices_per_user: int = 5
    pin_reset_delay: timedelta = timedelta(days=7)


@dataclass(slots=True, frozen=True)
class DeviceInfo:
    name: str
    platform: Platform


@dataclass(slots=True, frozen=True)
class Session:
    user_id: str
    device_id: str
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    new_user: bool


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: an authenticated device of a user."""

    user_id: str
    device_id: str


class AccountService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sms: SmsService,
        limiter: RateLimiter,
        pins: PinHasher,
        clock: Clock,
        policy: AccountPolicy,
        bus: Bus | None = None,
    ) -> None:
        self._bus = bus
        self._uow = uow
        self._sms = sms
        self._limiter = limiter
        self._pins = pins
        self._clock = clock
        self._policy = policy
        # Devices connecting together look their tokens up in one read (a storm's).
        self._devices_by_token: BatchedLookup[str, Device | None] = BatchedLookup(
            self._devices_by_access_hash, None
        )

    # -- codes -------------------------------------------------------------

    async def request_code(self, raw_phone: str, client_ip: str, locale: str | None) -> str:
        """Send a fresh code to the number; returns the normalised number."""
        phone = normalize_phone(raw_phone)
        await self._limiter.hit(SEND_CODE_PER_IP, client_ip)
        await self._limiter.hit(SEND_CODE_PER_NUMBER, phone)
        code = secrets.new_code()
        now = self._clock.now()
        async with self._uow() as uow:
            await uow.codes.put(
                VerificationCode(
                    phone=phone,
                    purpose=CodePurpose.REGISTRATION,
                    code_hash=secrets.hash_code(self._policy.secret_key, phone, code),
                    created_at=now,
                    expires_at=now + self._policy.code_ttl,
                )
            )
            await uow.commit()
        minutes = str(int(self._policy.code_ttl.total_seconds() // 60))
        await self._sms.send(phone, "verification_code", locale, code=code, minutes=minutes)
        return phone

    async def verify(
        self,
        raw_phone: str,
        code: str,
        device: DeviceInfo,
        pin: str | None,
        client_ip: str,
    ) -> Session:
        """Prove the number with its code (and PIN, if set) and open a device session.

        Without a PIN to check, the attempt, the code's use, the account and
        the device are one unit of work: one commit per sign-up's verify
        where there were two. With a PIN, its hash (~100 ms) is checked
        between two units, so no write waits for it.
        """
        phone = normalize_phone(raw_phone)
        await self._limiter.hit(VERIFY_PER_IP, client_ip)
        if not secrets.is_code_shaped(code):
            raise InvalidInput("invalid_code_format", "A code is six digits.")
        candidate = secrets.hash_code(self._policy.secret_key, phone, code)
        async with self._uow() as uow:
            attempt = await uow.codes.claim_attempt(
                phone, CodePurpose.REGISTRATION, self._policy.max_code_attempts
            )
            user = await uow.users.get_by_phone(phone) if attempt is not None else None
            if self._code_matches(attempt, candidate) and not _has_pin(user):
                session = await self._open_session(uow, phone, candidate, user, device, pin)
                await uow.commit()
                return session
            exists = attempt is not None or await uow.codes.exists(phone, CodePurpose.REGISTRATION)
            await uow.commit()
        await self._refuse_unless_matched(phone, attempt, exists, candidate)
        assert user is not None  # only an account with a PIN gets here
        await self._check_pin(user, pin)
        checked = user
        async with self._uow() as uow:
            user = await uow.users.get_by_phone(phone)
            if _pin_state(user) != _pin_state(checked):
                raise Conflict("account_changed", "The account changed meanwhile; try again.")
            session = await self._open_session(uow, phone, candidate, user, device, pin)
            await uow.commit()
        return session

    async def _open_session(
        self,
        uow: UnitOfWork,
        phone: str,
        code_hash: str,
        user: User | None,
        device: DeviceInfo,
        pin: str | None,
    ) -> Session:
        """Use the code, make the account if there is none, and register the device."""
        if not await uow.codes.consume(phone, CodePurpose.REGISTRATION, code_hash):
            raise Forbidden("invalid_code", "The code is wrong, expired or already used.")
        new_user = user is None
        if user is None:
            user = User(id=new_id(), phone=phone, created_at=self._clock.now())
            await uow.users.add(user)
        elif await uow.devices.count_for_user(user.id) >= self._policy.max_devices_per_user:
            raise Conflict(
                "too_many_devices",
                f"At most {self._policy.max_devices_per_user} devices may be registered; "
                "remove one first.",
            )
        if user.pin_reset_requested_at is not None and pin is None:
            # The waiting period ran out (``_check_pin`` let us through): the PIN is gone.
            await uow.users.set_pin(user.id, None)
            await uow.users.set_pin_reset_requested(user.id, None)
        session, record = self._new_device(user.id, device, new_user)
        await uow.devices.add(record)
        return session

    async def _check_code(
        self, phone: str, code: str, purpose: CodePurpose = CodePurpose.REGISTRATION
    ) -> User | None:
        """Count the attempt, then check the code; the number's account (None: none yet).

        The account is read in the attempt's unit of work: a read-only unit of
        its own cost every check a pool checkout and, on SQLite, a thread hop
        per statement.
        """
        if not secrets.is_code_shaped(code):
            raise InvalidInput("invalid_code_format", "A code is six digits.")
        candidate = secrets.hash_code(self._policy.secret_key, phone, code)
        async with self._uow() as uow:
            attempt = await uow.codes.claim_attempt(phone, purpose, self._policy.max_code_attempts)
            exists = attempt is not None or await uow.codes.exists(phone, purpose)
            user = await uow.users.get_by_phone(phone) if attempt is not None else None
            await uow.commit()
        await self._refuse_unless_matched(phone, attempt, exists, candidate)
        return user

    def _code_matches(self, attempt: CodeAttempt | None, candidate: str) -> bool:
        return (
            attempt is not None
            and self._clock.now() < attempt.expires_at
            and secrets.codes_match(attempt.code_hash, candidate)
        )

    async def _refuse_unless_matched(
        self, phone: str, attempt: CodeAttempt | None, exists: bool, candidate: str
    ) -> None:
        """The attempt's answer unless the code matched: too many guesses, or wrong."""
        if attempt is None and exists:
            wait = await self._limiter.retry_after(SEND_CODE_PER_NUMBER, phone)
            raise RateLimited(
                "too_many_attempts",
                "Too many wrong guesses for this code; request a new code.",
                retry_after=wait,
            )
        if not self._code_matches(attempt, candidate):
            raise Forbidden("invalid_code", "The code is wrong, expired or already used.")

    async def _check_pin(self, user: User, pin: str | None) -> None:
        if user.pin_hash is None:
            return
        reset_at = user.pin_reset_requested_at
        if pin is None:
            if (
                reset_at is not None
                and self._clock.now() >= reset_at + self._policy.pin_reset_delay
            ):
                return
            raise Locked("pin_required", "This number is protected by a two-step PIN.")
        await self._limiter.hit(PIN_ATTEMPTS, user.id)
        if not await self._pins.verify(user.pin_hash, pin):
            raise Forbidden("invalid_pin", "The PIN is wrong.")

    def _new_device(self, user_id: str, info: DeviceInfo, new_user: bool) -> tuple[Session, Device]:
        now = self._clock.now()
        device = Device(
            id=new_id(),
            user_id=user_id,
            name=info.name,
            platform=info.platform,
            created_at=now,
            last_seen_at=now,
            access_token_hash="",
            access_expires_at=now,
            refresh_token_hash="",
            refresh_expires_at=now,
        )
        return self._issue_tokens(device, new_user), device

    def _issue_tokens(self, device: Device, new_user: bool = False) -> Session:
        """Put fresh token hashes on ``device`` and return the tokens themselves."""
        now = self._clock.now()
        access, refresh = secrets.new_token("pga"), secrets.new_token("pgr")
        device.access_token_hash = secrets.hash_token(access)
        device.refresh_token_hash = secrets.hash_token(refresh)
        device.access_expires_at = now + self._policy.access_token_ttl
        device.refresh_expires_at = now + self._policy.refresh_token_ttl
        device.last_seen_at = now
        return Session(
            user_id=device.user_id,
            device_id=device.id,
            access_token=access,
            refresh_token=refresh,
            access_expires_at=device.access_expires_at,
            new_user=new_user,
        )

    # -- sessions ------------------------------------------------------------

    async def authenticate(self, access_token: str) -> Principal:
        """The device an access token belongs to; a revoked device has no token at all."""
        device = await self._devices_by_token.get(secrets.hash_token(access_token))
        if device is None or self._clock.now() >= device.access_expires_at:
            raise Unauthenticated("invalid_token", "The access token is invalid or expired.")
        return Principal(user_id=device.user_id, device_id=device.id)

    async def _devices_by_access_hash(self, token_hashes: Sequence[str]) -> Mapping[str, Device]:
        async with self._uow(read_only=True) as uow:
            return await uow.devices.get_by_access_hashes(token_hashes)

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate both tokens; the old refresh token stops working."""
        async with self._uow() as uow:
            device = await uow.devices.get_by_refresh_hash(secrets.hash_token(refresh_token))
            if device is None or self._clock.now() >= device.refresh_expires_at:
                raise Unauthenticated("invalid_token", "The refresh token is invalid or expired.")
            session = self._issue_tokens(device)
            await uow.devices.replace_tokens(device)
            await uow.commit()
        return session

    async def logout(self, principal: Principal) -> None:
        await self.remove_device(principal, principal.device_id)

    async def list_devices(self, principal: Principal) -> list[Device]:
        async with self._uow(read_only=True) as uow:
            return list(await uow.devices.list_for_user(principal.user_id))

    async def remove_device(self, principal: Principal, device_id: str) -> None:
        """Revoke one of the caller's devices; its tokens stop working at once."""
        async with self._uow() as uow:
            device = await uow.devices.get(device_id)
            if device is None or device.user_id != principal.user_id:
                raise NotFound("device_not_found", "No such device.")
            await uow.devices.delete(device_id)
            await uow.commit()
        if self._bus is not None:
            self._bus.disconnect(device_id, DEVICE_REVOKED_CLOSE, "device_revoked")

    # -- account deletion ------------------------------------------------------

    async def request_deletion_code(
        self, principal: Principal, client_ip: str, locale: str | None
    ) -> None:
        """Text a code that confirms deleting the account: a stolen token alone cannot.

        The same limits as registration codes apply, per number and per address.
        """
        async with self._uow(read_only=True) as uow:
            user = await uow.users.get(principal.user_id)
        if user is None:
            raise Unauthenticated("invalid_token", "The access token is invalid or expired.")
        await self._limiter.hit(SEND_CODE_PER_IP, client_ip)
        await self._limiter.hit(SEND_CODE_PER_NUMBER, user.phone)
        code = secrets.new_code()
        now = self._clock.now()
        async with self._uow() as uow:
            await uow.codes.put(
                VerificationCode(
                    phone=user.phone,
                    purpose=CodePurpose.DELETION,
                    code_hash=secrets.hash_code(self._policy.secret_key, user.phone, code),
                    created_at=now,
                    expires_at=now + self._policy.code_ttl,
                )
            )
            await uow.commit()
        minutes = str(int(self._policy.code_ttl.total_seconds() // 60))
        await self._sms.send(user.phone, "deletion_code", locale, code=code, minutes=minutes)

    async def check_deletion_code(self, principal: Principal, code: str, client_ip: str) -> str:
        """Count a guess at the deletion code (limited like any code); the account's number."""
        await self._limiter.hit(VERIFY_PER_IP, client_ip)
        async with self._uow(read_only=True) as uow:
            user = await uow.users.get(principal.user_id)
        if user is None:
            raise Unauthenticated("invalid_token", "The access token is invalid or expired.")
        await self._check_code(user.phone, code, CodePurpose.DELETION)
        return user.phone

    async def consume_deletion_code(self, uow: UnitOfWork, phone: str, code: str) -> None:
        """Use the code up inside the deletion's own transaction: exactly one caller wins."""
        code_hash = secrets.hash_code(self._policy.secret_key, phone, code)
        if not await uow.codes.consume(phone, CodePurpose.DELETION, code_hash):
            raise Forbidden("invalid_code", "The code is wrong, expired or already used.")

    # -- two-step PIN --------------------------------------------------------

    async def set_pin(self, principal: Principal, pin: str) -> None:
        if not PIN_PATTERN.match(pin):
            raise InvalidInput("invalid_pin_format", "A PIN is six digits.")
        pin_hash = await self._pins.hash(pin)
        async with self._uow() as uow:
            await uow.users.set_pin(principal.user_id, pin_hash)
            await uow.users.set_pin_reset_requested(principal.user_id, None)
            await uow.commit()

    async def remove_pin(self, principal: Principal) -> None:
        async with self._uow() as uow:
            await uow.users.set_pin(principal.user_id, None)
            await uow.users.set_pin_reset_requested(principal.user_id, None)
            await uow.commit()

    async def request_pin_reset(self, raw_phone: str, client_ip: str, locale: str | None) -> None:
        """Start the waiting period after which the number can register without its PIN.

        The number's owner is told by SMS, and setting or removing the PIN
        from a device that is still logged in cancels the reset. Unknown
        numbers and numbers without a PIN get the same answer, so the
        endpoint does not reveal who has an account.
        """
        phone = normalize_phone(raw_phone)
        await self._limiter.hit(SEND_CODE_PER_IP, client_ip)
        await self._limiter.hit(SEND_CODE_PER_NUMBER, phone)
        now = self._clock.now()
        async with self._uow() as uow:
            user = await uow.users.get_by_phone(phone)
            if user is None or user.pin_hash is None or user.pin_reset_requested_at is not None:
                return
            await uow.users.set_pin_reset_requested(user.id, now)
            await uow.commit()
        days = str(self._policy.pin_reset_delay.days)
        await self._sms.send(phone, "pin_reset", locale, days=days)

    # -- housekeeping ------------------------------------------------------------

    async def close_revoked_connections(self) -> int:
        """Close live sockets of devices revoked elsewhere (another node, ``pigeon admin``)."""
        if self._bus is None:
            return 0
        connected = self._bus.local_devices()
        if not connected:
            return 0
        async with self._uow(read_only=True) as uow:
            alive = await uow.devices.existing(connected)
        revoked = [d for d in connected if d not in alive]
        for device_id in revoked:
            self._bus.disconnect(device_id, DEVICE_REVOKED_CLOSE, "device_revoked")
        return len(revoked)

    async def purge_expired(self) -> dict[str, int]:
        """Drop expired codes, and devices whose refresh token ran out (abandoned).

        A device's queue goes with it, so messages waiting only for an
        abandoned phone do not stay on the server forever.
        """
        now = self._clock.now()
        async with self._uow(housekeeping=True) as uow:
            codes = await uow.codes.purge_expired(now)
            devices = await uow.devices.delete_expired(now)
            await uow.commit()
        for device_id in devices:
            if self._bus is not None:
                self._bus.disconnect(device_id, DEVICE_REVOKED_CLOSE, "device_revoked")
        return {"codes": codes, "devices": len(devices)}


def _has_pin(user: User | None) -> bool:
    return user is not None and user.pin_hash is not None


def _pin_state(user: User | None) -> tuple[str, str | None, datetime | None] | None:
    """What a PIN check depended on: the account, its PIN and any pending reset."""
    if user is None:
        return None
    return user.id, user.pin_hash, user.pin_reset_requested_at
