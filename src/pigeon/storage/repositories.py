"""Repositories: each turns domain objects into rows of one table group and back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.domain.models import CodePurpose, Device, Platform, User, VerificationCode
from pigeon.services.ports import CodeAttempt
from pigeon.storage.asyncpg_reads import ConnectRead, among
from pigeon.storage.schema import devices, inbox, inbox_counters, users, verification_codes


def user_of_row(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        phone=m["phone"],
        created_at=m["created_at"],
        name=m["name"],
        about=m["about"],
        country=m["country"],
        location=m["location"],
        pin_hash=m["pin_hash"],
        pin_reset_requested_at=m["pin_reset_requested_at"],
        last_seen_at=m["last_seen_at"],
    )


def _device(m: Mapping[Any, Any]) -> Device:
    return Device(
        id=m["id"],
        user_id=m["user_id"],
        name=m["name"],
        platform=Platform(m["platform"]),
        created_at=m["created_at"],
        last_seen_at=m["last_seen_at"],
        access_token_hash=m["access_token_hash"],
        access_expires_at=m["access_expires_at"],
        refresh_token_hash=m["refresh_token_hash"],
        refresh_expires_at=m["refresh_expires_at"],
    )


class SqlUserRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str) -> User | None:
        row = (await self._conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return user_of_row(row) if row else None

    async def get_by_phone(self, phone: str) -> User | None:
        row = (await self._conn.execute(sa.select(users).where(users.c.phone == phone))).first()
        return user_of_row(row) if row else None

    async def add(self, user: User) -> None:
        await self._conn.execute(
            users.insert().values(
                id=user.id,
                phone=user.phone,
                name=user.name,
                about=user.about,
                country=user.country,
                location=user.location,
                pin_hash=user.pin_hash,
                pin_reset_requested_at=user.pin_reset_requested_at,
                created_at=user.created_at,
            )
        )

    async def update_profile(self, user_id: str, values: Mapping[str, str | None]) -> None:
        await self._conn.execute(users.update().where(users.c.id == user_id).values(**values))

    async def set_pin(self, user_id: str, pin_hash: str | None) -> None:
        await self._conn.execute(
            users.update().where(users.c.id == user_id).values(pin_hash=pin_hash)
        )

    async def set_pin_reset_requested(self, user_id: str, at: datetime | None) -> None:
        await self._conn.execute(
            users.update().where(users.c.id == user_id).values(pin_reset_requested_at=at)
        )

    async def set_last_seen(self, user_id: str, at: datetime) -> None:
        await self._conn.execute(
            users.update().where(users.c.id == user_id).values(last_seen_at=at)
        )

    async def list(self, limit: int, after_id: str | None = None) -> Sequence[User]:
        query = sa.select(users).order_by(users.c.id).limit(limit)
        if after_id is not None:
            query = query.where(users.c.id > after_id)
        return [user_of_row(row) for row in await self._conn.execute(query)]


# Built once: devices connecting look their tokens up, and building the select
# (operators, then its cache key) cost more than running it on SQLite.
_DEVICES_BY_ACCESS_HASH = ConnectRead.of_lists(
    lambda listed: sa.select(devices).where(among(devices.c.access_token_hash, listed("hashes")))
)


async def drop_queues(conn: AsyncConnection, device_ids: Sequence[str]) -> None:
    """The queues of devices just deleted (no foreign key cascades to them, migration 0014).

    After the devices' own delete, never before: that delete removes their
    queue counters, so it waits for any batch holding one to commit, and these
    statements then see the entries that batch wrote.
    """
    for start in range(0, len(device_ids), 500):  # bounded IN lists
        chunk = list(device_ids[start : start + 500])
        await conn.execute(inbox.delete().where(inbox.c.device_id.in_(chunk)))


class SqlDeviceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, device: Device) -> None:
        await self._conn.execute(
            devices.insert().values(
                id=device.id,
                user_id=device.user_id,
                name=device.name,
                platform=device.platform.value,
                created_at=device.created_at,
                last_seen_at=device.last_seen_at,
                access_token_hash=device.access_token_hash,
                access_expires_at=device.access_expires_at,
                refresh_token_hash=device.refresh_token_hash,
                refresh_expires_at=device.refresh_expires_at,
            )
        )
        await self._conn.execute(inbox_counters.insert().values(device_id=device.id, last_seq=0))

    async def _one(self, condition: sa.ColumnElement[bool]) -> Device | None:
        row = (await self._conn.execute(sa.select(devices).where(condition))).first()
        return _device(row._mapping) if row else None

    async def get(self, device_id: str) -> Device | None:
        return await self._one(devices.c.id == device_id)

    async def get_by_access_hashes(self, token_hashes: Sequence[str]) -> dict[str, Device]:
        found = await _DEVICES_BY_ACCESS_HASH.rows(self._conn, hashes=list(token_hashes))
        return {row["access_token_hash"]: _device(row) for row in found}

    async def get_by_refresh_hash(self, token_hash: str) -> Device | None:
        return await self._one(devices.c.refresh_token_hash == token_hash)

    async def list_for_user(self, user_id: str) -> Sequence[Device]:
        query = sa.select(devices).where(devices.c.user_id == user_id).order_by(devices.c.id)
        return [_device(row._mapping) for row in await self._conn.execute(query)]

    async def count_for_user(self, user_id: str) -> int:
        query = sa.select(sa.func.count()).where(devices.c.user_id == user_id)
        return int((await self._conn.execute(query)).scalar_one())

    async def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(devices)
        return int((await self._conn.execute(query)).scalar_one())

    async def existing(self, device_ids: Sequence[str]) -> set[str]:
        query = sa.select(devices.c.id).where(devices.c.id.in_(list(device_ids)))
        return set((await self._conn.execute(query)).scalars())

    async def delete_expired(self, now: datetime) -> list[str]:
        result = await self._conn.execute(
            devices.delete().where(devices.c.refresh_expires_at <= now).returning(devices.c.id)
        )
        gone = list(result.scalars())
        await drop_queues(self._conn, gone)
        return gone

    async def delete(self, device_id: str) -> bool:
        result = await self._conn.execute(devices.delete().where(devices.c.id == device_id))
        await drop_queues(self._conn, [device_id])
        return bool(result.rowcount)

    async def replace_tokens(self, device: Device) -> None:
        await self._conn.execute(
            devices.update()
            .where(devices.c.id == device.id)
            .values(
                access_token_hash=device.access_token_hash,
                access_expires_at=device.access_expires_at,
                refresh_token_hash=device.refresh_token_hash,
                refresh_expires_at=device.refresh_expires_at,
                last_seen_at=device.last_seen_at,
            )
        )


class SqlCodeRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    def _key(self, phone: str, purpose: CodePurpose) -> sa.ColumnElement[bool]:
        return sa.and_(
            verification_codes.c.phone == phone, verification_codes.c.purpose == purpose.value
        )

    async def put(self, code: VerificationCode) -> None:
        await self._conn.execute(
            verification_codes.delete().where(self._key(code.phone, code.purpose))
        )
        await self._conn.execute(
            verification_codes.insert().values(
                phone=code.phone,
                purpose=code.purpose.value,
                code_hash=code.code_hash,
                created_at=code.created_at,
                expires_at=code.expires_at,
                attempts=code.attempts,
            )
        )

    async def claim_attempt(
        self, phone: str, purpose: CodePurpose, max_attempts: int
    ) -> CodeAttempt | None:
        c = verification_codes.c
        row = (
            await self._conn.execute(
                verification_codes.update()
                .where(self._key(phone, purpose), c.attempts < max_attempts)
                .values(attempts=c.attempts + 1)
                .returning(c.code_hash, c.expires_at, c.attempts)
            )
        ).first()
        if row is None:
            return None
        return CodeAttempt(
            code_hash=row.code_hash, expires_at=row.expires_at, attempts=row.attempts
        )

    async def consume(self, phone: str, purpose: CodePurpose, code_hash: str) -> bool:
        result = await self._conn.execute(
            verification_codes.delete().where(
                self._key(phone, purpose), verification_codes.c.code_hash == code_hash
            )
        )
        return bool(result.rowcount)

    async def exists(self, phone: str, purpose: CodePurpose) -> bool:
        query = sa.select(sa.literal(1)).where(self._key(phone, purpose))
        return (await self._conn.execute(query)).first() is not None

    async def purge_expired(self, now: datetime) -> int:
        result = await self._conn.execute(
            verification_codes.delete().where(verification_codes.c.expires_at <= now)
        )
        return int(result.rowcount)
