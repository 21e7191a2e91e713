"""The ``pigeon`` command: serve, migrate and operator tasks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pigeon.config import Settings

app = typer.Typer(help="Pigeon, a self-hostable messaging server.", no_args_is_help=True)
admin = typer.Typer(help="Operator tasks on the database.", no_args_is_help=True)
app.add_typer(admin, name="admin")
console = Console()

DataDir = Annotated[
    Path | None, typer.Option(help="Data directory.", envvar="PIGEON_DATA_DIR", show_envvar=True)
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy database URL.", envvar="PIGEON_DATABASE_URL", show_envvar=True),
]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with command-line options on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(envvar="PIGEON_HOST", show_envvar=True)] = None,
    port: Annotated[int | None, typer.Option(envvar="PIGEON_PORT", show_envvar=True)] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the server (migrating the database first)."""
    import uvicorn

    from pigeon.api.app import create_app
    from pigeon.observability.logging import configure_logging

    settings = load_settings(host=host, port=port, data_dir=data_dir, database_url=database_url)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        proxy_headers=settings.trust_proxy_headers,
        server_header=False,
        log_config=None,
        access_log=False,
    )


@app.command()
def migrate(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Apply pending database migrations."""
    from pigeon.storage import migrate as migrations
    from pigeon.storage.engine import create_engine

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        engine = create_engine(settings.effective_database_url)
        try:
            pending = await migrations.pending_revisions(engine)
            await migrations.upgrade(engine)
            return pending
        finally:
            await engine.dispose()

    applied = asyncio.run(run())
    console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def _with_container(settings: Settings, action: Any) -> Any:
    from pigeon.bootstrap import build

    async def run() -> Any:
        container = build(settings)
        try:
            return await action(container)
        finally:
            await container.close()

    return asyncio.run(run())


@admin.command("users")
def list_users(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    after: Annotated[str | None, typer.Option(help="List users after this id.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List users, oldest first."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    users = _with_container(settings, lambda c: c.admin.list_users(limit, after))
    table = Table("id", "phone", "name", "created")
    for user in users:
        table.add_row(user.id, user.phone, user.name, user.created_at.isoformat(timespec="seconds"))
    console.print(table)


@admin.command("devices")
def list_devices(user_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List one user's devices."""
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    devices = _with_container(settings, lambda c: c.admin.list_devices(user_id))
    table = Table("id", "name", "platform", "last seen")
    for device in devices:
        table.add_row(
            device.id,
            device.name,
            device.platform.value,
            device.last_seen_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@admin.command("revoke-device")
def revoke_device(
    device_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """Revoke a device: its tokens stop working at once."""
    from pigeon.domain.errors import NotFound

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    try:
        _with_container(settings, lambda c: c.admin.revoke_device(device_id))
    except NotFound:
        console.print(f"[red]no device {device_id}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {device_id}")
