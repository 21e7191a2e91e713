"""An optional recovery email: set by proving a code sent to it; changing or removing it
tells the old address.

Only the code's keyed hash is stored, bound to the user and the address, with
the same lifetime and number of guesses as an SMS code. Sending codes is rate
limited per account, so the server cannot be made to mail someone at will.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from pigeon.domain import secrets
from pigeon.domain.errors import Forbidden, InvalidInput, NotFound, RateLimited
from pigeon.domain.phone import normalize_phone
from pigeon.services.accounts import SEND_CODE_PER_IP, VERIFY_PER_IP, Principal
from pigeon.services.ports import (
    Clock,
    EmailMessage,
    EmailProvider,
    EmailTemplates,
    RateLimiter,
    RecoveryEmail,
    UnitOfWorkFactory,
)

# Rate-limit rule name; its limit comes from settings.
EMAIL_CODE_PER_ACCOUNT = "email_code_per_account"

# One @, something on each side, a dot in the domain, no spaces or angle brackets: the
# mail server is the real judge, this keeps headers sane.
_ADDRESS = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MAX_ADDRESS_LENGTH = 254


@dataclass(slots=True, frozen=True)
class EmailPolicy:
    secret_key: bytes
    code_ttl: timedelta = timedelta(minutes=10)
    max_code_attempts: int = 5
    default_locale: str = "en"


class EmailService:
    """Renders a template and hands it to the provider."""

    def __init__(self, provider: EmailProvider, templates: EmailTemplates) -> None:
        self._provider = provider
        self._templates = templates

    async def send(
        self, to: str, template: str, locale: str | None, params: Mapping[str, str]
    ) -> None:
        subject, text, html = self._templates.render(template, locale, params)
        await self._provider.send(EmailMessage(to, template, subject, text, html))


class RecoveryEmailService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        email: EmailService,
        limiter: RateLimiter,
        clock: Clock,
        policy: EmailPolicy,
    ) -> None:
        self._uow = uow
        self._email = email
        self._limiter = limiter
        self._clock = clock
        self._policy = policy

    async def get(self, principal: Principal) -> RecoveryEmail:
        async with self._uow(read_only=True) as uow:
            record = await uow.recovery_emails.get(principal.user_id)
        return record or RecoveryEmail(principal.user_id)

    async def start(self, principal: Principal, address: str, locale: str | None) -> RecoveryEmail:
        """Send a code to ``address``; it becomes the recovery email once the code is given."""
        address = address.strip()
        if len(address) > MAX_ADDRESS_LENGTH or not _ADDRESS.fullmatch(address):
            raise InvalidInput("invalid_email", "That is not an email address.")
        await self._limiter.hit(EMAIL_CODE_PER_ACCOUNT, principal.user_id)
        now = self._clock.now()
        code = secrets.new_code()
        async with self._uow() as uow:
            user = await uow.users.get(principal.user_id)
            if user is None:
                raise NotFound("user_not_found", "No such user.")
            record = await uow.recovery_emails.get(principal.user_id) or RecoveryEmail(user.id)
            record = dataclasses.replace(
                record,
                pending_email=address,
                code_hash=self._hash(principal.user_id, address, code),
                code_expires_at=now + self._policy.code_ttl,
                attempts=0,
            )
            await uow.recovery_emails.put(record)
            await uow.commit()
        minutes = str(int(self._policy.code_ttl.total_seconds() // 60))
        params = {"code": code, "name": user.name, "minutes": minutes}
        await self._email.send(address, "recovery_email_code", locale, params)
        return record

    async def verify(self, principal: Principal, code: str) -> RecoveryEmail:
        """The code sent to the pending address makes it the recovery email."""
        now = self._clock.now()
        async with self._uow() as uow:
            record = await uow.recovery_emails.get(principal.user_id)
            if (
                record is None
                or record.pending_email is None
                or record.code_hash is None
                or record.code_expires_at is None
                or record.code_expires_at <= now
            ):
                raise Forbidden("invalid_code", "The code is wrong or has expired.")
            if record.attempts >= self._policy.max_code_attempts:
                wait = int((record.code_expires_at - now).total_seconds())
                raise RateLimited(
                    "too_many_attempts", "Too many wrong codes; ask for a new one.", wait
                )
            candidate = self._hash(principal.user_id, record.pending_email, code)
            if not secrets.is_code_shaped(code) or not secrets.codes_match(
                record.code_hash, candidate
            ):
                await uow.recovery_emails.put(
                    dataclasses.replace(record, attempts=record.attempts + 1)
                )
                await uow.commit()
                raise Forbidden("invalid_code", "The code is wrong or has expired.")
            old = record.email
            verified = dataclasses.replace(
                record,
                email=record.pending_email,
                verified_at=now,
                pending_email=None,
                code_hash=None,
                code_expires_at=None,
                attempts=0,
            )
            if old != verified.email:  # a reset code sent to the old address is void
                verified = dataclasses.replace(verified, reset_code_hash=None)
            await uow.recovery_emails.put(verified)
            user = await uow.users.get(principal.user_id)
            await uow.commit()
        if old is not None and old != verified.email:
            await self._tell_old(old, user.name if user else "", "It was replaced by another.")
        return verified

    async def remove(self, principal: Principal) -> None:
        async with self._uow() as uow:
            record = await uow.recovery_emails.get(principal.user_id)
            user = await uow.users.get(principal.user_id)
            await uow.recovery_emails.delete(principal.user_id)
            await uow.commit()
        if record is not None and record.email is not None:
            await self._tell_old(record.email, user.name if user else "", "It was removed.")

    # -- PIN reset by email ----------------------------------------------------------

    async def request_pin_reset(self, raw_phone: str, client_ip: str, locale: str | None) -> None:
        """Email a code that removes the number's PIN at once, if it has a PIN and a
        verified recovery email. Every number gets the same answer (who has an account,
        a PIN or an email is not revealed)."""
        phone = normalize_phone(raw_phone)
        await self._limiter.hit(SEND_CODE_PER_IP, client_ip)
        now = self._clock.now()
        code = secrets.new_code()
        async with self._uow() as uow:
            user = await uow.users.get_by_phone(phone)
            record = await uow.recovery_emails.get(user.id) if user else None
            if user is None or user.pin_hash is None or record is None or record.email is None:
                return
            await self._limiter.hit(EMAIL_CODE_PER_ACCOUNT, user.id)
            await uow.recovery_emails.put(
                dataclasses.replace(
                    record,
                    reset_code_hash=self._hash(user.id, f"pin-reset:{record.email}", code),
                    reset_expires_at=now + self._policy.code_ttl,
                    reset_attempts=0,
                )
            )
            await uow.commit()
        minutes = str(int(self._policy.code_ttl.total_seconds() // 60))
        params = {"code": code, "name": user.name, "minutes": minutes}
        await self._email.send(record.email, "pin_reset_code", locale, params)

    async def confirm_pin_reset(self, raw_phone: str, code: str, client_ip: str) -> None:
        """The emailed code removes the PIN: the number registers with its SMS code alone."""
        phone = normalize_phone(raw_phone)
        await self._limiter.hit(VERIFY_PER_IP, client_ip)
        now = self._clock.now()
        wrong = Forbidden("invalid_code", "The code is wrong or has expired.")
        async with self._uow() as uow:
            user = await uow.users.get_by_phone(phone)
            record = await uow.recovery_emails.get(user.id) if user else None
            if (
                user is None
                or record is None
                or record.email is None
                or record.reset_code_hash is None
                or record.reset_expires_at is None
                or record.reset_expires_at <= now
            ):
                raise wrong
            if record.reset_attempts >= self._policy.max_code_attempts:
                wait = int((record.reset_expires_at - now).total_seconds())
                raise RateLimited(
                    "too_many_attempts", "Too many wrong codes; ask for a new one.", wait
                )
            candidate = self._hash(user.id, f"pin-reset:{record.email}", code)
            if not secrets.is_code_shaped(code) or not secrets.codes_match(
                record.reset_code_hash, candidate
            ):
                await uow.recovery_emails.put(
                    dataclasses.replace(record, reset_attempts=record.reset_attempts + 1)
                )
                await uow.commit()
                raise wrong
            await uow.users.set_pin(user.id, None)
            await uow.users.set_pin_reset_requested(user.id, None)
            await uow.recovery_emails.put(
                dataclasses.replace(
                    record, reset_code_hash=None, reset_expires_at=None, reset_attempts=0
                )
            )
            await uow.commit()

    async def _tell_old(self, address: str, name: str, change: str) -> None:
        params = {"name": name, "change": change}
        await self._email.send(address, "recovery_email_changed", None, params)

    def _hash(self, user_id: str, address: str, code: str) -> str:
        return secrets.hash_code(self._policy.secret_key, f"email:{user_id}:{address}", code)
