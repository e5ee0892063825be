"""The one road from domain code onto the task queue.

tasks.py, the only wiring, installs its Huey instance and tasks here when it is imported.
Domain code enqueues by task name (`dispatch.enqueue("send_email", row_id)`) and so never
imports tasks.py: no import loop, and tests can put a recorder in its place (`recording()`).
A process that enqueues without having imported tasks.py gets a clear error, not a silent
drop: the CLI, the console and the webhook server import it before they enqueue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kolaq_console.errors import KolaqError

if TYPE_CHECKING:
    from huey.api import Huey, TaskWrapper


class NotWired(KolaqError):
    """Nothing was installed: the process never imported tasks.py."""


@dataclass(frozen=True)
class Call:
    """One enqueued call, as a recorder sees it."""

    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    delay: float | None = None


Enqueuer = Callable[[Call], None]

_huey: Huey | None = None
_tasks: dict[str, TaskWrapper] = {}
_override: Enqueuer | None = None


def install(huey: Huey, **tasks: TaskWrapper) -> None:
    """Make `huey` and these tasks the process's queue (tasks.py calls this once)."""
    global _huey
    _huey = huey
    _tasks.clear()
    _tasks.update(tasks)


def installed() -> bool:
    return _huey is not None


def huey() -> Huey:
    """The installed Huey instance (the ledger's retries and the console's worker use it)."""
    if _huey is None:
        raise NotWired("no task queue is wired in this process: import tasks first")
    return _huey


def enqueue(task: str, *args: Any, delay: float | None = None, **kwargs: Any) -> None:
    """Put a call of `task` (a name tasks.py installed) on the queue, after `delay` seconds."""
    call = Call(task, args, kwargs, delay)
    if _override is not None:
        _override(call)
        return
    huey()  # raises NotWired with the reason
    wrapper = _tasks.get(task)
    if wrapper is None:
        raise NotWired(f"task {task!r} is not installed; tasks.py installs: "
                       f"{', '.join(sorted(_tasks)) or 'none'}")
    if delay:
        wrapper.schedule(args=args, kwargs=kwargs or None, delay=delay)
    else:
        wrapper(*args, **kwargs)


@contextmanager
def recording(enqueuer: Enqueuer | None = None) -> Iterator[list[Call]]:
    """Tests: calls go to `enqueuer` (default: only recorded) instead of the queue."""
    global _override
    calls: list[Call] = []

    def record(call: Call) -> None:
        calls.append(call)
        if enqueuer is not None:
            enqueuer(call)

    previous, _override = _override, record
    try:
        yield calls
    finally:
        _override = previous
