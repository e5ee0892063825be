"""The Huey instance `huey` and every task: `huey_consumer tasks.huey` runs them.

Each task is a thin call into kolaq_console; arguments are row ids and plain values, never
objects, so a retried or re-enqueued job reads the current state of the database.
"""

from __future__ import annotations

from kolaq_console import runtime
from kolaq_console.queue import make_huey, task_options

settings = runtime.settings()
huey = make_huey(settings)


def _opts(queue: str, **kwargs: object) -> dict:
    return task_options(settings, queue, **kwargs)
