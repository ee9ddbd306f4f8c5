"""The history's tables, as SQLAlchemy Core metadata.

The migrations in :mod:`harness.history.migrations` create these; this module is what the
queries use. A series is one machine (its fingerprint) and one configuration (``series``,
a canonical text key): numbers are only ever compared inside one series.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

machines = Table(
    "machines",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("node", String(255), nullable=False),
    Column("arch", String(64), nullable=False),
    Column("cpu_count", Integer, nullable=False),
    Column("info", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_key", String(64), nullable=False, unique=True),
    Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
    Column("time", Float, nullable=False),
    Column("commit", String(64), nullable=False),
    Column("dirty", Boolean, nullable=True),
    Column("branch", String(255), nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("device", String(32), nullable=False),
    Column("versions", Text, nullable=False),
    Column("partial", Boolean, nullable=False),
    Column("source", Text, nullable=False),
    Column("report", Text, nullable=False),
)

benchmarks = Table(
    "benchmarks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("series", String(1024), nullable=False),
    Column("backend", String(128), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("dtype", String(32), nullable=False),
    Column("device", String(32), nullable=False),
    Column("clock", String(8), nullable=False),
    Column("threads", Integer, nullable=True),
    Column("median_s", Float, nullable=False),
    Column("q1_s", Float, nullable=True),
    Column("q3_s", Float, nullable=True),
    Column("rounds", Integer, nullable=False),
    Column("timings", Text, nullable=False),
    Index("ix_benchmarks_series_run", "series", "run_id"),
    Index("ix_benchmarks_run", "run_id"),
)

checks = Table(
    "checks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("series", String(1024), nullable=False),
    Column("backend", String(128), nullable=False),
    Column("check_name", String(128), nullable=False),
    Column("config", String(255), nullable=False),
    Column("dtype", String(32), nullable=False),
    Column("device", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("max_abs_error", Float, nullable=True),
    Column("max_rel_error", Float, nullable=True),
    Column("headroom", Float, nullable=True),
    Column("test_id", Text, nullable=False),
    Index("ix_checks_series_run", "series", "run_id"),
    Index("ix_checks_run", "run_id"),
)
