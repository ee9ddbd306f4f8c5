"""The history's done-when with real runs: a slowdown planted at one commit is named by `history regressions`.

In a throwaway git repository (one empty commit per run, so that each run records its own
commit), runs ``netharness run --quick --backend=numpy,numpy_planted`` ``--runs`` times.
``numpy_planted`` is a test-only plugin, written by this script into a temporary folder with a
real ``netharness.backends`` entry point (never a built-in): the numpy backend, with each
forward and train_step call of its prepared net stretched, by busy-waiting, to ``--factor``
times its own duration while ``NETHARNESS_DEMO_FACTOR`` is set. The script sets it from run
``--slow-from`` on (counted from 1); ``numpy`` itself is the control.

Each run writes its history into a PostgreSQL server that the script starts and stops
(``netharness run --history postgresql+psycopg://...``; ``pg_ctl`` from PATH or Debian's
/usr/lib/postgresql/*/bin, as the tests find it) and is then imported into a SQLite file
(``netharness history import``). ``history regressions`` on each database must name the planted
commit for ``numpy_planted`` and no other commit for it. Without server binaries, the runs
write into SQLite and the PostgreSQL half is skipped, said so. Exit 0 when every database
names the planted commit, 1 when one does not.

    .venv/bin/python tools/history_demo.py [--runs 6] [--slow-from 4] [--factor 2] [--keep DIR]

Each run takes one to two minutes on a 2-core machine. The change-point test needs two runs
at the new level before the newest (or, at the newest commit alone, at least four before it).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLUGIN = '''
"""numpy_planted: the numpy backend, slowed by NETHARNESS_DEMO_FACTOR (tools/history_demo.py only)."""

import os
import time

from backends.numpy_backend import NumpyBackend, PreparedNumpyNet
from harness import hookimpl

FACTOR = float(os.environ.get("NETHARNESS_DEMO_FACTOR") or 1.0)


def _stretch(started):
    """Busy-wait until the call has taken FACTOR times its own time: wall and CPU clocks both slow."""
    end = started + FACTOR * (time.perf_counter() - started)
    while time.perf_counter() < end:
        pass


class PlantedNet(PreparedNumpyNet):
    def forward(self, x):
        started = time.perf_counter()
        out = super().forward(x)
        _stretch(started)
        return out

    def train_step(self, x, target, *, loss, lr):
        started = time.perf_counter()
        super().train_step(x, target, loss=loss, lr=lr)
        _stretch(started)


class PlantedBackend(NumpyBackend):
    name = "numpy_planted"

    def prepare(self, spec, params, *, device, dtype):
        return PlantedNet(spec, params, dtype)


@hookimpl
def harness_backends():
    return [PlantedBackend()]
'''


def install_plugin(site: Path) -> None:
    site.mkdir(parents=True)
    (site / "netharness_demo_planted.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "netharness_demo_planted-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: netharness-demo-planted\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[netharness.backends]\nnumpy_planted = netharness_demo_planted\n")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Postgres:
    """A throwaway PostgreSQL server on a free port (as the postgres user when run as root)."""

    def __init__(self, base: Path) -> None:
        found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:]), None)
        self.url: str | None = None
        self.base = base
        if found is None:
            return
        from pytest_postgresql.executors import PostgreSQLExecutor

        executable = found
        if os.geteuid() == 0:  # initdb and postgres refuse root
            wrapper = base / "pg_ctl"
            wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{found}" "$@"\n')
            wrapper.chmod(0o755)
            executable = str(wrapper)
            base.chmod(0o755)
            (base / "data").mkdir()
            shutil.chown(base / "data", "postgres")
            (base / "data").chmod(stat.S_IRWXU)
            shutil.chown(base, "postgres")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.server = PostgreSQLExecutor(
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
        self.server.start()
        self.server.wait_for_postgres()
        import sqlalchemy as sa

        admin = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE netharness"))
        admin.dispose()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/netharness"

    def stop(self) -> None:
        if self.url is not None:
            self.server.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def netharness(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.commands.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs, one commit each (default: 6)")
    parser.add_argument("--slow-from", type=int, default=4, help="the first slowed run, from 1 (default: 4)")
    parser.add_argument("--factor", type=float, default=2.0, help="how much slower numpy_planted gets (default: 2)")
    parser.add_argument("--backends", default="numpy,numpy_planted", help="(default: numpy,numpy_planted)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep the runs and histories here")
    args = parser.parse_args()
    if not 1 <= args.slow_from <= args.runs:
        parser.error("--slow-from must be a run between 1 and --runs")

    root = Path(args.keep or tempfile.mkdtemp(prefix="netharness-demo-")).absolute()
    root.mkdir(parents=True, exist_ok=True)
    repo, site, sqlite = root / "repo", root / "site", root / "history.sqlite"
    repo.mkdir()
    git(repo, "init", "-q")
    install_plugin(site)
    env = {k: v for k, v in os.environ.items() if k not in ("NETHARNESS_HISTORY", "NETHARNESS_DEMO_FACTOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    print(f"netharness history demo in {root}: {args.runs} runs of --quick --backend={args.backends},"
          f" numpy_planted x{args.factor:g} from run {args.slow_from}", flush=True)  # fmt: skip
    postgres = Postgres(Path(tempfile.mkdtemp(prefix="netharness-demo-pg-")))
    if postgres.url is None:
        print("no PostgreSQL server binaries (pg_ctl): the runs write into SQLite only", flush=True)
    run_history = postgres.url or str(sqlite)
    commits = []
    try:
        for i in range(1, args.runs + 1):
            git(repo, "commit", "-q", "--allow-empty", "-m", f"run {i}")
            commit = git(repo, "rev-parse", "--short", "HEAD")
            commits.append(commit)
            slow = i >= args.slow_from
            run_env = {**env, "NETHARNESS_DEMO_FACTOR": str(args.factor)} if slow else env
            out = root / "runs" / f"run{i:02d}"
            started = time.perf_counter()
            done = netharness("run", "--quick", f"--backend={args.backends}", "--out", str(out),
                              "--history", run_history, cwd=repo, env=run_env)  # fmt: skip
            written = "netharness: history:" in done.stdout
            print(f"run {i}: commit {commit}{' (slowed)' if slow else ''}: exit {done.returncode},"
                  f" {time.perf_counter() - started:.0f} s, history {'written' if written else 'NOT written'}",
                  flush=True)  # fmt: skip
            if not written:
                print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
                return 1
            if postgres.url:
                imported = netharness("history", "import", str(out), "--history", str(sqlite), cwd=repo, env=env)
                if imported.returncode != 0:
                    print(imported.stdout, imported.stderr, sep="\n")
                    return 1
        planted = commits[args.slow_from - 1]
        print(f"planted at commit {planted} (run {args.slow_from})")
        ok = True
        for name, url in [("PostgreSQL", postgres.url), ("SQLite", str(sqlite))]:
            if url is None:
                print(f"{name}: skipped, no server binaries")
                continue
            found = netharness("history", "regressions", "--history", url, cwd=repo, env=env)
            report = netharness("history", "report", "--out", str(root / f"trend-{name.lower()}"),
                                "--history", url, cwd=repo, env=env)  # fmt: skip
            print(f"--- history regressions on {name} (exit {found.returncode}):\n{found.stdout}{found.stderr}")
            lines = [line for line in found.stdout.splitlines() if "REGRESSION: numpy_planted " in line]
            named = {m.group(1) for line in lines if (m := re.search(r" at commit (\S+) ", line))}
            good = named == {planted}
            ok = ok and good and report.returncode == 0
            print(f"{name}: numpy_planted regressions at {sorted(named) or 'no commit'}:"
                  f" {'the planted commit' if good else 'NOT (only) the planted commit'}; trend page"
                  f" {'written' if report.returncode == 0 else 'FAILED: ' + report.stderr.strip()}")  # fmt: skip
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        postgres.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
