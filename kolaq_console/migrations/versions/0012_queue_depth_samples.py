"""queue_depth_samples: jobs waiting per logical queue, one row per minute and queue

Revision ID: 0012_queue_depth_samples
Revises: 0011_lookup_indexes
Create Date: 2026-12-01 02:50:00

Written every minute by the `sample_queue_depth` periodic task for the overview's charts (a
minute without a row is a gap, not 0); pruned with job_stats.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models

revision: str = '0012_queue_depth_samples'
down_revision: str | None = '0011_lookup_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('queue_depth_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('minute', kolaq_console.models.UTCDateTime(), nullable=False),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('pending', sa.Integer(), nullable=False),
    sa.Column('scheduled', sa.Integer(), nullable=False),
    sa.Column('in_flight', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('minute', 'queue', name='uq_queue_depth_samples_minute')
    )
    with op.batch_alter_table('queue_depth_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queue_depth_samples_minute'), ['minute'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('queue_depth_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queue_depth_samples_minute'))

    op.drop_table('queue_depth_samples')
