"""The delivery queue's storage: the statements the hot path runs, one module per dialect.

- ``sqlite.py`` and ``postgres.py`` each hold every statement of their
  dialect as a constant and a class implementing the port
  (``services.ports.DeliveryRepository``) with them: ``SqliteDelivery`` and
  ``PostgresDelivery``. The SQL for PostgreSQL's ack is
  ``postgres.REMOVE_ACKED``.
- ``executors.py`` runs a statement on a connection: the sqlite3 connection of
  SQLite's batch writer, any SQLAlchemy connection, or the asyncpg connection
  under a SQLAlchemy transaction. A delivery class is given one; it does not
  know which.
- ``rows.py`` turns domain objects into rows and rows into domain objects, in
  the tables' column order, for both dialects.

``bootstrap.py`` picks the dialect; nothing here chooses. Every implementation
passes the same tests (``tests/storage/test_delivery_contract.py``).

The statements run on the driver itself, not through SQLAlchemy's
expression layer: inside a batch each one returns in microseconds (SQLite)
or one round trip (PostgreSQL), and SQLAlchemy's work around a statement
(parameter processing, result objects, cache lookups) cost several times
the statement.
"""

from pigeon.storage.delivery.executors import (
    AsyncpgExecutor,
    Executor,
    SqlAlchemyExecutor,
    Sqlite3Executor,
)
from pigeon.storage.delivery.postgres import PostgresDelivery
from pigeon.storage.delivery.sqlite import SqliteDelivery

__all__ = [
    "AsyncpgExecutor",
    "Executor",
    "PostgresDelivery",
    "SqlAlchemyExecutor",
    "Sqlite3Executor",
    "SqliteDelivery",
]
