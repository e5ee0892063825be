"""Huey tasks as ledger rows and back: names, the redacted view of a call, the exact call.

A ledger row keeps a call twice: `args`/`kwargs` as people may see it (JSON, secrets redacted
when it was recorded, in the worker that knew the secret values), and `payload`, the call as
Huey's own signed message. A retry rebuilds the task from `payload`, so it re-enqueues exactly
that call, whatever the argument types; a payload altered in the database fails its signature
check and is refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import traceback as tb
import uuid
from decimal import Decimal
from typing import Any

from huey.api import Huey, Task
from huey.exceptions import HueyException

from kolaq_console.errors import UserError
from kolaq_console.payloads import REJECTED_TASK_NAME
from kolaq_console.redact import is_secret_name, redact, redact_value
from kolaq_console.taskqueue import queue_for_priority

MAX_ERROR_MESSAGE = 4_000
MAX_TRACEBACK = 20_000


def task_name(huey: Huey, task: Task) -> str:
    """The registry name Huey knows the task by, e.g. `tasks.send_email`."""
    return huey._registry.task_to_string(type(task))


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def logical_queue(task: Task) -> str:
    return queue_for_priority(task.priority)


def is_rerun_safe(task_or_wrapper: Any) -> bool:
    """Is this task (class, instance or `huey.task` wrapper) declared safe to run again?"""
    cls = getattr(task_or_wrapper, "task_class", task_or_wrapper)
    if not isinstance(cls, type):
        cls = type(cls)
    return bool(getattr(cls, "rerun_safe", False))


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-able picture of an argument (for people, never for re-running)."""
    if depth > 20:
        return "..."
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return json_safe(value.value, depth + 1)
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


def secret_values(task: Task) -> list[str]:
    """Values the task was given under secret-sounding names (api_key=..., token=...): masked
    wherever else they show up, e.g. echoed in the error message or a positional argument."""
    found = []
    for key, value in (task.kwargs or {}).items():
        if isinstance(value, str) and len(value) >= 4 and is_secret_name(str(key)):
            found.append(value)
    return found


def scrub(value: Any, extra: list[str]) -> Any:
    """`redact_value`, also masking the given values inside every string."""
    value = redact_value(value)
    if not extra:
        return value
    if isinstance(value, dict):
        return {k: scrub(v, extra) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, extra) for v in value]
    if isinstance(value, str):
        return redact(value, extra)
    return value


def display_call(task: Task) -> tuple[list[Any], dict[str, Any]]:
    """The task's arguments with secrets redacted: what the ledger shows and searches."""
    extra = secret_values(task)
    args = scrub(json_safe(list(task.args or ())), extra)
    kwargs = scrub(json_safe(dict(task.kwargs or {})), extra)
    return args, kwargs


def exact_call(huey: Huey, task: Task) -> bytes | None:
    """The task as Huey's signed message, or None if it cannot be serialised."""
    try:
        return huey.serialize_task(task)
    except Exception:
        return None


def error_fields(exc: BaseException, task: Task | None = None) -> dict[str, str]:
    extra = secret_values(task) if task is not None else []
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    message = redact(str(exc), extra)[:MAX_ERROR_MESSAGE]
    trace = "".join(tb.format_exception(cls, exc, exc.__traceback__))
    return {
        "error_type": name[:200],
        "error_message": message,
        "traceback": _clip(redact(trace, extra), MAX_TRACEBACK),
    }


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... ({len(text) - limit} characters cut) ...\n{text[-half:]}"


class CannotRetry(UserError):
    """A stored call cannot be re-enqueued (unknown task, altered or foreign payload)."""


def rebuild_task(huey: Huey, payload: bytes | None, name: str) -> Task:
    """A new job for exactly the stored call: a new id and a fresh retry budget.

    The task class is looked up in Huey's registry by name (it must still exist in tasks.py);
    arguments, priority (hence logical queue), timeout and any pipeline continuation are the
    stored ones.
    """
    if name == REJECTED_TASK_NAME:
        raise CannotRetry("a rejected payload is never kept (its content was not trusted), so "
                          "there is nothing to re-enqueue; discard it")
    if not payload:
        raise CannotRetry(f"{name}: no stored call to re-enqueue")
    if name not in huey._registry._registry:
        raise CannotRetry(f"{name}: no such task is registered (renamed or removed from tasks.py?)")
    try:
        original = huey.deserialize_task(payload)
    except HueyException as exc:
        raise CannotRetry(f"{name}: {exc}") from None
    except Exception:
        raise CannotRetry(
            f"{name}: the stored call does not verify with this KOLAQ_SIGNING_KEY "
            "(recorded under another key, or altered)"
        ) from None
    return fresh_copy(original)


def fresh_copy(task: Task) -> Task:
    """The same call as a new job: new id, the task's default retry budget and delays."""
    return type(task)(
        args=task.args,
        kwargs=task.kwargs,
        priority=task.priority,
        timeout=task.timeout,
        on_complete=task.on_complete,
        on_error=task.on_error,
    )


def failed_row(now: dt.datetime, **fields: Any) -> dict[str, Any]:
    """A complete failed_jobs row for a Core insert (Core does not apply model defaults)."""
    row: dict[str, Any] = {
        "args": [], "kwargs": {}, "payload": None, "status": "failed", "error_type": "",
        "error_message": "", "traceback": None, "attempts": 1, "first_attempt_at": None,
        "last_attempt_at": None, "worker_host": None, "worker_pid": None, "retried_as": None,
        "resolved_by": None, "resolved_at": None, "created_at": now,
    }
    row.update(fields)
    return row
