"""email_outbox: fewer index writes per row (six indexes partial, two unused ones dropped)

Revision ID: 0017_outbox_indexes
Revises: 0016_product_stock
Create Date: 2026-12-01 09:45:00

Every outbox row was an entry in 12 indexes: a broadcast's batch of 100 copies wrote 1,200
entries when stored and rewrote most of them when sent. The queries on the table (listed in
bench/README.md, broadcasts.py, each checked with EXPLAIN on both databases) need none of
`to_address` (lookups and `later_copy` compare lower(to_address), which has its own index),
`created_at` (never filtered on), nor the NULL entries of order_id, broadcast_id, batch_id,
provider_message_id and delivery_status (each is only looked up by a value); `kind` is
filtered on by the email list, where broadcast copies (most rows) are found in id order
anyway, so that index leaves them out. Two indexes dropped, six made partial; a copy is now
an entry in 6 indexes when stored, 7 when sent. Rows are unchanged: nothing in flight is
affected. The downgrade builds the full indexes again.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017_outbox_indexes'
down_revision: str | None = '0016_product_stock'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'email_outbox'
DROPPED = ('to_address', 'created_at')
SOMETIMES_SET = ('order_id', 'broadcast_id', 'batch_id', 'provider_message_id',
                 'delivery_status')
PARTIAL = {**{c: f'{c} IS NOT NULL' for c in SOMETIMES_SET}, 'kind': "kind <> 'broadcast'"}


def _create(column: str, where: str | None) -> None:
    cond = {} if where is None else {'sqlite_where': sa.text(where),
                                     'postgresql_where': sa.text(where)}
    op.create_index(f'ix_{TABLE}_{column}', TABLE, [column], **cond)


def upgrade() -> None:
    for column in DROPPED:
        op.drop_index(f'ix_{TABLE}_{column}', table_name=TABLE)
    for column, where in PARTIAL.items():
        op.drop_index(f'ix_{TABLE}_{column}', table_name=TABLE)
        _create(column, where)


def downgrade() -> None:
    for column in PARTIAL:
        op.drop_index(f'ix_{TABLE}_{column}', table_name=TABLE)
        _create(column, None)
    for column in DROPPED:
        _create(column, None)
