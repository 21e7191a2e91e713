"""Recovery email addresses and their pending verification codes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pigeon.services.ports import RecoveryEmail
from pigeon.storage.schema import recovery_emails


class SqlRecoveryEmailRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str) -> RecoveryEmail | None:
        row = (
            await self._conn.execute(
                sa.select(recovery_emails).where(recovery_emails.c.user_id == user_id)
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        return RecoveryEmail(
            user_id=m["user_id"],
            email=m["email"],
            verified_at=m["verified_at"],
            pending_email=m["pending_email"],
            code_hash=m["code_hash"],
            code_expires_at=m["code_expires_at"],
            attempts=m["attempts"],
            reset_code_hash=m["reset_code_hash"],
            reset_expires_at=m["reset_expires_at"],
            reset_attempts=m["reset_attempts"],
        )

    async def put(self, record: RecoveryEmail) -> None:
        values = {
            "email": record.email,
            "verified_at": record.verified_at,
            "pending_email": record.pending_email,
            "code_hash": record.code_hash,
            "code_expires_at": record.code_expires_at,
            "attempts": record.attempts,
            "reset_code_hash": record.reset_code_hash,
            "reset_expires_at": record.reset_expires_at,
            "reset_attempts": record.reset_attempts,
        }
        updated = await self._conn.execute(
            recovery_emails.update()
            .where(recovery_emails.c.user_id == record.user_id)
            .values(**values)
        )
        if updated.rowcount == 0:
            await self._conn.execute(
                recovery_emails.insert().values(user_id=record.user_id, **values)
            )

    async def delete(self, user_id: str) -> None:
        await self._conn.execute(
            recovery_emails.delete().where(recovery_emails.c.user_id == user_id)
        )
