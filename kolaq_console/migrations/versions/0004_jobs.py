"""jobs ledger: exact calls kept for retries, open-failures index, counter-only job stats

Revision ID: 0004_jobs
Revises: 0003_inventory
Create Date: 2026-11-28 15:30:12.010627

- job_attempts: executions so far of a job Huey is retrying, so a failure records how many
  attempts it took and when the first began, whichever workers ran them.
- failed_jobs.payload, job_runs.payload: the signed Huey message of the call, so a retry (or the
  sweeper) re-enqueues exactly that call while args/kwargs keep only the redacted view.
- ix_failed_jobs_open_id: partial index over open rows (failed, interrupted) so a page of the
  failed list is an index walk however many rows the table holds.
- job_stats: the JSON histogram becomes 22 counter columns (h00..h21) and run times are kept in
  microseconds, so workers merge with an atomic upsert and a day sums in SQL. The rows are
  short-lived statistics: the old columns are dropped, not converted.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models

revision: str = '0004_jobs'
down_revision: str | None = '0003_inventory'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status IN ('failed', 'interrupted')")
BUCKETS = [f"h{i:02d}" for i in range(22)]


def upgrade() -> None:
    op.create_table(
        'job_attempts',
        sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('first_attempt_at', kolaq_console.models.UTCDateTime(), nullable=False),
        sa.Column('updated_at', kolaq_console.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('task_id'),
    )
    with op.batch_alter_table('job_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_attempts_updated_at'), ['updated_at'],
                              unique=False)

    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.LargeBinary(), nullable=True))
        batch_op.create_index('ix_failed_jobs_open_id', ['id'], unique=False,
                              sqlite_where=OPEN, postgresql_where=OPEN)

    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.LargeBinary(), nullable=True))

    with op.batch_alter_table('job_stats', schema=None) as batch_op:
        for name in ['runtime_us_total', 'runtime_us_max', *BUCKETS]:
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default='0')
            )
        batch_op.drop_column('runtime_ms_total')
        batch_op.drop_column('runtime_ms_max')
        batch_op.drop_column('runtime_histogram')


def downgrade() -> None:
    with op.batch_alter_table('job_stats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runtime_histogram', sa.JSON(), nullable=False,
                                      server_default='[]'))
        batch_op.add_column(sa.Column('runtime_ms_max', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('runtime_ms_total', sa.BigInteger(), nullable=False,
                                      server_default='0'))
        for name in [*reversed(BUCKETS), 'runtime_us_max', 'runtime_us_total']:
            batch_op.drop_column(name)

    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_column('payload')

    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_failed_jobs_open_id', sqlite_where=OPEN, postgresql_where=OPEN)
        batch_op.drop_column('payload')

    with op.batch_alter_table('job_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_attempts_updated_at'))
    op.drop_table('job_attempts')
