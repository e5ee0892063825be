"""Tasks for queue tests, run by real `huey_consumer queue_tasks.huey` processes."""

from __future__ import annotations

import time
from pathlib import Path

from kolaq_console import runtime
from kolaq_console.taskqueue import make_huey, task_options

settings = runtime.settings()
huey = make_huey(settings)


def _append(path: str, line: str) -> None:
    with Path(path).open("a") as fh:
        fh.write(line + "\n")


@huey.task(**task_options(settings, "emails"))
def record(path: str, value: str) -> None:
    _append(path, value)


@huey.task(**task_options(settings, "inventory"))
def flaky(path: str, failures: int) -> None:
    """Fails `failures` times, then succeeds; logs the time of every attempt."""
    _append(path, repr(time.monotonic()))
    attempts = len(Path(path).read_text().splitlines())
    if attempts <= failures:
        raise RuntimeError(f"attempt {attempts} fails on purpose")


@huey.task(**task_options(settings, "webhooks"))
def webhook_noop() -> None:
    pass
