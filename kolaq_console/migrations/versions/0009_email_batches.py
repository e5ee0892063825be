"""email batches: outbox rows sent in one provider request

Revision ID: 0009_email_batches
Revises: 0008_sms_messages
Create Date: 2026-11-30 17:31:29.531933

- email_batches: a batch's idempotency key, status, attempts, lease and counts;
- email_outbox.batch_id: the batch a row is (or was last) sent in, fixed before the call;
- ix_email_outbox_waiting: partial index over rows waiting for a batch, so a claim is an index
  walk however many sent rows the outbox holds.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models

revision: str = '0009_email_batches'
down_revision: str | None = '0008_sms_messages'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('email_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', kolaq_console.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', kolaq_console.models.UTCDateTime(), nullable=False),
    sa.Column('lease_until', kolaq_console.models.UTCDateTime(), nullable=True),
    sa.Column('next_attempt_at', kolaq_console.models.UTCDateTime(), nullable=True),
    sa.Column('finished_at', kolaq_console.models.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('email_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_batches_broadcast_id'), ['broadcast_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_batches_status'), ['status'], unique=False)

    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_email_outbox_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_email_outbox_waiting', ['id'], unique=False, sqlite_where=sa.text("status = 'queued' AND batch_id IS NULL"), postgresql_where=sa.text("status = 'queued' AND batch_id IS NULL"))
        batch_op.create_foreign_key('fk_email_outbox_batch_id', 'email_batches', ['batch_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_constraint('fk_email_outbox_batch_id', type_='foreignkey')
        batch_op.drop_index('ix_email_outbox_waiting', sqlite_where=sa.text("status = 'queued' AND batch_id IS NULL"), postgresql_where=sa.text("status = 'queued' AND batch_id IS NULL"))
        batch_op.drop_index(batch_op.f('ix_email_outbox_batch_id'))
        batch_op.drop_column('batch_id')

    with op.batch_alter_table('email_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_batches_status'))
        batch_op.drop_index(batch_op.f('ix_email_batches_broadcast_id'))

    op.drop_table('email_batches')
