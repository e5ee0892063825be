"""The console on fixed demo data for snapshot tests (run by pytest-textual-snapshot):
seeded shop and outbox, a frozen clock, a slow refresh, no clock in any header."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from seed import clock, seed_depth_samples, seed_emails, seed_ledger, seed_shop

from kolaq_console.config import load_settings
from kolaq_console.db import make_engine
from kolaq_console.schema import upgrade
from kolaq_console.taskqueue import make_huey
from kolaq_console.ui.app import make_app

folder = Path(tempfile.mkdtemp(prefix="kolaq-snap-"))
env = {
    **os.environ,
    "KOLAQ_DATABASE__URL": f"sqlite:///{folder / 'kolaq.db'}",
    "KOLAQ_QUEUE__SQLITE_PATH": str(folder / "queue.db"),
    "KOLAQ_QUEUE__NAME": "kolaq-snapshot",
    "KOLAQ_CONSOLE__REFRESH_SECONDS": "60",
    "KOLAQ_JOBS__LEASE_SECONDS": "120",
}
settings = load_settings(environ=env)
engine = make_engine(settings.database.url)
upgrade(engine)
seed_shop(engine, settings)
seed_emails(engine, settings)
seed_ledger(engine)
seed_depth_samples(engine)
engine.dispose()

app = make_app(settings, huey=make_huey(settings), clock=clock)

if __name__ == "__main__":
    app.run()
