"""The run history on a real PostgreSQL server, which these tests start and stop themselves.

pytest-postgresql's executor runs the server (``pg_ctl`` from PATH or Debian's
/usr/lib/postgresql/*/bin; `.ci/run` installs it when missing). PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` user through ``runuser``. The tests are
skipped, with the reason, only when no server binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.commands.cli import main
from tests.history_data import write_history

SEED = 20292


def pg_ctl() -> str | None:
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:]), None)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    executable = pg_ctl()
    if executable is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl): apt-get install postgresql, as .ci/run does")
    from pytest_postgresql.executors import PostgreSQLExecutor

    base = Path(tempfile.mkdtemp(prefix="netharness-pg-"))
    if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the postgres user
        wrapper = base / "pg_ctl"
        wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{executable}" "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
        base.chmod(0o755)
        data = base / "data"
        data.mkdir()
        shutil.chown(data, "postgres")
        data.chmod(stat.S_IRWXU)
        shutil.chown(base, "postgres")
    port = free_port()
    server = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port,
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "server.log"),
        startparams="-w",
        dbname="netharness",
        user="postgres",
    )
    server.start()
    try:
        server.wait_for_postgres()
        admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE netharness"))
        admin.dispose()
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/netharness"
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def empty_history(postgres_url: str) -> str:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        for table in ("checks", "benchmarks", "runs", "machines", "alembic_version"):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    return postgres_url


def rows(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return found


def test_a_planted_slowdown_is_named_on_postgresql(
    tmp_path: Path, empty_history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    print(f"seed {SEED}")
    write_history(tmp_path / "runs", 12, slow_from=7, factor=1.3, seed=SEED)
    assert main(["history", "import", str(tmp_path / "runs"), "--history", empty_history]) == 0
    assert main(["history", "regressions", "--history", empty_history]) == 0
    regressions = [line for line in capsys.readouterr().out.splitlines() if "REGRESSION" in line]
    assert len(regressions) == 1 and "numpy forward batch 64" in regressions[0] and "at commit c07" in regressions[0]
    assert (rows(empty_history, "runs"), rows(empty_history, "benchmarks")) == (12, 24)


def test_two_writers_at_once_on_postgresql(tmp_path: Path, empty_history: str) -> None:
    for name in ("a", "b"):
        write_history(tmp_path / name, 6, seed=SEED + ord(name), node=f"vm-{name}")
    command = [sys.executable, "-m", "harness.commands.cli", "history", "import"]
    writers = [
        subprocess.Popen([*command, str(tmp_path / n), "--history", empty_history], stderr=subprocess.PIPE, text=True)
        for n in ("a", "b")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert [rows(empty_history, t) for t in ("runs", "machines", "benchmarks", "checks")] == [12, 2, 24, 24]


def test_a_newer_schema_on_postgresql_is_refused(
    tmp_path: Path, empty_history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(tmp_path / "runs", 1, seed=SEED)
    assert main(["history", "import", str(tmp_path / "runs"), "--history", empty_history]) == 0
    engine = sa.create_engine(empty_history)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_next'"))
    engine.dispose()
    capsys.readouterr()
    assert main(["history", "import", str(tmp_path / "runs"), "--history", empty_history]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "schema revision 9999_next, newer than this netharness knows" in err


def test_an_unreachable_server_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path / "runs", 1, seed=SEED)
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{free_port()}/netharness"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not usable" in err
    assert "hunter2" not in err  # the password is masked
