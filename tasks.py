"""The Huey instance `huey` and every task: `huey_consumer tasks.huey` runs them.

Each task is a thin call into kolaq_console; arguments are row ids and plain values, never
objects, so a retried or re-enqueued job reads the current state of the database.
"""

from __future__ import annotations

from kolaq_console import runtime
from kolaq_console.jobs import install_ledger
from kolaq_console.queue import make_huey, task_options

settings = runtime.settings()
huey = make_huey(settings)
# Failed, interrupted and in-flight jobs in the database. A task whose re-run is harmless
# (idempotent) is declared with `@rerun_safe` (kolaq_console.jobs) above `@huey.task(...)`:
# if its worker dies or stops mid-job it is re-enqueued instead of listed as interrupted.
ledger = install_ledger(huey, settings)


def _opts(queue: str, **kwargs: object) -> dict:
    return task_options(settings, queue, **kwargs)
