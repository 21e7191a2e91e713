"""Engines for the two supported databases, set up the way Pigeon needs them."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

# Connections opened with this execution option start a plain (deferred)
# transaction on SQLite instead of BEGIN IMMEDIATE: only for read-only work.
READ_ONLY = "pigeon_read_only"

# How long a write transaction waits for another writer's lock.
BUSY_TIMEOUT_MS = 5000
# How long a read on the event loop's thread may wait in SQLite's rare busy moments.
READER_BUSY_TIMEOUT_MS = 100

# A pooled PostgreSQL connection idle for longer is pinged before it is used.
PING_AFTER_IDLE_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 5.0

# For each target_session_attrs that wants a writable server, the parameters by
# which a server says it is not one (asyncpg checks the same when it connects;
# PostgreSQL 14 and later report them to every session whenever they change).
_NOT_WRITABLE_WHEN_ON = {
    "read-write": ("in_hot_standby", "default_transaction_read_only"),
    "primary": ("in_hot_standby",),
}


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://...`` or ``postgresql+asyncpg://...``).

    Statement parameters never appear in errors or logs: they hold phone
    numbers, token hashes and message text. A PostgreSQL connection is tested
    each time it leaves the pool, so a request never meets one the server has
    dropped (``_test_connections_leaving_the_pool``); with several hosts, nor one
    on a server that no longer takes writes (``_writable_host``,
    ``_leave_servers_that_stopped_writing``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, echo=echo, pool_size=pool_size, max_overflow=0, hide_parameters=True
        )
        _configure_sqlite(engine.sync_engine, BUSY_TIMEOUT_MS)
        _begin_immediately(engine.sync_engine)
        return engine
    parsed = _writable_host(parsed)
    engine = create_async_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        # An overflow connection is closed as it comes back while the pool is
        # full: past the pool, every burst opens PostgreSQL backends again (462
        # in one reconnect storm with a pool of 10, 84 with 30).
        max_overflow=pool_size // 2,
        hide_parameters=True,
    )
    _test_connections_leaving_the_pool(engine.sync_engine)
    _leave_servers_that_stopped_writing(engine.sync_engine, parsed)
    return engine


def create_committer_engine(url: str, pool_size: int) -> AsyncEngine:
    """The PostgreSQL group committer's own connections (SQLite's is ``create_sqlite_writer``).

    No pre-ping: its three round trips were three of a batch's eleven; a
    connection PostgreSQL has dropped fails one attempt, is discarded, and the
    committer's retry takes a new one.

    The committer only probes keys, so its connections tell the planner not
    to scan whole tables. Its statements are prepared once and keep the
    generic plan made at their sixth run, often on a fresh database whose
    tables are empty and not yet analysed, until autovacuum next analyses
    them (a minute or more). On empty tables a scan looks cheapest:

    - no sequential scans: the acks deleted their inbox entries by scanning
      the whole table, dead entries included, at every batch (600 pages a
      batch after 45,000 messages), where a TID scan reads what it deletes;
    - no bitmap scans: one over a device's inbox range visits every entry
      deleted since the last vacuum, at each ack (a group of 100 ran at 3,600
      instead of 8,727 deliveries/s), where a plain index scan marks those
      entries dead once and skips them after.
    """
    parsed = _writable_host(make_url(url))
    engine = create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        hide_parameters=True,
        connect_args={"server_settings": {"enable_seqscan": "off", "enable_bitmapscan": "off"}},
    )
    _leave_servers_that_stopped_writing(engine.sync_engine, parsed)
    return engine


def _test_connections_leaving_the_pool(engine: Engine) -> None:
    """A connection leaving the pool is known to be open, for one round trip at most.

    SQLAlchemy's ``pool_pre_ping`` costs three round trips on asyncpg (BEGIN,
    an empty statement, ROLLBACK) at every checkout: six of the nine a device's
    connection cost in a reconnect storm. A connection its server closed (a
    restart, a terminated backend, a failover) is known closed without one:
    asyncpg saw its socket close. One that sat idle for
    ``PING_AFTER_IDLE_SECONDS`` is pinged once with an empty statement, for
    what a socket does not show at once (a peer gone without closing it). A
    connection in steady use is not pinged: if its server died since it was
    last returned, that statement fails, the pool drops its connections, and
    the request gets ``unavailable``, as it would have had the ping seen it.
    A failed test makes the pool open a new connection for the checkout.
    """

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver.is_closed():
            raise sa_exc.DisconnectionError("the server closed the connection")
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS:
            try:
                await_only(driver.fetchrow(";", timeout=PING_TIMEOUT_SECONDS))
            except Exception as exc:
                raise sa_exc.DisconnectionError(f"the connection failed its ping: {exc}") from exc


def _writable_host(url: URL) -> URL:
    """A URL naming several PostgreSQL hosts connects to the one that takes writes.

    asyncpg tries the hosts in order (``postgresql+asyncpg://u@/db?host=h1:5432&host=h2:5432``,
    or ``u@h1,h2/db`` on the default port) and by default takes the first that answers,
    be it a standby. Unless the URL says otherwise, ``target_session_attrs=read-write``
    makes it skip standbys and read-only servers, so after a failover new connections
    find the promoted primary.
    """
    named = url.query.get("host", url.host or "")
    hosts = named.split(",") if isinstance(named, str) else named
    if len(hosts) > 1 and "target_session_attrs" not in url.query:
        return url.update_query_dict({"target_session_attrs": "read-write"})
    return url


def _leave_servers_that_stopped_writing(engine: Engine, url: URL) -> None:
    """A pooled connection whose server stopped taking writes is dropped, with every older one.

    After a switchover the old primary may stay up as a standby or fenced read-only:
    its connections still answer the pool's ping, and every write on them would fail
    for as long as they live. The check reads what the server reported (no round
    trip) each time a connection leaves the pool; the connection that replaces it is
    opened with the URL's ``target_session_attrs``, so on the host that takes writes.
    """
    wanted = url.query.get("target_session_attrs")
    watched = _NOT_WRITABLE_WHEN_ON.get(wanted) if isinstance(wanted, str) else None
    if not watched:
        return

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        reported = dbapi_connection.driver_connection.get_settings()
        if any(getattr(reported, name, "off") == "on" for name in watched):
            raise sa_exc.InvalidatePoolError("the server no longer takes writes")


def create_sqlite_writer(url: str) -> Engine:
    """A synchronous engine with one connection, for the group committer's batches.

    The connection may be used from the event loop's thread and from worker
    threads in turn (never at once), hence ``check_same_thread=False``. Its
    busy timeout is zero: the batch begins its transactions on the driver
    itself (``storage/sqlite_writer.py``), and waits for another writer's lock
    only in a worker thread, never on the event loop.
    """
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa.create_engine(
        sync_url,
        pool_size=1,
        max_overflow=0,
        hide_parameters=True,
        connect_args={"check_same_thread": False},
    )
    _configure_sqlite(engine, busy_timeout_ms=0)
    return engine


def create_sqlite_reader(url: str, keep: int) -> Engine:
    """A synchronous engine for read-only units of work on the event loop's thread.

    It keeps ``keep`` connections and opens more when a burst wants them
    (closing them again after): a unit never waits for a connection, which
    on the loop's thread would stop the whole process. Each transaction is a
    plain ``BEGIN``: a snapshot for the unit's reads, taking no lock. A WAL
    reader waits for nothing but in rare moments (another connection
    recovering the WAL); the short busy timeout bounds that wait. The unit
    begins its transaction on the driver (``storage/sqlite_readers.py``).
    """
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = sa.create_engine(
        sync_url,
        pool_size=keep,
        max_overflow=-1,
        hide_parameters=True,
        connect_args={"check_same_thread": False},
    )
    _configure_sqlite(engine, busy_timeout_ms=READER_BUSY_TIMEOUT_MS)
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, full fsync, foreign keys, and how long a writer waits for the lock."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        # synchronous=FULL: an acknowledged commit survives power loss, not only a crash.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()


def _begin_immediately(engine: Engine) -> None:
    """Write transactions take the lock up front.

    SQLite has one writer. A deferred transaction that reads and then writes
    fails at once with "database is locked" if another writer got in between;
    BEGIN IMMEDIATE instead waits (up to busy_timeout) for the lock.
    """

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
