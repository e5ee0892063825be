"""A Huey consumer running inside the console process, started and stopped by the operator."""

from __future__ import annotations

import threading

from huey.api import Huey
from huey.consumer import Consumer

from kolaq_console.consumer import KolaqConsumer


class _QuietConsumer(KolaqConsumer):
    """Signals belong to the console (Textual), not to the consumer."""

    def _set_signal_handlers(self) -> None:
        pass


class EmbeddedWorker:
    def __init__(self, huey: Huey, workers: int) -> None:
        self._huey = huey
        self._workers = workers
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._consumer is not None

    def start(self) -> None:
        with self._lock:
            if self._consumer is not None:
                return
            # The settings mixin of our Huey classes fills polling and shutdown options.
            consumer = self._huey.create_consumer(workers=self._workers,
                                                  kolaq_explicit=("workers",))
            consumer.__class__ = _QuietConsumer
            consumer.start()
            self._consumer = consumer

    def stop(self) -> None:
        """Blocks until running jobs finish (up to the shutdown timeout); call from a thread."""
        with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.stop(graceful=True)
            self._huey.notify_interrupted_tasks()
