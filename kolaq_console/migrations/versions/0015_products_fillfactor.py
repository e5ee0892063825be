"""products: fillfactor 85 on PostgreSQL, so stock updates are HOT (no index writes)

Revision ID: 0015_products_fillfactor
Revises: 0014_broadcast_rendering
Create Date: 2026-12-01 06:00:00

A reconciliation rewrites the stock of every product that has new events (about 950 of 10,000
for 1,000 events). With the default fillfactor (100) a page has no room for the new version of
a row, so each such UPDATE is a non-HOT update: a new tuple on another page plus an entry in
each of the table's five indexes. With 15 % of every page left free the new version stays on
its page and no index is touched (none of the updated columns is indexed): bench/README.md
measured the UPDATE's server CPU at about half. PostgreSQL applies a fillfactor only to pages
it fills from now on, so the table is rewritten once (CLUSTER on its primary key, which runs
inside the migration's transaction, unlike VACUUM FULL; it holds an ACCESS EXCLUSIVE lock on
products for the seconds it takes, and the table is then unmarked as clustered). SQLite has
no fillfactor: nothing to do there.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0015_products_fillfactor'
down_revision: str | None = '0014_broadcast_rendering'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE products SET (fillfactor = 85)")
    op.execute("CLUSTER products USING products_pkey")
    op.execute("ALTER TABLE products SET WITHOUT CLUSTER")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE products RESET (fillfactor)")
