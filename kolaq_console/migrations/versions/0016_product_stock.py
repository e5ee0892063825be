"""product_stock: the stored stock moves out of products into a narrow table of its own

Revision ID: 0016_product_stock
Revises: 0015_products_fillfactor
Create Date: 2026-12-01 09:30:00

A reconciliation rewrites the stock of every product with new events (~950 of 10,000 for
1,000 events). In the wide products row that dirtied most of the table's pages on SQLite (~330
of 342) and was most of the run's cost on both databases; product_stock holds only what a
reconciliation reads and writes (stock, stock_event_id, last_reconciled_at, and a copy of the
sku that every reported change names, so a run reads no products row either: a foreign key
to products (id, sku) ON UPDATE CASCADE keeps it equal, over the new unique index
uq_products_id_sku). One row per product, created with it; the data moves over and back. On
PostgreSQL
the new table gets fillfactor 70 (its rows are rewritten in bulk every run: room on their page
keeps those updates HOT). products.updated_at stays the catalogue entry's own time: a
reconciliation no longer touches products.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import kolaq_console.models

revision: str = '0016_product_stock'
down_revision: str | None = '0015_products_fillfactor'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOVED = ('stock', 'stock_event_id', 'last_reconciled_at')


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.create_index('uq_products_id_sku', 'products', ['id', 'sku'], unique=True)
    op.create_table(
        'product_stock',
        sa.Column('product_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('stock', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  server_default='0', nullable=False),
        sa.Column('stock_event_id', sa.Integer(), server_default='0', nullable=False),
        sa.Column('last_reconciled_at', kolaq_console.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['product_id', 'sku'], ['products.id', 'products.sku'],
                                onupdate='CASCADE', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('product_id'),
        **({'postgresql_with': {'fillfactor': 70}} if postgres else {}),
    )
    op.execute("INSERT INTO product_stock (product_id, sku, stock, stock_event_id, "
               "last_reconciled_at) SELECT id, sku, stock, stock_event_id, last_reconciled_at "
               "FROM products ORDER BY id")
    # None of the three is indexed or constrained: SQLite (3.35+) drops them in place too.
    for column in MOVED:
        op.execute(f"ALTER TABLE products DROP COLUMN {column}")
    if postgres:  # products' rows are shorter now: rewrite it once (see 0015 on why CLUSTER)
        op.execute("CLUSTER products USING products_pkey")
        op.execute("ALTER TABLE products SET WITHOUT CLUSTER")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    stock_type = 'BIGINT' if postgres else 'INTEGER'
    timestamp = 'TIMESTAMP WITHOUT TIME ZONE' if postgres else 'DATETIME'
    op.execute(f"ALTER TABLE products ADD COLUMN stock {stock_type} NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE products ADD COLUMN stock_event_id INTEGER NOT NULL DEFAULT 0")
    op.execute(f"ALTER TABLE products ADD COLUMN last_reconciled_at {timestamp}")
    op.execute("UPDATE products SET stock = s.stock, stock_event_id = s.stock_event_id, "
               "last_reconciled_at = s.last_reconciled_at FROM product_stock s "
               "WHERE s.product_id = products.id")
    if postgres:  # the stock column had no default before 0016
        op.execute("ALTER TABLE products ALTER COLUMN stock DROP DEFAULT")
    op.drop_table('product_stock')
    op.drop_index('uq_products_id_sku', table_name='products')
