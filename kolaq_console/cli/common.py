"""What every subcommand shares: output, JSON, and ready-to-use storage."""

from __future__ import annotations

import json
import sys
from typing import Any

from huey.api import Huey
from rich.console import Console
from sqlalchemy.engine import Engine

from kolaq_console import dispatch, runtime
from kolaq_console.schema import require_current
from kolaq_console.signing import queue_signing_key

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else (for scripts)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")


def ready_engine() -> Engine:
    """The database engine, refusing to go on with an unreachable or out-of-date schema."""
    engine = runtime.engine()
    require_current(engine)
    return engine


def huey() -> Huey:
    """The configured queue: imports tasks.py (late, so --config applies first), which wires
    it for every enqueue in this process. A configuration it cannot be built from (no
    KOLAQ_SIGNING_KEY for Redis, ...) is a one-line ConfigError, before anything is written."""
    queue_signing_key(runtime.settings())
    import tasks  # noqa: F401  (installs the queue in kolaq_console.dispatch)

    return dispatch.huey()
