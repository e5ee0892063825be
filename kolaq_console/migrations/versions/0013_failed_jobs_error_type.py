"""failed jobs: an index on (error_type, status)

Revision ID: 0013_failed_jobs_error_type
Revises: 0012_queue_depth_samples
Create Date: 2026-12-01 02:40:00.000000

- ix_failed_jobs_error_type_status: the open entries of one error type (the rejected queue
  payloads the status counts every refresh) are an index-only range, not a walk of every open
  entry (bench/console.py: 10,000 open entries, ~2 ms -> ~0.05 ms on PostgreSQL).
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0013_failed_jobs_error_type'
down_revision: str | None = '0012_queue_depth_samples'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_failed_jobs_error_type_status', ['error_type', 'status'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('failed_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_failed_jobs_error_type_status')
