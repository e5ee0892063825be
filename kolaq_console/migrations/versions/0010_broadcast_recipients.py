"""broadcasts: recipients materialised once, cancelled count, longer audience

Revision ID: 0010_broadcast_recipients
Revises: 0009_email_batches
Create Date: 2026-11-30 17:49:20.052927

- broadcast_recipients: a broadcast's audience, one row per address (unique per broadcast),
  each with its status and, once its copy is made, its outbox row;
- broadcasts.audience grows to 80 characters (sku:SKU); broadcasts.cancelled, updated_at;
- ix_customers_email_lower: consent checks look up lower(email), 100 addresses per batch.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models

revision: str = '0010_broadcast_recipients'
down_revision: str | None = '0009_email_batches'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('broadcast_recipients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['outbox_id'], ['email_outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('broadcast_id', 'email', name='uq_broadcast_recipients_email')
    )
    with op.batch_alter_table('broadcast_recipients', schema=None) as batch_op:
        batch_op.create_index('ix_broadcast_recipients_status', ['broadcast_id', 'status', 'id'], unique=False)

    op.create_index('ix_customers_email_lower', 'customers', [sa.text('lower(email)')])

    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancelled', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('updated_at', kolaq_console.models.UTCDateTime(), nullable=True))
        batch_op.alter_column('audience',
               existing_type=sa.VARCHAR(length=20),
               type_=sqlmodel.sql.sqltypes.AutoString(length=80),
               existing_nullable=False)



def downgrade() -> None:
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.alter_column('audience',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=80),
               type_=sa.VARCHAR(length=20),
               existing_nullable=False)
        batch_op.drop_column('updated_at')
        batch_op.drop_column('cancelled')

    op.drop_index('ix_customers_email_lower', table_name='customers')

    with op.batch_alter_table('broadcast_recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_broadcast_recipients_status')

    op.drop_table('broadcast_recipients')
