"""What every snapshot app shares: a fresh SQLite database and queue in a temporary folder,
a slow refresh, the schema, the given seed and the console on the seed's frozen clock."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from seed import clock
from sqlalchemy.engine import Engine
from textual.app import App

from kolaq_console.config import Settings, load_settings
from kolaq_console.db import make_engine
from kolaq_console.schema import upgrade
from kolaq_console.taskqueue import make_huey
from kolaq_console.ui.app import make_app


def snapshot_app(seed: Callable[[Engine, Settings], None]) -> App:
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
    seed(engine, settings)
    engine.dispose()
    app = make_app(settings, huey=make_huey(settings), clock=clock)
    # Toasts stay until the picture is taken: on a loaded machine one that expired mid-test
    # (`o` says "Sorted by ..." for 2 s) made the snapshot depend on timing.
    notify = app.notify
    app.notify = lambda *args, timeout=None, **kwargs: notify(  # type: ignore[method-assign]
        *args, timeout=3600, **kwargs)
    return app
