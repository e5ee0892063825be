"""Queue payloads a worker refuses (bad signature, undecodable), recorded instead of dropped.

Huey takes a payload off the queue, then deserialises it; on failure it logs a traceback and the
job is gone. Here the refusal becomes a `RejectedPayload` (queue when the storage knows it from
the priority, size, reason; never the content, which is untrusted) handed to the listeners of
the Huey instance: the job ledger records it where operators look (kolaq_console.jobs).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from huey.exceptions import HueyException
from huey.storage import PriorityRedisStorage, SqliteStorage

from kolaq_console.models import utcnow

log = logging.getLogger(__name__)

REJECTED_TASK_NAME = "(rejected payload)"
REJECTED_ERROR_TYPE = "RejectedPayload"
_SIGNATURE = re.compile(rb":[0-9a-f]{40}\Z")  # Huey's SignedSerializer: payload:hex(HMAC-SHA1)


@dataclass(frozen=True)
class RejectedPayload:
    reason: str
    size: int
    priority: float | None = None  # known for the queue, not for the schedule
    at: datetime = field(default_factory=utcnow)


def rejection_reason(data: bytes, exc: BaseException) -> str:
    """Why a payload was refused, in words an operator can act on; nothing of its content."""
    if isinstance(exc, HueyException):  # signed with our key, but names an unknown task
        return f"signed correctly but not runnable here: {exc} (a newer or older tasks.py?)"
    failed_check = isinstance(exc, ValueError) and str(exc).startswith(("Signature", "Separator"))
    if failed_check and _SIGNATURE.search(data):
        return ("signed with a different KOLAQ_SIGNING_KEY (the process that enqueued it "
                "has another key than this worker), or forged")
    if failed_check:
        return "not signed: forged, or written by something other than kolaq-console"
    return f"signed correctly but could not be decoded ({type(exc).__name__})"


class _ItemsWithPriority:
    """Storage mixin: `dequeue_item()` is `dequeue()` that also says the item's priority."""

    def dequeue(self) -> bytes | None:
        item = self.dequeue_item()
        return None if item is None else item[0]

    def dequeue_item(self) -> tuple[bytes, float | None] | None:
        raise NotImplementedError


class KolaqSqliteStorage(_ItemsWithPriority, SqliteStorage):
    def dequeue_item(self) -> tuple[bytes, float | None] | None:
        # SqliteStorage.dequeue, with the priority read too.
        if not self.sql("select 1 from task where queue = ? limit 1", (self.name,),
                        results=True):
            return None
        with self.db(commit=True) as curs:
            curs.execute("select id, data, priority from task where queue = ? "
                         "order by priority desc, id limit 1", (self.name,))
            row = curs.fetchone()
            if row is not None:
                tid, data, priority = row
                curs.execute("delete from task where id = ?", (tid,))
                if curs.rowcount == 1:
                    return bytes(data), priority
        return None


class KolaqRedisStorage(_ItemsWithPriority, PriorityRedisStorage):
    def dequeue_item(self) -> tuple[bytes, float | None] | None:
        # RedisPriorityQueue.dequeue, keeping the score (the negated priority).
        if self.blocking:
            try:
                _, member, score = self.conn.bzpopmin(self.queue_key, timeout=self.read_timeout)
            except (TimeoutError, TypeError, IndexError):
                return None  # empty; a ConnectionError propagates (the worker backs off)
        else:
            items = self.conn.zpopmin(self.queue_key, count=1)
            if not items:
                return None
            [(member, score)] = items
        return member[8:], -score  # members carry an 8-byte time prefix


class VerifyingHueyMixin:
    """Huey whose refused payloads are reported to listeners instead of only logged."""

    def on_rejected(self, listener: Callable[[RejectedPayload], Any]) -> None:
        listeners = self.__dict__.setdefault("_rejection_listeners", [])
        listeners.append(listener)

    def reject(self, data: bytes, exc: BaseException, priority: float | None) -> None:
        rejected = RejectedPayload(rejection_reason(data, exc), len(data), priority)
        log.warning("refused a queue payload of %d bytes: %s", rejected.size, rejected.reason)
        for listener in self.__dict__.get("_rejection_listeners", ()):
            try:
                listener(rejected)
            except Exception:
                log.exception("recording a refused queue payload failed")

    def dequeue(self) -> Any:
        storage: Any = self.storage  # type: ignore[attr-defined]
        item = storage.dequeue_item() if hasattr(storage, "dequeue_item") else (
            storage.dequeue(), None)
        if item is None or item[0] is None:
            return None
        data, priority = item
        try:
            return self.deserialize_task(data)  # type: ignore[attr-defined]
        except Exception as exc:
            self.reject(data, exc, priority)
            return None

    def _deserialize_all(self, messages: list[bytes]) -> list[Any]:
        """The schedule's due items (retries, delayed jobs): each refused one is reported."""
        tasks = []
        for data in messages:
            try:
                tasks.append(self.deserialize_task(data))  # type: ignore[attr-defined]
            except Exception as exc:
                self.reject(data, exc, None)
        return tasks
