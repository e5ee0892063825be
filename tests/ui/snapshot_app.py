"""The console on fixed demo data for snapshot tests (run by pytest-textual-snapshot):
seeded shop and outbox, a frozen clock, a slow refresh, no clock in any header."""

from __future__ import annotations

from seed import seed_depth_samples, seed_emails, seed_ledger, seed_shop
from snapshot_support import snapshot_app


def seed(engine, settings) -> None:
    seed_shop(engine, settings)
    seed_emails(engine, settings)
    seed_ledger(engine)
    seed_depth_samples(engine)


app = snapshot_app(seed)

if __name__ == "__main__":
    app.run()
