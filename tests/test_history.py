"""The run history on SQLite: import, change points, the refusals, and two writers at once.

Histories are synthetic results files (tests/history_data.py) with seeded noise, the seed
printed in each test's data; the PostgreSQL path is tests/test_history_postgres.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.commands.cli import main
from tests.history_data import write_history, write_run

SEED = 20291


def netharness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.commands.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_planted_slowdown_is_named_with_its_commit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    print(f"seed {SEED}")
    write_history(tmp_path / "runs", 14, slow_from=8, factor=1.3, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert "14 run(s) added" in capsys.readouterr().out
    assert main(["history", "regressions", "--history", str(db)]) == 0  # the step is not at the newest commit
    out = capsys.readouterr().out
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(regressions) == 1, out
    assert "numpy forward batch 64" in regressions[0] and "at commit c08" in regressions[0]
    assert not any("eager forward batch" in line for line in out.splitlines() if "forward batch" in line)


def test_the_newest_commit_starting_a_regression_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    print(f"seed {SEED}")
    write_history(tmp_path / "runs", 12, slow_from=11, factor=1.3, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert main(["history", "regressions", "--history", str(db)]) == 1
    out = capsys.readouterr().out
    assert "the newest commit (c11) starts a regression in 1 series" in out
    # A faster run is no failure: the same history where numpy got quicker.
    write_history(tmp_path / "faster", 12, slow_from=11, factor=0.7, seed=SEED)
    fast = tmp_path / "fast.sqlite"
    assert main(["history", "import", str(tmp_path / "faster"), "--history", str(fast)]) == 0
    assert main(["history", "regressions", "--history", str(fast)]) == 0
    assert "improvement: numpy" in capsys.readouterr().out


def test_a_shrinking_headroom_is_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = __import__("numpy").random.default_rng(SEED)
    for i in range(10):
        write_run(tmp_path / "runs" / f"r{i}", f"c{i:02d}", 1e9 + i, rng=rng, headroom=80.0 if i < 6 else 3.0)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert main(["history", "regressions", "--history", str(db)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "numpy forward [float32-batch64]" in line)
    assert "REGRESSION" in line and "at commit c06" in line and "headroom 80 -> 3" in line


def test_importing_the_same_files_twice_adds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path / "runs", 3, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert "0 run(s) added, 3 already there" in capsys.readouterr().out
    assert (count(db, "runs"), count(db, "benchmarks"), count(db, "checks")) == (3, 6, 6)
    with sqlite3.connect(db) as connection:
        timings = json.loads(connection.execute("SELECT timings FROM benchmarks LIMIT 1").fetchone()[0])
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert len(timings) == 9  # the raw per-round timings are kept
    assert mode == "wal"


def test_two_writers_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_history(tmp_path / name, 8, seed=SEED + ord(name), node=f"vm-{name}")
    db = tmp_path / "h.sqlite"
    # Both start on a database that does not exist yet: both migrate, both write.
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.commands.cli", "history", "import", str(tmp_path / n), f"--history={db}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in ("a", "b")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert (count(db, "runs"), count(db, "machines"), count(db, "benchmarks"), count(db, "checks")) == (16, 2, 32, 32)


def test_a_database_from_a_newer_netharness_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path / "runs", 2, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    capsys.readouterr()
    assert main(["history", "regressions", "--history", str(db)]) == 2
    err = one_line_error(capsys)
    assert "schema revision 9999_from_the_future, newer than this netharness knows" in err
    assert "upgrade netharness" in err
    with sqlite3.connect(db) as connection:  # left as it was
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "9999_from_the_future"


def test_a_corrupt_sqlite_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"this is not a database\n" * 200)
    assert main(["history", "regressions", "--history", str(db)]) == 2
    err = one_line_error(capsys)
    assert str(db) in err and "not usable" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"machine_info": {}, "benchmarks": [{"stats": {"median": "fast"}}]}', "expected a number"),
        (
            '{"machine_info": {}, "benchmarks": [{"name": "b", "extra_info": {"backend": "x", "phase": "forward",'
            ' "batch": 1, "dtype": "float32", "device": "cpu"}, "stats": {"median": -1}}]}',
            "expected positive seconds",
        ),
        ("not json at all", "not valid JSON"),
    ],
)
def test_bad_results_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    bad = tmp_path / "benchmarks.json"
    bad.write_text(content)
    assert main(["history", "import", str(bad), "--history", str(tmp_path / "h.sqlite")]) == 2
    assert expected in one_line_error(capsys)


def test_history_off_and_bad_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "regressions", "--history", "off"]) == 2
    assert "the history is off" in one_line_error(capsys)
    assert main(["history", "regressions", "--history", "nosuchdialect://x"]) == 2
    assert "cannot use history database" in one_line_error(capsys)


def test_the_default_history_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.history.store import resolve_history

    monkeypatch.setenv("NETHARNESS_HISTORY", "OFF")
    assert resolve_history(None) is None
    assert resolve_history(str(tmp_path / "x.sqlite")) == f"sqlite:///{tmp_path / 'x.sqlite'}"
    monkeypatch.delenv("NETHARNESS_HISTORY")
    monkeypatch.chdir(tmp_path)
    assert resolve_history(None) == f"sqlite:///{tmp_path / '.netharness' / 'history.sqlite'}"
    assert resolve_history("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:secret@h/db"


def test_a_run_whose_history_server_is_unreachable_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``netharness run`` does once its files are written: the history write fails with one line, exit 2."""
    import socket

    from harness.commands.history import append_after_run

    folder = write_history(tmp_path / "runs", 1, seed=SEED)[0]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert append_after_run(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db", folder) == 2
    err = one_line_error(capsys)
    assert "history not written" in err and str(folder) in err and "secret" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # And a reachable history gets the run.
    assert append_after_run(str(tmp_path / "h.sqlite"), folder) == 0
    assert count(tmp_path / "h.sqlite", "runs") == 1


def test_the_trend_page_names_the_open_regression_and_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(tmp_path / "runs", 10, slow_from=9, factor=1.4, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    assert main(["history", "report", "--out", str(tmp_path / "page"), "--history", str(db)]) == 0
    page = (tmp_path / "page" / "history.html").read_text()
    first_screen = page[: page.index('<section class="backend">')]
    assert "numpy forward batch 64" in first_screen and "c09" in first_screen
    assert "default-src &#39;none&#39;" in page and "<script" not in page
    assert "http" not in page.replace("http-equiv", "")
    assert page.count("<svg") == 4  # two benchmarks, two checks


def test_series_are_split_by_machine_and_put_in_time_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs imported newest first, from two machines: each machine's series comes back oldest first, on its own."""
    from harness.history.series import load_series
    from harness.history.store import open_history

    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    db = tmp_path / "h.sqlite"
    for i in reversed(range(4)):
        for node in ("vm1", "vm2"):
            folder = write_run(tmp_path / f"{node}-{i}", f"{node}c{i}", 1_767_000_000 + 3600 * i, rng=rng, node=node)
            assert main(["history", "import", str(folder), "--history", str(db)]) == 0
    url = f"sqlite:///{db}"
    engine = open_history(url)
    try:
        found = load_series(engine, url)
    finally:
        engine.dispose()
    assert [(s.kind, s.node, s.backend) for s in found] == sorted(
        [(kind, node, backend) for kind in ("benchmark", "headroom") for node in ("vm1", "vm2")
         for backend in ("eager", "numpy")],
        key=lambda k: (k[0] != "benchmark", k[1], k[2]),
    )  # fmt: skip
    for one in found:
        assert one.commits == [f"{one.node}c{i}" for i in range(4)], one
        assert one.times == sorted(one.times)
        assert len(one.values) == len(one.low) == len(one.high) == 4
        if one.kind == "benchmark":
            assert all(lo <= v <= hi for lo, v, hi in zip(one.low, one.values, one.high))
            assert one.label.startswith(f"{one.backend} forward batch 64 float32 cpu (wall clock, 2 threads)")
        else:
            assert one.values == [50.0 if one.backend == "numpy" else 20.0] * 4
            assert one.label == f"{one.backend} forward [float32-batch64] float32 cpu (seed 0)"


def test_a_run_appended_while_the_series_are_read_is_left_out(tmp_path: Path) -> None:
    """The runs are read before their rows: rows of a run committed in between are ignored, not a crash."""
    from harness.commands.history import runs_from_results
    from harness.history.append import append_run
    from harness.history.series import _benchmark_series, _headroom_series, _Runs
    from harness.history.store import open_history

    print(f"seed {SEED}")
    folders = write_history(tmp_path / "runs", 4, seed=SEED)
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    engine = open_history(url)
    try:
        for run in runs_from_results(folders[:3]):
            append_run(engine, run, url)
        with engine.connect() as connection:
            known = _Runs(connection)
            (late,) = runs_from_results(folders[3:])
            append_run(engine, late, url)  # another writer, between the two reads
            found = [*_benchmark_series(connection, known), *_headroom_series(connection, known)]
    finally:
        engine.dispose()
    assert len(found) == 4
    assert all(one.commits == ["c00", "c01", "c02"] for one in found), [one.commits for one in found]


def test_a_run_s_report_and_the_trend_page_link_each_other_relatively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run is added to the history, its folder holds the trend page, and each links the other."""
    import argparse

    from harness.commands.history import append_after_run
    from reports.commands import cmd_report

    folder = write_history(tmp_path / "runs", 1, seed=SEED)[0]
    inputs = [str(p) for p in folder.iterdir() if p.suffix in (".json", ".jsonl")]
    cmd_report(argparse.Namespace(results=inputs, out=str(folder)))
    assert 'id="history-link"' not in (folder / "report.html").read_text(encoding="utf-8")
    assert append_after_run(str(tmp_path / "h.sqlite"), folder) == 0
    report = (folder / "report.html").read_text(encoding="utf-8")
    assert '<a id="history-link" href="history/history.html">' in report
    page = (folder / "history" / "history.html").read_text(encoding="utf-8")
    assert '<a id="run-report" href="../report.html">' in page
    assert "trends across commits" in capsys.readouterr().out


def test_the_trend_page_never_replaces_a_file_of_the_user_s(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_history(tmp_path / "runs", 2, seed=SEED)
    db = tmp_path / "h.sqlite"
    assert main(["history", "import", str(tmp_path / "runs"), "--history", str(db)]) == 0
    mine = tmp_path / "site" / "history.html"
    mine.parent.mkdir()
    mine.write_text("my own page")
    assert main(["history", "report", "--out", str(mine.parent), "--history", str(db)]) == 2
    assert "is not a netharness trend page" in one_line_error(capsys) and mine.read_text() == "my own page"
    # A trend page is replaced by the next one; --force replaces anything.
    assert main(["history", "report", "--out", str(tmp_path / "page"), "--history", str(db)]) == 0
    assert main(["history", "report", "--out", str(tmp_path / "page"), "--history", str(db)]) == 0
    assert main(["history", "report", "--out", str(mine.parent), "--history", str(db), "--force"]) == 0
    assert "<title>netharness history</title>" in mine.read_text()
