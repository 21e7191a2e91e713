"""Alembic environment: always run through ``pigeon.storage.migrate`` with a live connection."""

from alembic import context

from pigeon.storage.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
