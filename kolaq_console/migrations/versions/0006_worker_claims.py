"""outbox claims and worker process identity

Revision ID: 0006_worker_claims
Revises: 0005_stock_bigint
Create Date: 2026-11-30 17:20:07.843143

- email_outbox.claimed_by: the worker sending the row, so the emails of a worker that died
  (kill -9) are handed back as soon as it is known dead, not after the outbox lease.
- workers.process_started, workers.pid_scope: the OS start time of the worker's process and
  where its pid means something, so a worker on the same machine can prove it gone at once;
  workers.found_dead_at: when it did (the worker is listed as dead from then on).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models


revision: str = '0006_worker_claims'
down_revision: str | None = '0005_stock_bigint'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))

    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('process_started', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('pid_scope', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('found_dead_at', kolaq_console.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('found_dead_at')
        batch_op.drop_column('pid_scope')
        batch_op.drop_column('process_started')

    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
