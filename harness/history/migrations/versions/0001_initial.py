"""The first schema: machines, runs, benchmarks (with raw timings) and checks (with headroom).

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("arch", sa.String(64), nullable=False),
        sa.Column("cpu_count", sa.Integer, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_key", sa.String(64), nullable=False, unique=True),
        sa.Column("machine_id", sa.Integer, sa.ForeignKey("machines.id"), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("dirty", sa.Boolean, nullable=True),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=True),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("partial", sa.Boolean, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )
    op.create_table(
        "benchmarks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("series", sa.String(1024), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("dtype", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("clock", sa.String(8), nullable=False),
        sa.Column("threads", sa.Integer, nullable=True),
        sa.Column("median_s", sa.Float, nullable=False),
        sa.Column("q1_s", sa.Float, nullable=True),
        sa.Column("q3_s", sa.Float, nullable=True),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("timings", sa.Text, nullable=False),
    )
    op.create_index("ix_benchmarks_series_run", "benchmarks", ["series", "run_id"])
    op.create_index("ix_benchmarks_run", "benchmarks", ["run_id"])
    op.create_table(
        "checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("series", sa.String(1024), nullable=False),
        sa.Column("backend", sa.String(128), nullable=False),
        sa.Column("check_name", sa.String(128), nullable=False),
        sa.Column("config", sa.String(255), nullable=False),
        sa.Column("dtype", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("max_abs_error", sa.Float, nullable=True),
        sa.Column("max_rel_error", sa.Float, nullable=True),
        sa.Column("headroom", sa.Float, nullable=True),
        sa.Column("test_id", sa.Text, nullable=False),
    )
    op.create_index("ix_checks_series_run", "checks", ["series", "run_id"])
    op.create_index("ix_checks_run", "checks", ["run_id"])


def downgrade() -> None:
    for table in ("checks", "benchmarks", "runs", "machines"):
        op.drop_table(table)
