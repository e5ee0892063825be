"""lookup: expression indexes so the console's and the CLI's lookup is index-backed

Revision ID: 0011_lookup_indexes
Revises: 0010_broadcast_recipients
Create Date: 2026-12-01 02:30:00

Prefix searches (as you type) compare lower(column) with a range; on PostgreSQL the range is
taken in the "C" collation (byte order), so the index is built in it too. Equality lookups
(an address's emails) use plain lower(column). The failed-job ledger is searched by the first
argument of the stored call (an outbox row id, a webhook event id, a SKU).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_lookup_indexes'
down_revision: str | None = '0010_broadcast_recipients'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, column) searched by prefix
PREFIX = [
    ('ix_orders_number_prefix', 'orders', 'number'),
    ('ix_customers_email_prefix', 'customers', 'email'),
    ('ix_customers_name_prefix', 'customers', 'name'),
    ('ix_products_sku_prefix', 'products', 'sku'),
    ('ix_products_name_prefix', 'products', 'name'),
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    for name, table, column in PREFIX:
        if name == 'ix_customers_email_prefix' and not postgres:
            continue  # SQLite: ix_customers_email_lower (binary order) serves the range
        expr = f'(lower({column}) COLLATE "C")' if postgres else f'lower({column})'
        op.create_index(name, table, [sa.text(expr)])
    op.create_index('ix_email_outbox_to_lower', 'email_outbox', [sa.text('lower(to_address)')])
    first_arg = "(args ->> 0)" if postgres else "json_extract(args, '$[0]')"
    op.create_index('ix_failed_jobs_first_arg', 'failed_jobs', [sa.text(first_arg)])


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.drop_index('ix_failed_jobs_first_arg', table_name='failed_jobs')
    op.drop_index('ix_email_outbox_to_lower', table_name='email_outbox')
    for name, table, _column in reversed(PREFIX):
        if name == 'ix_customers_email_prefix' and not postgres:
            continue
        op.drop_index(name, table_name=table)
