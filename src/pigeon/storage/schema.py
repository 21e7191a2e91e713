"""The one schema both engines share. Migrations in ``migrations/`` must match it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

ID = sa.String(26)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timestamps are stored and returned as timezone-aware UTC on both engines."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("phone", sa.String(16), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("about", sa.Text, nullable=False, server_default=""),
    sa.Column("country", sa.String(2)),
    sa.Column("location", sa.Text),
    sa.Column("pin_hash", sa.Text),
    sa.Column("pin_reset_requested_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column(
        "user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("access_token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("access_expires_at", UtcDateTime, nullable=False),
    sa.Column("refresh_token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("refresh_expires_at", UtcDateTime, nullable=False),
)

verification_codes = sa.Table(
    "verification_codes",
    metadata,
    sa.Column("phone", sa.String(16), primary_key=True),
    sa.Column("purpose", sa.String(16), primary_key=True),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)
