"""Tasks for job-ledger tests, run by real consumers: `huey_consumer jobs_tasks.huey`.

`register(huey, settings)` defines them on any Huey instance, so a test can enqueue through
its own instance with the very names the consumer knows (`jobs_tasks.<function>`).
Each run appends a line to $KOLAQ_TEST_RUNS/<marker>, which tests read to see what ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

from kolaq_console import runtime
from kolaq_console.errors import PermanentJobError
from kolaq_console.jobs import install_ledger, rerun_safe
from kolaq_console.taskqueue import make_huey, task_options


def runs_dir() -> Path:
    return Path(os.environ["KOLAQ_TEST_RUNS"])


def note_run(marker: str) -> int:
    """Append one line for this run; returns how many runs (this one included)."""
    path = runs_dir() / marker
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


def runs(marker: str) -> int:
    path = runs_dir() / marker
    return len(path.read_text().splitlines()) if path.exists() else 0


def register(huey, settings) -> SimpleNamespace:
    def opts(queue: str, **kwargs) -> dict:
        return task_options(settings, queue, **kwargs)

    @huey.task(**opts("inventory"))
    def sleepy(marker: str, seconds: float) -> None:
        """Long on its first run only, so a re-run finishes quickly."""
        if note_run(marker) == 1:
            time.sleep(seconds)

    @huey.task(**opts("inventory"))
    def gated(marker: str) -> None:
        """Runs until the test creates the file <marker>.go (at most 30 s)."""
        note_run(marker)
        gate = runs_dir() / f"{marker}.go"
        deadline = time.monotonic() + 30
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    @rerun_safe
    @huey.task(**opts("emails"))
    def safe_sleepy(marker: str, seconds: float) -> None:
        if note_run(marker) == 1:
            time.sleep(seconds)

    @huey.task(**opts("webhooks"))
    def fail_until(marker: str, failures: int, secret: str | None = None,
                   api_key: str | None = None, note: str | None = None) -> str:
        """Fails its first `failures` runs (all its executions count, retries included)."""
        n = note_run(marker)
        if n <= failures:
            raise ValueError(f"run {n} of {marker} failed on purpose (key {api_key})")
        return "ok"

    @huey.task(**opts("emails"))
    def permanent(marker: str) -> None:
        note_run(marker)
        raise PermanentJobError(f"{marker}: the provider refused the address")

    @huey.task(**opts("inventory"))
    def noop(marker: str | None = None) -> None:
        if marker:
            note_run(marker)

    return SimpleNamespace(sleepy=sleepy, gated=gated, safe_sleepy=safe_sleepy,
                           fail_until=fail_until, permanent=permanent, noop=noop)


settings = runtime.settings()
huey = make_huey(settings)
tasks = register(huey, settings)
ledger = install_ledger(huey, settings)
