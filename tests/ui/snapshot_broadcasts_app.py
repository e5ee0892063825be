"""The console on fixed broadcast data for snapshot tests: the demo shop, one broadcast done,
one sending (60 of 120 sent over the last minute), a draft; a frozen clock."""

from __future__ import annotations

from seed import seed_broadcasts, seed_shop
from snapshot_support import snapshot_app


def seed(engine, settings) -> None:
    seed_shop(engine, settings)
    seed_broadcasts(engine, settings)


app = snapshot_app(seed)

if __name__ == "__main__":
    app.run()
