"""email_outbox: rows sent with their id as a provider tag leave the provider-id index

Revision ID: 0018_outbox_tagged
Revises: 0017_outbox_indexes
Create Date: 2026-12-01 14:10:00

Provider ids are random UUIDs: every entry of `ix_email_outbox_provider_message_id` lands on
its own index page, so a batch of 100 copies dirtied ~90 pages of that index alone (on SQLite,
~17% of a worker's CPU per email; bench/README.md, broadcasts.py). Every email is now sent
with its row id as the tag `kolaq_outbox_id`, which Resend's webhooks return, and the webhook
finds the row by that id (and checks the provider id). `provider_tagged` is TRUE on every row
made from now on (its requests carry the tag) and NULL on every existing row: those are sent
as they first were, without a tag (a retry under the same idempotency key must repeat its
request, or the provider answers 409), and stay in the index, which keeps only untagged rows,
so every one of them is still found by its provider id. Rows are otherwise unchanged. The
downgrade builds the full partial index again and drops the column.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0018_outbox_tagged'
down_revision: str | None = '0017_outbox_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'email_outbox'
INDEX = 'ix_email_outbox_provider_message_id'


def _index(where: str) -> None:
    op.create_index(INDEX, TABLE, ['provider_message_id'], sqlite_where=sa.text(where),
                    postgresql_where=sa.text(where))


def upgrade() -> None:
    op.add_column(TABLE, sa.Column('provider_tagged', sa.Boolean(), nullable=True))
    op.drop_index(INDEX, table_name=TABLE)
    _index('provider_message_id IS NOT NULL AND provider_tagged IS NULL')


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
    op.drop_column(TABLE, 'provider_tagged')  # SQLite >= 3.35 drops it in place
    _index('provider_message_id IS NOT NULL')
