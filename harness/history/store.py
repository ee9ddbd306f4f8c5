"""Where the history lives, and opening it: a URL, an engine, and a schema brought up to date.

The default is a SQLite file, ``.netharness/history.sqlite`` under the working directory,
in WAL mode with a busy timeout, each write transaction taken with ``BEGIN IMMEDIATE`` so
that two local runs writing at once queue instead of failing. ``--history URL`` or
``NETHARNESS_HISTORY`` names any SQLAlchemy URL instead (PostgreSQL for a team: many CI
machines writing into one server), a plain path names a SQLite file, and ``off`` turns the
history off. Every failure to reach, open or migrate the database is a one-line
:class:`HistoryError` that never shows a password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from harness.errors import HarnessError
from harness.history.settings import DEFAULT_HISTORY, HISTORY_ENV, OFF
from harness.results import first_line

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
MIGRATIONS = "harness.history:migrations"
"""Alembic's script location, package-relative: the migrations ship inside the package."""


class HistoryError(HarnessError):
    """The history database cannot be reached, read or written; the message is one line."""


def resolve_history(flag: str | None) -> str | None:
    """The history's SQLAlchemy URL from ``--history`` or ``NETHARNESS_HISTORY`` (the flag wins), or None if off."""
    value = (flag if flag is not None else os.environ.get(HISTORY_ENV, "")).strip()
    if not value:
        value = DEFAULT_HISTORY
    if value.lower() == OFF:
        return None
    if "://" not in value:
        return f"sqlite:///{Path(value).absolute()}"
    return value


def shown(url: str) -> str:
    """The URL as it may be printed: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an invalid URL>"


def open_history(url: str, *, migrate: bool = True) -> Engine:
    """An engine on the history at ``url``, its schema at this netharness's newest revision.

    Raises :class:`HistoryError` (one line) when the URL is not valid, the database cannot be
    reached or is not a database, or it was written by a newer netharness (a schema revision
    this one does not know): that database is left untouched.
    """
    engine = make_engine(url)
    try:
        check_revision(engine, url)
        if migrate:
            upgrade(engine)
    except HistoryError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise HistoryError(describe_failure(url, exc)) from None
    return engine


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise HistoryError(
            f"--history {url!r} is not a database URL (e.g. sqlite:///path, postgresql+psycopg://host/db) nor 'off'"
        ) from None
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryError(f"cannot create the folder of history database {database}: {exc.strerror}") from None
        connect_args["timeout"] = BUSY_TIMEOUT_MS / 1000
    elif backend == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        engine = create_engine(parsed, connect_args=connect_args)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise HistoryError(f"cannot use history database {shown(url)}: {first_line(str(exc))}") from None
    if backend == "sqlite":
        _sqlite_for_concurrent_writers(engine)
    return engine


def _sqlite_for_concurrent_writers(engine: Engine) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE for every transaction.

    pysqlite's own BEGIN is deferred: two writers could both read, then both try to write, and
    one would fail at once with "database is locked" whatever the timeout. Taking the write lock
    at BEGIN makes the second wait its turn.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(_alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def check_revision(engine: Engine, url: str) -> None:
    """Refuse a database whose schema revision this netharness does not know: a newer one wrote it."""
    unknown = current_revisions(engine) - known_revisions()
    if unknown:
        raise HistoryError(
            f"history database {shown(url)} has schema revision {', '.join(sorted(unknown))}, newer than this"
            f" netharness knows (newest: {head_revision()}); upgrade netharness, or pass --history with another"
            " database"
        )


def upgrade(engine: Engine) -> None:
    if current_revisions(engine) == {head_revision()}:
        return
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")


def describe_failure(url: str, exc: BaseException) -> str:
    """One line for a database error: which database, and the driver's own first line."""
    original = getattr(exc, "orig", None) or exc
    return f"history database {shown(url)} is not usable: {first_line(str(original), type(original).__name__)}"
