"""The composition root: the one place that turns Settings into adapters and services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pigeon.blobs.filesystem import FilesystemBlobStore
from pigeon.bus import NODE_TIMEOUT
from pigeon.bus.memory import LocalBus
from pigeon.bus.nats import NatsBus
from pigeon.bus.redis import RedisBus
from pigeon.config import Settings
from pigeon.domain.delivery import InboxEntry
from pigeon.domain.push import PushKind
from pigeon.gateway.admission import Admission
from pigeon.gateway.connection import ConnectionLimits
from pigeon.gateway.services import GatewayServices
from pigeon.mail.console import ConsoleEmailProvider
from pigeon.mail.smtp import SmtpEmailProvider
from pigeon.mail.templates import EmailTemplateCatalog
from pigeon.media.inspect import inspect_file, is_jpeg_thumbnail
from pigeon.observability.metrics import Metrics, PushCounters, UnreachedCounter
from pigeon.push.apns import ApnsSender, load_p8
from pigeon.push.endpoints import EndpointGuard
from pigeon.push.fcm import FcmSender, ServiceAccount
from pigeon.push.vapid import VapidKeys, load_vapid_keys
from pigeon.push.webpush import WebPushSender
from pigeon.ratelimit import LimitsRateLimiter
from pigeon.security.pins import Argon2PinHasher
from pigeon.services import accounts, contacts
from pigeon.services.accounts import AccountPolicy, AccountService
from pigeon.services.admin import AdminService
from pigeon.services.blocks import BlockService
from pigeon.services.broadcasts import BroadcastPolicy, BroadcastService
from pigeon.services.changes import ChangePolicy
from pigeon.services.chats import ChatPolicy, ChatService
from pigeon.services.committer import GatherPolicy
from pigeon.services.contacts import ContactService, ContactsPolicy
from pigeon.services.deletion import AccountDeletionService
from pigeon.services.forwarding import ForwardPolicy
from pigeon.services.media import MediaPolicy, MediaService
from pigeon.services.messaging import DeliveryPolicy, MessagingService
from pigeon.services.notifications import NotificationService
from pigeon.services.photos import PhotoService
from pigeon.services.ports import (
    BlobStore,
    Bus,
    Clock,
    DeliveryFeedback,
    EmailProvider,
    Presence,
    PushSender,
    SmsProvider,
    UnitOfWork,
    UnitOfWorkFactory,
)
from pigeon.services.presence import PresenceService
from pigeon.services.privacy import PrivacyService
from pigeon.services.profiles import ProfileService
from pigeon.services.push import PushService
from pigeon.services.push_worker import PushPolicy, PushWorker
from pigeon.services.recovery_email import (
    EMAIL_CODE_PER_ACCOUNT,
    EmailPolicy,
    EmailService,
    RecoveryEmailService,
)
from pigeon.services.sms import SmsService
from pigeon.services.statuses import StatusPolicy, StatusService
from pigeon.sms.console import ConsoleSmsProvider
from pigeon.sms.templates import TemplateCatalog
from pigeon.sms.twilio import TwilioSmsProvider
from pigeon.storage import migrate
from pigeon.storage.delivery import (
    AsyncpgExecutor,
    PostgresDelivery,
    SqlAlchemyExecutor,
    SqliteDelivery,
)
from pigeon.storage.engine import create_committer_engine, create_engine
from pigeon.storage.sqlite_readers import SqliteReaders
from pigeon.storage.sqlite_writer import SqliteWriter
from pigeon.storage.uow import DeliveryFactory, SqlUnitOfWork, read_only_options


class NodeBus(Bus, Presence, Protocol):
    """A bus adapter as the node runs it: the two ports, and its lifecycle."""

    node_id: str
    local: bool  # the in-process bus: this process is the only node

    @property
    def healthy(self) -> bool:
        """Connected to the bus (always, for the in-process one)."""
        ...

    async def start(self) -> None: ...
    async def close(self) -> None: ...


def new_node_id() -> str:
    """Unique per process, readable in logs: host, pid and a little randomness."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build_bus(
    url: str | None,
    feedback: DeliveryFeedback,
    poll: float = 2.0,
    node_timeout: float = NODE_TIMEOUT,
) -> NodeBus:
    """The in-process bus, or Redis or NATS as ``PIGEON_BUS_URL`` says (its scheme is
    checked by ``Settings.multi_node_problem`` first)."""
    if url is None:
        return LocalBus(feedback, new_node_id())
    if url.startswith("nats://"):
        return NatsBus(url, feedback, new_node_id(), poll, node_timeout)
    return RedisBus(url, feedback, new_node_id(), poll, node_timeout)


async def preflight(settings: Settings) -> str | None:
    """Why ``pigeon serve`` cannot start with these settings (None: it can), naming the
    setting to change: checked before the server starts, so a typo is one clear line."""
    problem = settings.multi_node_problem()
    if problem is None and not settings.uses_sqlite:
        problem = await _database_problem(settings.effective_database_url)
    if problem is None and settings.bus_url is not None:
        problem = await _bus_problem(settings.bus_url)
    return problem


async def _database_problem(url: str) -> str | None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect():
            return None
    except (DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        named = engine.url.query.get("host") or f"{engine.url.host}:{engine.url.port or 5432}"
        hosts = named if isinstance(named, str) else ", ".join(named)
        return f"cannot use the database of PIGEON_DATABASE_URL: {reason} (tried {hosts})"
    finally:
        await engine.dispose()


async def _bus_problem(url: str) -> str | None:
    bus = build_bus(url, _Unheard())
    try:
        await asyncio.wait_for(bus.start(), 5)
    except Exception as exc:
        return f"cannot reach the bus of PIGEON_BUS_URL ({url}): {exc or type(exc).__name__}"
    finally:
        with contextlib.suppress(Exception):
            await bus.close()
    return None


class _Unheard:
    def unreached(self, entries: object) -> None:
        """A probe publishes nothing."""


class FeedbackFanout:
    """``DeliveryFeedback`` that tells several listeners (the counter, the push worker)."""

    def __init__(self, *listeners: DeliveryFeedback) -> None:
        self._listeners = listeners

    def unreached(self, entries: Sequence[InboxEntry]) -> None:
        for listener in self._listeners:
            listener.unreached(entries)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(slots=True, frozen=True)
class Gateway:
    """What the WebSocket endpoint needs."""

    services: GatewayServices
    limits: ConnectionLimits
    auth_timeout: float
    admission: Admission


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
    bus: NodeBus
    messaging: MessagingService
    chats: ChatService
    presence: PresenceService
    gateway: Gateway
    blobs: BlobStore
    media: MediaService
    contacts: ContactService
    blocks: BlockService
    push: PushService
    deletion: AccountDeletionService
    broadcasts: BroadcastService
    notifications: NotificationService
    privacy: PrivacyService
    photos: PhotoService
    statuses: StatusService
    recovery_email: RecoveryEmailService
    push_worker: PushWorker | None = None
    push_clients: list[httpx.AsyncClient] = field(default_factory=list)
    sqlite_writer: SqliteWriter | None = None
    sqlite_readers: SqliteReaders | None = None
    committer_engine: AsyncEngine | None = None

    async def start(self) -> None:
        """Migrate (unless turned off), check the bucket, start the committer."""
        if self.settings.auto_migrate:
            await migrate.upgrade(self.engine)
        if self.settings.blob_store == "s3":
            from pigeon.blobs.s3 import S3BlobStore  # already loaded by build_blob_store

            if isinstance(self.blobs, S3BlobStore):
                await self.blobs.ensure_bucket()
        await self.bus.start()
        self.messaging.committer.start()
        if self.push_worker is not None:
            await self.push_worker.start()

    async def close(self) -> None:
        await self.messaging.committer.stop()
        if self.push_worker is not None:
            await self.push_worker.stop()
        for client in self.push_clients:
            await client.aclose()
        await self.bus.close()
        if self.sqlite_writer is not None:
            self.sqlite_writer.close()
        if self.sqlite_readers is not None:
            self.sqlite_readers.close()
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
    return ConsoleSmsProvider(console_outbox(settings))


def console_outbox(settings: Settings) -> Path:
    """Where the console SMS provider writes codes (shown by the login page, never the code)."""
    return settings.data_dir / "sms-outbox.jsonl"


def build_push_senders(
    settings: Settings, vapid: VapidKeys, guard: EndpointGuard
) -> tuple[dict[PushKind, PushSender], list[httpx.AsyncClient]]:
    """Web Push always (the server has its VAPID keys); FCM and APNs when configured."""
    timeout = httpx.Timeout(settings.push_send_timeout_seconds)
    tls = ssl.create_default_context()
    if settings.push_ca_file is not None:
        tls.load_verify_locations(settings.push_ca_file)
    # Web Push endpoints are the clients' choice: never follow a redirect elsewhere.
    web = httpx.AsyncClient(timeout=timeout, verify=tls, follow_redirects=False)
    senders: dict[PushKind, PushSender] = {PushKind.WEBPUSH: WebPushSender(web, vapid, guard)}
    clients = [web]
    if settings.fcm_service_account_file is not None:
        fcm = httpx.AsyncClient(timeout=timeout, verify=tls)
        clients.append(fcm)
        senders[PushKind.FCM] = FcmSender(
            fcm,
            ServiceAccount.load(settings.fcm_service_account_file),
            settings.fcm_base_url,
            settings.fcm_token_url,
        )
    if settings.apns_key_file is not None:
        apns = httpx.AsyncClient(timeout=timeout, verify=tls, http2=True)
        clients.append(apns)
        senders[PushKind.APNS] = ApnsSender(
            apns,
            load_p8(settings.apns_key_file),
            settings.apns_key_id,
            settings.apns_team_id,
            settings.apns_base_url,
            settings.apns_sandbox_url,
        )
    return senders, clients


def build_email_provider(settings: Settings) -> EmailProvider:
    if settings.email_provider == "smtp":
        return SmtpEmailProvider(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            timeout=settings.smtp_timeout_seconds,
        )
    return ConsoleEmailProvider(settings.data_dir / "email-outbox.jsonl")


def build_limiter(settings: Settings) -> LimitsRateLimiter:
    return LimitsRateLimiter(
        {
            accounts.SEND_CODE_PER_NUMBER: settings.send_code_limit_per_number,
            accounts.SEND_CODE_PER_IP: settings.send_code_limit_per_ip,
            accounts.VERIFY_PER_IP: settings.verify_limit_per_ip,
            accounts.PIN_ATTEMPTS: settings.pin_attempt_limit,
            contacts.LOOKUP_PER_ACCOUNT: settings.contacts_lookup_limit_per_account,
            contacts.LOOKUP_PER_IP: settings.contacts_lookup_limit_per_ip,
            contacts.LOOKUP_NUMBERS_PER_ACCOUNT: f"{settings.contacts_lookup_numbers_per_day}/day",
            EMAIL_CODE_PER_ACCOUNT: settings.email_code_limit_per_account,
        },
        storage_url=settings.redis_url,
    )


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_store == "s3":
        # Imported only when chosen: aioboto3 is a quarter of a start's imports.
        from pigeon.blobs.s3 import S3BlobStore

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


def _sqlite_delivery(conn: AsyncConnection) -> SqliteDelivery:
    return SqliteDelivery(SqlAlchemyExecutor(conn))


def _postgres_delivery(conn: AsyncConnection) -> PostgresDelivery:
    return PostgresDelivery(AsyncpgExecutor(conn))


def units_of_work(engine: AsyncEngine) -> UnitOfWorkFactory:
    """Units of work on ``engine``, with its dialect's delivery statements."""
    delivery: DeliveryFactory = (
        _sqlite_delivery if engine.url.get_backend_name() == "sqlite" else _postgres_delivery
    )
    # Set once on an engine that shares the pool, not on each unit's connection.
    reader = engine.execution_options(**read_only_options(engine.dialect.name))

    def uow(*, read_only: bool = False, housekeeping: bool = False) -> SqlUnitOfWork:
        if read_only:
            return SqlUnitOfWork(reader, delivery, read_only=True)
        return SqlUnitOfWork(engine, delivery)

    return uow


def _sqlite_units_of_work(
    pool: UnitOfWorkFactory, writer: SqliteWriter, readers: SqliteReaders
) -> UnitOfWorkFactory:
    """Reads on the loop's thread; writes on the one writer, in arrival order; purges on
    the pool."""

    def uow(*, read_only: bool = False, housekeeping: bool = False) -> UnitOfWork:
        if housekeeping:
            return pool(read_only=read_only)
        if read_only:
            return readers()
        return writer()

    return uow


@dataclass(slots=True)
class Storage:
    """The database as the services see it: units of work, and the committer's own."""

    engine: AsyncEngine
    uow: UnitOfWorkFactory
    batch_uow: UnitOfWorkFactory
    sqlite_writer: SqliteWriter | None = None
    sqlite_readers: SqliteReaders | None = None
    committer_engine: AsyncEngine | None = None


def build_storage(settings: Settings) -> Storage:
    """SQLite or PostgreSQL, chosen here and nowhere else.

    SQLite: reads on the event loop's thread (``storage/sqlite_readers.py``);
    every write (the group committer's batches and the requests' units of
    work) on one writer connection, in arrival order
    (``storage/sqlite_writer.py``); purges on the aiosqlite pool.
    PostgreSQL: units of work on the pool; the committer's on an engine of its
    own with one connection per commit worker. Both run the delivery queue's
    statements on the driver itself (``storage/delivery/``).
    """
    url = settings.effective_database_url
    engine = create_engine(url, pool_size=settings.database_pool_size)
    if engine.url.get_backend_name() == "sqlite":
        writer = SqliteWriter(url)
        readers = SqliteReaders(url, keep=settings.database_pool_size)
        uow = _sqlite_units_of_work(units_of_work(engine), writer, readers)
        return Storage(engine, uow, uow, sqlite_writer=writer, sqlite_readers=readers)
    committer_engine = create_committer_engine(url, settings.commit_workers)
    return Storage(
        engine,
        units_of_work(engine),
        units_of_work(committer_engine),
        committer_engine=committer_engine,
    )


def build_admin(settings: Settings) -> tuple[AdminService, AsyncEngine]:
    """The operator's service alone, on the database, for ``pigeon admin``.

    Unlike :func:`build` it makes nothing on disk (no data directory, secret
    key or SMS outbox): a command pointed at the wrong directory must not
    leave one there.
    """
    engine = create_engine(settings.effective_database_url, pool_size=1)
    return AdminService(units_of_work(engine)), engine


def build(settings: Settings, clock: Clock | None = None) -> Container:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = build_storage(settings)
    uow = storage.uow
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
    vapid = load_vapid_keys(
        settings.vapid_private_key.get_secret_value() if settings.vapid_private_key else None,
        settings.data_dir,
        settings.vapid_subject,
    )
    guard = EndpointGuard(settings.push_allow_private_endpoints)
    push_worker: PushWorker | None = None
    push_clients: list[httpx.AsyncClient] = []
    feedback: DeliveryFeedback = UnreachedCounter(metrics)
    if settings.push_enabled:
        senders, push_clients = build_push_senders(settings, vapid, guard)
        push_worker = PushWorker(
            uow,
            clock,
            senders,
            PushPolicy(
                coalesce=timedelta(seconds=settings.push_coalesce_seconds),
                lease=timedelta(seconds=2 * settings.push_send_timeout_seconds + 5),
                max_attempts=settings.push_max_attempts,
                retry_base=settings.push_retry_base_seconds,
                retry_max=settings.push_retry_max_seconds,
                concurrency=settings.push_concurrency,
            ),
            on_result=PushCounters(metrics),
        )
        feedback = FeedbackFanout(feedback, push_worker)
    bus = build_bus(
        settings.bus_url,
        feedback,
        settings.bus_fallback_poll_seconds,
        settings.bus_node_timeout_seconds,
    )
    ttl = timedelta(days=settings.undelivered_ttl_days)
    accounts_service = AccountService(uow, sms, limiter, pins, clock, policy, bus)
    messaging = MessagingService(
        uow,
        bus,
        clock,
        DeliveryPolicy(
            undelivered_ttl=ttl,
            max_message_length=settings.max_message_length,
            max_batch=settings.commit_max_batch,
            commit_workers=1 if storage.sqlite_writer is not None else settings.commit_workers,
            ack_delay=timedelta(milliseconds=settings.ack_commit_delay_ms),
            gather=GatherPolicy(wait=settings.commit_gather_ms / 1000),
            on_commit=metrics.record_commit,
            changes=ChangePolicy(
                edit_window=timedelta(seconds=settings.edit_window_seconds),
                delete_window=timedelta(seconds=settings.delete_window_seconds),
                max_message_length=settings.max_message_length,
            ),
            forwarding=ForwardPolicy(
                many_interval=timedelta(seconds=settings.forward_many_interval_seconds),
                excerpt_max_length=settings.reply_excerpt_max_length,
            ),
        ),
        batch_uow=storage.batch_uow,
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
    presence = PresenceService(uow, bus, bus, clock, chats)
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
            client_thumbnail_max_bytes=settings.media_client_thumbnail_max_bytes,
        ),
        staging_dir=settings.data_dir / "uploads",
        inspect=inspect_file,
        secret_key=policy.secret_key,
        check_thumbnail=is_jpeg_thumbnail,
    )
    push = PushService(uow, clock, guard, vapid.public_key)
    broadcasts = BroadcastService(
        uow,
        messaging,
        clock,
        BroadcastPolicy(
            max_recipients=settings.broadcast_max_recipients,
            max_message_length=settings.max_message_length,
        ),
    )
    notifications = NotificationService(uow, clock)
    gateway = Gateway(
        services=GatewayServices(
            accounts_service, messaging, chats, presence, bus, media, notifications, broadcasts
        ),
        limits=ConnectionLimits(
            max_in_flight=settings.ws_max_in_flight,
            max_pending_commands=settings.ws_max_pending_commands,
        ),
        auth_timeout=settings.ws_auth_timeout_seconds,
        admission=Admission(settings.ws_max_concurrent_handshakes),
    )
    return Container(
        settings=settings,
        engine=storage.engine,
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
        contacts=ContactService(
            uow,
            limiter,
            clock,
            ContactsPolicy(max_numbers=settings.contacts_lookup_max_numbers),
        ),
        blocks=BlockService(uow, clock),
        push=push,
        notifications=notifications,
        push_worker=push_worker,
        push_clients=push_clients,
        deletion=AccountDeletionService(uow, accounts_service, chats, bus, clock),
        broadcasts=broadcasts,
        privacy=PrivacyService(uow, clock, settings.status_list_max_users),
        photos=PhotoService(uow, blobs, clock),
        statuses=StatusService(
            uow,
            blobs,
            bus,
            clock,
            StatusPolicy(
                ttl=timedelta(hours=settings.status_ttl_hours),
                max_length=settings.status_max_length,
            ),
        ),
        recovery_email=RecoveryEmailService(
            uow,
            EmailService(
                build_email_provider(settings),
                EmailTemplateCatalog(settings.email_default_locale, settings.email_templates_dir),
            ),
            limiter,
            clock,
            EmailPolicy(
                secret_key=policy.secret_key,
                code_ttl=policy.code_ttl,
                max_code_attempts=policy.max_code_attempts,
            ),
        ),
        sqlite_writer=storage.sqlite_writer,
        sqlite_readers=storage.sqlite_readers,
        committer_engine=storage.committer_engine,
    )
