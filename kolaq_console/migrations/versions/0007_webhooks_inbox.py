"""webhooks inbox and email delivery state

Revision ID: 0007_webhooks_inbox
Revises: 0006_worker_claims
Create Date: 2026-11-30 17:21:43.659650

- webhook_events: attempts, lease_until (past it the sweeper re-enqueues a `received` event
  whose job was lost), the order or email an event concerns (so an incident links both ways).
- email_outbox: what the provider reported after accepting the message (delivery_status,
  delivery_detail, delivery_updated_at), and an index on provider_message_id, by which
  delivery events find their row.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models


revision: str = '0007_webhooks_inbox'
down_revision: str | None = '0006_worker_claims'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('delivery_detail', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('delivery_updated_at', kolaq_console.models.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_email_outbox_delivery_status'), ['delivery_status'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_outbox_provider_message_id'), ['provider_message_id'], unique=False)

    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('lease_until', kolaq_console.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('order_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('email_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_webhook_events_email_id'), ['email_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_events_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_webhook_events_status_lease', ['status', 'lease_until'], unique=False)
        batch_op.create_foreign_key('fk_webhook_events_email_id', 'email_outbox', ['email_id'], ['id'])
        batch_op.create_foreign_key('fk_webhook_events_order_id', 'orders', ['order_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_constraint('fk_webhook_events_order_id', type_='foreignkey')
        batch_op.drop_constraint('fk_webhook_events_email_id', type_='foreignkey')
        batch_op.drop_index('ix_webhook_events_status_lease')
        batch_op.drop_index(batch_op.f('ix_webhook_events_order_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_events_email_id'))
        batch_op.drop_column('email_id')
        batch_op.drop_column('order_id')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('attempts')

    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_outbox_provider_message_id'))
        batch_op.drop_index(batch_op.f('ix_email_outbox_delivery_status'))
        batch_op.drop_column('delivery_updated_at')
        batch_op.drop_column('delivery_detail')
        batch_op.drop_column('delivery_status')

