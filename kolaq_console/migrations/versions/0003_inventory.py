"""inventory: per-product fold mark of the stock cache

Revision ID: 0003_inventory
Revises: 0001
Create Date: 2026-11-28 15:30:59.073100

products.stock is a cache of SUM(inventory_events.delta). It covers the product's events with
id <= max(products.stock_event_id, the global reconciliation checkpoint). Existing caches are
taken to cover the events that exist now (the demo and earlier code folded every event); the
first reconciliation is a full one, which corrects any product for which that was not true.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003_inventory'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('stock_event_id', sa.Integer(), server_default='0', nullable=False)
        )
    op.execute(
        "UPDATE products SET stock_event_id = COALESCE("
        "(SELECT MAX(e.id) FROM inventory_events e WHERE e.product_id = products.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('stock_event_id')
