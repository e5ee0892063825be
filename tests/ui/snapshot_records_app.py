"""The console on the snapshot data plus seed_incidents, for the record screens' snapshots
(a separate app so the other screens' snapshots keep their data)."""

from __future__ import annotations

from seed import seed_emails, seed_incidents, seed_ledger, seed_shop
from snapshot_support import snapshot_app


def seed(engine, settings) -> None:
    seed_shop(engine, settings)
    seed_emails(engine, settings)
    seed_ledger(engine)
    seed_incidents(engine)


app = snapshot_app(seed)

if __name__ == "__main__":
    app.run()
