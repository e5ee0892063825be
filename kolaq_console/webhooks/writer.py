"""Group commit for the receiver: events verified by concurrent requests are stored together.

Each request hands its verified event to the writer and waits. The writer takes whatever is
waiting (up to `max_batch`), stores it with one INSERT and one commit in a worker thread,
enqueues one processing job for the new events, then answers every request of the batch. Under
light load a batch is one event and nothing waits for a timer; under heavy load the commit and
the enqueue, the expensive parts, are shared. The 2xx follows the commit; if the enqueue fails
(queue down) or the process dies before it, the sweeper enqueues after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from kolaq_console.webhooks import inbox
from kolaq_console.webhooks.verify import Event

log = logging.getLogger("kolaq_console.webhooks")


class InboxWriter:
    def __init__(self, engine: Engine, lease_seconds: float, max_batch: int = 200):
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Event, asyncio.Future[inbox.Stored]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def store(self, event: Event) -> inbox.Stored:
        """Stored and committed (or the storage error is raised here)."""
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="kolaq-inbox-writer")
        assert self._queue is not None
        done: asyncio.Future[inbox.Stored] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, done))
        return await done

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = [e for e, _ in batch]
            try:
                stored = await run_in_threadpool(self._store_and_enqueue, events)
            except Exception as exc:
                log.error("could not store %d webhook event(s): %s", len(batch), exc)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, stored, strict=True):
                if not done.done():
                    done.set_result(result)

    def _store_and_enqueue(self, events: list[Event]) -> list[inbox.Stored]:
        """One trip to a worker thread per batch: commit, then one job for the new events."""
        stored = inbox.store_many(self.engine, events, self.lease_seconds)
        new = [s.id for s in stored if s.created]
        if new:
            inbox.enqueue_or_leave(*new)
        return stored

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
