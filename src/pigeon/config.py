"""All of Pigeon's settings in one object, read once and passed explicitly.

Values come from (highest first) keyword arguments, ``PIGEON_*`` environment
variables, the TOML file named by ``PIGEON_CONFIG_FILE``, then the defaults
below, which run Pigeon on one machine with nothing else installed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIGEON_", extra="forbid")

    # -- server --------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite at <data_dir>/pigeon.db"
    )
    database_pool_size: int = Field(
        20,
        ge=1,
        description="Connections kept per process; PostgreSQL may open half as many again.",
    )
    auto_migrate: bool = Field(True, description="Apply pending migrations on `pigeon serve`.")
    redis_url: str | None = Field(None, description="Used for rate limits when set.")
    bus_url: str | None = Field(
        None,
        description="redis://host:port/db or nats://host:port to run several nodes; "
        "unset: one process, its bus in memory.",
    )
    bus_fallback_poll_seconds: float = Field(
        2.0, gt=0, le=60, description="While the bus is away, connections read their queues."
    )
    new_connections_per_turn: int = Field(
        16,
        ge=1,
        le=4096,
        description="New connections whose first request one turn of the event loop handles: "
        "in a reconnect storm, connected devices' frames wait behind at most that many.",
    )
    bus_node_timeout_seconds: float = Field(
        10.0,
        ge=0.5,
        le=300,
        description="A node silent this long on the bus is dead: the others stop routing to it "
        "and their connections read their queues once more (for what it had not published).",
    )
    workers: int = Field(1, ge=1, le=256, description="Processes `pigeon serve` runs on one port.")
    secret_key: SecretStr | None = Field(
        None, description="Keys code hashes; default: generated into <data_dir>/secret.key"
    )
    trust_proxy_headers: bool = Field(
        False, description="Take the client address from X-Forwarded-For (behind a proxy)."
    )
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest JSON request body.")

    # -- SMS -----------------------------------------------------------------
    sms_provider: Literal["console", "twilio"] = "console"
    sms_default_locale: str = "en"
    sms_templates_dir: Path | None = Field(None, description="Overrides for the SMS texts.")
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""
    twilio_messaging_service_sid: str = ""
    sms_timeout_seconds: float = Field(10.0, gt=0)

    # -- verification codes, sessions and PIN --------------------------------
    code_ttl_seconds: int = Field(600, ge=30)
    code_max_attempts: int = Field(5, ge=1)
    send_code_limit_per_number: str = "1/30second;5/hour;10/day"
    send_code_limit_per_ip: str = "20/hour"
    verify_limit_per_ip: str = "60/hour"
    pin_attempt_limit: str = "5/day"
    pin_reset_delay_days: int = Field(7, ge=0)
    access_token_ttl_seconds: int = Field(24 * 3600, ge=60)
    refresh_token_ttl_seconds: int = Field(90 * 24 * 3600, ge=3600)
    max_devices_per_user: int = Field(5, ge=1)
    pin_hash_time_cost: int = Field(3, ge=1)
    pin_hash_memory_kib: int = Field(64 * 1024, ge=8)
    pin_hash_parallelism: int = Field(4, ge=1)
    pin_hash_concurrency: int = Field(2, ge=1, description="PIN hashes computed at once.")

    # -- messaging -------------------------------------------------------------
    max_group_members: int = Field(100, ge=2)
    max_message_length: int = Field(65536, ge=1, description="Characters per text message.")
    undelivered_ttl_days: float = Field(30, gt=0, description="Undelivered messages expire.")
    purge_interval_seconds: float = Field(60, gt=0)
    commit_max_batch: int = Field(256, ge=1, description="Operations per group commit.")
    commit_workers: int = Field(
        1, ge=1, le=32, description="Group commits in flight at once on PostgreSQL (SQLite: 1)."
    )
    ack_commit_delay_ms: float = Field(
        50, ge=0, le=10_000, description="An ack waits this long at most to share a commit."
    )
    # 2 ms: at 1,000 msg/s on SQLite, 0.77 -> 0.35 commits and 650 -> 470 µs of CPU
    # per message, p99 6 -> 8.7 ms; 3 ms and more crossed a 10 ms p99 (docs/performance.md).
    commit_gather_ms: float = Field(
        2, ge=0, le=50, description="A batch waits this long for more while work streams in."
    )
    membership_cache_seconds: float = Field(5, ge=0)

    # -- WebSocket gateway -----------------------------------------------------
    ws_max_frame_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest frame (fits a base64 inline attachment)."
    )
    ws_auth_timeout_seconds: float = Field(5, gt=0)
    ws_ping_interval_seconds: float = Field(20, gt=0)
    ws_ping_timeout_seconds: float = Field(20, gt=0)
    ws_max_in_flight: int = Field(256, ge=1, description="Unacked events per connection.")
    ws_max_pending_commands: int = Field(128, ge=1, description="Unanswered commands.")
    ws_send_timeout_seconds: float = Field(30, gt=0, description="Drop a socket not reading.")
    ws_revocation_check_seconds: float = Field(
        5, gt=0, description="How often live sockets of revoked devices are looked for."
    )
    ws_compression: bool = Field(False, description="permessage-deflate (costs memory).")

    # -- media -----------------------------------------------------------------
    blob_store: Literal["filesystem", "s3"] = "filesystem"
    s3_bucket: str = "pigeon"
    s3_endpoint_url: str | None = Field(None, description="For S3-compatible servers.")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = "blobs/"
    s3_path_style: bool = True
    media_max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    media_max_inline_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest createAttachment over the WebSocket."
    )
    media_allowed_types: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Sniffed MIME types accepted (shell-style patterns); the default takes "
        "every file, images, video and audio as media and anything else as a document.",
    )
    media_unattached_ttl_hours: float = Field(24, gt=0)
    media_link_ttl_seconds: int = Field(300, ge=10)
    media_client_thumbnail_max_bytes: int = Field(
        16 * 1024,
        ge=1,
        description="Largest thumbnail a client may send with a resumable upload (a JPEG poster "
        "of a video, which the server cannot make itself).",
    )

    # -- people: contacts, blocks, privacy (issue 16) -----------------------------
    contacts_lookup_max_numbers: int = Field(1000, ge=1, description="Numbers per lookup.")
    contacts_lookup_limit_per_account: str = Field(
        "10/minute;60/day", description="Lookup requests per account (sliding window)."
    )
    contacts_lookup_limit_per_ip: str = Field(
        "30/minute;200/day", description="Lookup requests per client address (sliding window)."
    )
    contacts_lookup_numbers_per_day: int = Field(
        2000,
        ge=1,
        description="Numbers an account may look up per day (its own contacts cost nothing).",
    )
    # -- push notifications (issue 18; docs/push.md) -------------------------------
    push_enabled: bool = Field(True, description="Push devices that have no live connection.")
    push_allow_private_endpoints: bool = Field(
        False,
        description="Accept http and private-address Web Push endpoints (tests, private "
        "networks); off, an endpoint must be https on a public address (the SSRF rule).",
    )
    push_coalesce_seconds: float = Field(
        10, ge=0, le=3600, description="At most one push per device this often."
    )
    push_send_timeout_seconds: float = Field(10, gt=0, le=120)
    push_max_attempts: int = Field(6, ge=1, le=50, description="Tries per push (429/5xx).")
    push_retry_base_seconds: float = Field(
        1, gt=0, le=600, description="First retry delay; doubled per try, with jitter."
    )
    push_retry_max_seconds: float = Field(300, gt=0, le=86400)
    push_concurrency: int = Field(32, ge=1, le=1024, description="Pushes sent at once per node.")
    push_ca_file: Path | None = Field(
        None, description="Extra CA certificates trusted for push services (tests, proxies)."
    )
    vapid_private_key: SecretStr | None = Field(
        None, description="P-256 key, PEM or base64url; default: generated into <data_dir>."
    )
    vapid_subject: str = Field(
        "mailto:admin@localhost", description="Contact for push services (mailto: or https:)."
    )
    fcm_service_account_file: Path | None = Field(
        None, description="Firebase service-account JSON; unset: FCM registrations are not pushed."
    )
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_token_url: str | None = Field(
        None, description="OAuth token endpoint; default: the service account's token_uri."
    )
    apns_key_file: Path | None = Field(
        None, description="APNs auth key (.p8); unset: APNs registrations are not pushed."
    )
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_base_url: str = "https://api.push.apple.com"
    apns_sandbox_url: str = "https://api.sandbox.push.apple.com"
    # -- message changes (reactions, edits, deletes for everyone) -------------
    edit_window_seconds: int = Field(
        900, ge=0, description="How long after sending its sender may edit a text message."
    )
    delete_window_seconds: int = Field(
        172800, ge=0, description="How long after sending a message may be deleted for everyone."
    )
    forward_many_interval_seconds: int = Field(
        60,
        ge=0,
        description="A message forwarded many times: how long before the same user may "
        "forward it to another chat (one chat at a time).",
    )
    reply_excerpt_max_length: int = Field(
        200, ge=1, description="Characters of the quoted message a reply's excerpt may carry."
    )
    # -- broadcast lists (issue 19) ----------------------------------------------
    broadcast_max_recipients: int = Field(
        256, ge=1, le=10_000, description="Recipients per broadcast list."
    )
    # -- reconnect storms (issue 15, performance) ---------------------------------
    ws_max_concurrent_handshakes: int = Field(
        16, ge=1, description="New sockets between upgrade and first queue read at once."
    )
    listen_backlog: int = Field(
        4096,
        ge=1,
        description="Connections the kernel holds until accepted (capped by net.core.somaxconn).",
    )
    listen_sockets: int = Field(
        8,
        ge=1,
        le=64,
        description="Listening sockets on the port (SO_REUSEPORT); each turn of the event "
        "loop accepts one connection per socket.",
    )
    # -- people: statuses and email (issue 16) -----------------------------------
    status_ttl_hours: float = Field(24, gt=0, description="A status expires this long after.")
    status_max_length: int = Field(700, ge=1, description="Characters of a status or caption.")
    status_list_max_users: int = Field(
        1000, ge=1, description="People on a status list (except / only share with)."
    )
    email_provider: Literal["console", "smtp"] = "console"
    email_from: str = Field("Pigeon <pigeon@localhost>", description="The sender of emails.")
    email_default_locale: str = "en"
    email_templates_dir: Path | None = Field(None, description="Overrides for the email texts.")
    email_code_limit_per_account: str = Field(
        "3/hour;10/day", description="Recovery-email codes sent per account."
    )
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(10.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("PIGEON_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'pigeon.db'}"

    @property
    def uses_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def multi_node_problem(self) -> str | None:
        """Why these settings cannot run as several processes or nodes (None: they can)."""
        if (self.workers > 1 or self.bus_url) and self.uses_sqlite:
            return (
                "several processes (PIGEON_WORKERS > 1 or PIGEON_BUS_URL set) need PostgreSQL: "
                "set PIGEON_DATABASE_URL to a postgresql+asyncpg:// URL (SQLite has one writer, "
                "in one process)"
            )
        if self.bus_url and not self.bus_url.startswith(("redis://", "rediss://", "nats://")):
            scheme = self.bus_url.split("://", 1)[0]
            return (
                f"PIGEON_BUS_URL has an unknown scheme {scheme!r}: use redis://host:port/db "
                "or nats://host:port, or leave it unset for one process"
            )
        if self.workers > 1 and not self.bus_url:
            return (
                "several workers need a bus to reach each other's connections: set "
                "PIGEON_BUS_URL to redis://host:port/db or nats://host:port"
            )
        return None

    def effective_secret_key(self) -> bytes:
        """The configured key, or one generated once and kept in the data directory."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
        return path.read_text().strip().encode()
