"""product_stock: no last_reconciled_at (a product's reconciled time is derived from the run state)

Revision ID: 0019_stock_untimed
Revises: 0018_outbox_tagged
Create Date: 2026-12-01 14:30:00

An incremental run rewrites the stock of every product with new events (~950 of 10,000 for
1,000 events). With a timestamp in every row (45-byte rows instead of 19) that dirtied about
twice the pages of product_stock on SQLite, and setting the column to NULL changes nothing
(SQLite leaves the rows on their pages): the column goes and, on SQLite, the table is rebuilt
(batch mode copies the rows into a new table in product order, so its pages are dense).
What the console and CLI show as a product's reconciled time is now derived from the run state
and the product's mark (inventory/stock.py, `reconciled_times`). On PostgreSQL dropping the
column is enough: it is marked dropped at once, and each row loses the value as a run rewrites
it. The downgrade adds the column back, empty (NULL: "never" until a run changes the row).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kolaq_console.models

revision: str = '0019_stock_untimed'
down_revision: str | None = '0018_outbox_tagged'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'product_stock'
COLUMN = 'last_reconciled_at'


def _before() -> sa.Table:
    """The table as 0016 made it: batch mode copies from this instead of reflecting the table
    (which reflects products too, and warns about its expression indexes)."""
    return sa.Table(
        TABLE, sa.MetaData(),
        sa.Column('product_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('stock', sa.Integer(), server_default='0', nullable=False),
        sa.Column('stock_event_id', sa.Integer(), server_default='0', nullable=False),
        sa.Column(COLUMN, kolaq_console.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['product_id', 'sku'], ['products.id', 'products.sku'],
                                onupdate='CASCADE', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('product_id'),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        # recreate: a DROP COLUMN in place would leave the narrower rows on as many pages
        with op.batch_alter_table(TABLE, recreate='always', copy_from=_before()) as batch:
            batch.drop_column(COLUMN)
    else:
        op.drop_column(TABLE, COLUMN)


def downgrade() -> None:
    op.add_column(TABLE, sa.Column(COLUMN, kolaq_console.models.UTCDateTime(), nullable=True))
