"""Start the Textual console."""

from __future__ import annotations

from kolaq_console.cli.common import huey, ready_engine
from kolaq_console.db import StorageUnavailable
from kolaq_console.status import reading_queue


def run_console(with_worker: bool, read_only: bool) -> None:
    from kolaq_console import runtime

    ready_engine()
    from kolaq_console.ui.app import make_app

    settings = runtime.settings()
    queue, problem = None, None
    if read_only:  # reads the queue, never creates it (importing tasks.py would)
        try:
            queue = reading_queue(settings)
        except StorageUnavailable as exc:
            problem = str(exc)
    else:
        queue = huey()
        if with_worker:
            queue.check_ready()  # an embedded worker that could not send refuses here, in one line
    make_app(settings, with_worker=with_worker, read_only=read_only, huey=queue,
             queue_problem=problem).run()
