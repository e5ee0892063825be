"""products.stock becomes 64-bit on PostgreSQL

Revision ID: 0005_stock_bigint
Revises: 0004_jobs
Create Date: 2026-11-29 09:00:00.000000

The stock cache holds SUM(delta) of a product's events. As a 32-bit integer, a product whose
events add up past 2,147,483,647 could not be stored, and the reconcile runs that tried failed
for every product. SQLite integers are 64-bit already: nothing to do there.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005_stock_bigint'
down_revision: str | None = '0004_jobs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("products", "stock", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("products", "stock", type_=sa.Integer(), existing_nullable=False)
