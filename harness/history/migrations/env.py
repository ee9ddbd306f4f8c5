"""Alembic's environment for the history: migrations run on the connection the caller hands in.

:func:`harness.history.store.upgrade` passes its open connection in ``config.attributes``;
nothing here reads an ini file or a URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from harness.history.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two CI jobs that open a new database at once: one migrates, the other waits, then finds it done.
        connection.execute(text("SELECT pg_advisory_xact_lock(2029)"))
    context.run_migrations()
