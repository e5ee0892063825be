"""broadcast copies: the broadcast's one rendering, each copy only its recipient's token

Revision ID: 0014_broadcast_rendering
Revises: 0013_failed_jobs_error_type
Create Date: 2026-12-01 04:00:00

- broadcast_renderings: a broadcast's subject, HTML and text rendered once, with a slot where
  each recipient's unsubscribe token goes.
- email_outbox.unsubscribe_token: a broadcast copy stores its token and empty html/text; the
  body is put together at send time (emails.bodies). Rows stored before keep their bodies.
  (bench/README.md: the ~6 KB body per row, rewritten on claim and on sent, was a third of the
  worker's CPU per email.)
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import kolaq_console.models

revision: str = '0014_broadcast_rendering'
down_revision: str | None = '0013_failed_jobs_error_type'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('broadcast_renderings',
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('slot', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('created_at', kolaq_console.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ),
    sa.PrimaryKeyConstraint('broadcast_id')
    )
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unsubscribe_token', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('email_outbox', schema=None) as batch_op:
        batch_op.drop_column('unsubscribe_token')
    op.drop_table('broadcast_renderings')
