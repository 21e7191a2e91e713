"""The composition root: the one place that turns Settings into adapters and services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from pigeon.blobs.filesystem import FilesystemBlobStore
from pigeon.blobs.s3 import S3BlobStore
from pigeon.bus.memory import LocalBus
from pigeon.config import Settings
from pigeon.gateway.connection import ConnectionLimits
from pigeon.gateway.services import GatewayServices
from pigeon.media.inspect import inspect_file
from pigeon.observability.metrics import Metrics
from pigeon.ratelimit import LimitsRateLimiter
from pigeon.security.pins import Argon2PinHasher
from pigeon.services import accounts
from pigeon.services.accounts import AccountPolicy, AccountService
from pigeon.services.admin import AdminService
from pigeon.services.chats import ChatPolicy, ChatService
from pigeon.services.media import MediaPolicy, MediaService
from pigeon.services.messaging import DeliveryPolicy, MessagingService
from pigeon.services.ports import BlobStore, Bus, Clock, SmsProvider, UnitOfWorkFactory
from pigeon.services.presence import PresenceService
from pigeon.services.profiles import ProfileService
from pigeon.services.sms import SmsService
from pigeon.sms.console import ConsoleSmsProvider
from pigeon.sms.templates import TemplateCatalog
from pigeon.sms.twilio import TwilioSmsProvider
from pigeon.storage.engine import create_committer_engine, create_engine
from pigeon.storage.sqlite_batch import SqliteBatchWriter
from pigeon.storage.uow import SqlUnitOfWork


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(slots=True, frozen=True)
class Gateway:
    """What the WebSocket endpoint needs."""

    services: GatewayServices
    limits: ConnectionLimits
    auth_timeout: float


@dataclass
class Container:
    """Everything a running Pigeon node holds; built by ``build`` and closed by ``close``."""

    settings: Settings
    engine: AsyncEngine
    metrics: Metrics
    clock: Clock
    limiter: LimitsRateLimiter
    sms_provider: SmsProvider
    accounts: AccountService
    profiles: ProfileService
    admin: AdminService
    bus: Bus
    messaging: MessagingService
    chats: ChatService
    presence: PresenceService
    gateway: Gateway
    blobs: BlobStore
    media: MediaService
    sqlite_writer: SqliteBatchWriter | None = None
    committer_engine: AsyncEngine | None = None

    async def start(self) -> None:
        if isinstance(self.blobs, S3BlobStore):
            await self.blobs.ensure_bucket()
        self.messaging.committer.start()

    async def close(self) -> None:
        await self.messaging.committer.stop()
        if self.sqlite_writer is not None:
            self.sqlite_writer.close()
        if self.committer_engine is not None:
            await self.committer_engine.dispose()
        await self.blobs.close()
        await self.limiter.close()
        if isinstance(self.sms_provider, TwilioSmsProvider):
            await self.sms_provider.aclose()
        await self.engine.dispose()


def build_sms_provider(settings: Settings) -> SmsProvider:
    if settings.sms_provider == "twilio":
        return TwilioSmsProvider(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            sender=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_base_url,
            timeout=settings.sms_timeout_seconds,
        )
    return ConsoleSmsProvider(settings.data_dir / "sms-outbox.jsonl")


def build_limiter(settings: Settings) -> LimitsRateLimiter:
    return LimitsRateLimiter(
        {
            accounts.SEND_CODE_PER_NUMBER: settings.send_code_limit_per_number,
            accounts.SEND_CODE_PER_IP: settings.send_code_limit_per_ip,
            accounts.VERIFY_PER_IP: settings.verify_limit_per_ip,
            accounts.PIN_ATTEMPTS: settings.pin_attempt_limit,
        },
        storage_url=settings.redis_url,
    )


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_store == "s3":
        secret = settings.s3_secret_access_key
        return S3BlobStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key_id,
            secret_key=secret.get_secret_value() if secret else None,
            prefix=settings.s3_prefix,
            path_style=settings.s3_path_style,
        )
    return FilesystemBlobStore(settings.data_dir / "blobs")


def _units_of_work(engine: AsyncEngine) -> UnitOfWorkFactory:
    def uow(*, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, read_only=read_only)

    return uow


def build_admin(settings: Settings) -> tuple[AdminService, AsyncEngine]:
    """The operator's service alone, on the database, for ``pigeon admin``.

    Unlike :func:`build` it makes nothing on disk (no data directory, secret
    key or SMS outbox): a command pointed at the wrong directory must not
    leave one there.
    """
    engine = create_engine(settings.effective_database_url, pool_size=1)
    return AdminService(_units_of_work(engine)), engine


def build(settings: Settings, clock: Clock | None = None) -> Container:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url, pool_size=settings.database_pool_size)

    uow = _units_of_work(engine)
    metrics = Metrics()
    limiter = build_limiter(settings)
    sms_provider = build_sms_provider(settings)
    sms = SmsService(
        sms_provider,
        TemplateCatalog(settings.sms_default_locale, settings.sms_templates_dir),
        on_sent=metrics.count_sms,
    )
    pins = Argon2PinHasher(
        time_cost=settings.pin_hash_time_cost,
        memory_kib=settings.pin_hash_memory_kib,
        parallelism=settings.pin_hash_parallelism,
        concurrency=settings.pin_hash_concurrency,
    )
    policy = AccountPolicy(
        secret_key=settings.effective_secret_key(),
        code_ttl=timedelta(seconds=settings.code_ttl_seconds),
        max_code_attempts=settings.code_max_attempts,
        access_token_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
        max_devices_per_user=settings.max_devices_per_user,
        pin_reset_delay=timedelta(days=settings.pin_reset_delay_days),
    )
    bus = LocalBus()
    ttl = timedelta(days=settings.undelivered_ttl_days)
    accounts_service = AccountService(uow, sms, limiter, pins, clock, policy, bus)
    writer: SqliteBatchWriter | None = None
    committer_engine: AsyncEngine | None = None
    batch_uow: UnitOfWorkFactory
    if engine.url.get_backend_name() == "sqlite":
        writer = batch_uow = SqliteBatchWriter(settings.effective_database_url)
    else:
        committer_engine = create_committer_engine(
            settings.effective_database_url, settings.commit_workers
        )
        batch_uow = _units_of_work(committer_engine)
    messaging = MessagingService(
        uow,
        bus,
        clock,
        DeliveryPolicy(
            undelivered_ttl=ttl,
            max_batch=settings.commit_max_batch,
            commit_workers=1 if writer is not None else settings.commit_workers,
            on_commit=metrics.record_commit,
        ),
        batch_uow=batch_uow,
    )
    chats = ChatService(
        uow,
        bus,
        clock,
        ChatPolicy(
            max_group_members=settings.max_group_members,
            undelivered_ttl=ttl,
            membership_cache_seconds=settings.membership_cache_seconds,
        ),
    )
    presence = PresenceService(uow, bus, clock, chats)
    blobs = build_blob_store(settings)
    media = MediaService(
        uow,
        blobs,
        clock,
        MediaPolicy(
            max_upload_bytes=settings.media_max_upload_bytes,
            max_inline_bytes=settings.media_max_inline_bytes,
            allowed_types=list(settings.media_allowed_types),
            unattached_ttl=timedelta(hours=settings.media_unattached_ttl_hours),
            upload_ttl=timedelta(hours=settings.media_unattached_ttl_hours),
            link_ttl=timedelta(seconds=settings.media_link_ttl_seconds),
        ),
        staging_dir=settings.data_dir / "uploads",
        inspect=inspect_file,
        secret_key=policy.secret_key,
    )
    gateway = Gateway(
        services=GatewayServices(accounts_service, messaging, chats, presence, bus, media),
        limits=ConnectionLimits(
            max_in_flight=settings.ws_max_in_flight,
            max_pending_commands=settings.ws_max_pending_commands,
            send_timeout=settings.ws_send_timeout_seconds,
            max_message_length=settings.max_message_length,
        ),
        auth_timeout=settings.ws_auth_timeout_seconds,
    )
    return Container(
        settings=settings,
        engine=engine,
        metrics=metrics,
        clock=clock,
        limiter=limiter,
        sms_provider=sms_provider,
        accounts=accounts_service,
        profiles=ProfileService(uow),
        admin=AdminService(uow, bus),
        bus=bus,
        messaging=messaging,
        chats=chats,
        presence=presence,
        gateway=gateway,
        blobs=blobs,
        media=media,
        sqlite_writer=writer,
        committer_engine=committer_engine,
    )
