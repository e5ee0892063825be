"""What every subcommand shares: output, JSON, and ready-to-use storage.

Light at import (see the package docstring): rich, the settings and storage are imported
when a command first uses them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from huey.api import Huey
    from rich.console import Console
    from sqlalchemy.engine import Engine


class LazyConsole:
    """A rich Console made on first use: `out.print(...)` as usual, but importing rich (tens
    of milliseconds) is left to the commands that print."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)

    def __enter__(self) -> Console:  # rich's Live uses its console as a context manager
        return self.console.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.console.__exit__(*exc)


out = LazyConsole(highlight=False, soft_wrap=True)
err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """One JSON document on stdout, nothing else (for scripts)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")


SECONDS = "%Y-%m-%d %H:%M:%S"  # `shop_time` to the second (jobs, webhooks)


def shop_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (UTC) time on the shop's clock, as the console shows it; '-' for none."""
    if moment is None:
        return "-"
    from datetime import UTC

    from kolaq_console import runtime

    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(runtime.settings().shop.zone).strftime(fmt)


def ready_engine() -> Engine:
    """The database engine, refusing to go on with an unreachable or out-of-date schema."""
    from kolaq_console import runtime
    from kolaq_console.schema import require_current

    engine = runtime.engine()
    require_current(engine)
    return engine


def huey() -> Huey:
    """The configured queue with every task: imports tasks.py (late, so --config applies
    first), which wires it for every enqueue in this process. For commands that enqueue or run
    tasks; a command that only reads the queue uses `status.reading_queue`. A configuration it
    cannot be built from (no KOLAQ_SIGNING_KEY for Redis, ...) is a one-line ConfigError,
    before anything is written."""
    from kolaq_console import dispatch, runtime
    from kolaq_console.signing import queue_signing_key

    queue_signing_key(runtime.settings())
    import tasks  # noqa: F401  (installs the queue in kolaq_console.dispatch)

    return dispatch.huey()

