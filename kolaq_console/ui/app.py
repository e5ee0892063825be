"""The console app: an overview of queues, failures, outbox, stock and storage health."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from huey.api import Huey
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from kolaq_console.config import Settings
from kolaq_console.db import engine_for
from kolaq_console.status import Status, collect
from kolaq_console.ui.embedded_worker import EmbeddedWorker


class StatusCollected(Message):
    def __init__(self, status: Status) -> None:
        super().__init__()
        self.status = status


@dataclass
class AppOptions:
    read_only: bool = False
    with_worker: bool = False


class KolaqConsole(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "kolaq-console"
    BINDINGS = [
        Binding("r", "refresh_now", "Refresh"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("w", "toggle_worker", "Worker"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, settings: Settings, huey: Huey, options: AppOptions) -> None:
        super().__init__()
        self.settings = settings
        self.huey = huey
        self.options = options
        self.engine = engine_for(settings.database.url)
        self.worker = EmbeddedWorker(huey, settings.queue.workers)
        self.paused = False
        self.sub_title = settings.shop.name + ("  (read-only)" if options.read_only else "")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="overview"):
            with Horizontal(id="top"):
                yield DataTable(id="queues", cursor_type="row", zebra_stripes=True)
                yield Static(id="summary")
            yield Static("Low stock", classes="title")
            yield DataTable(id="low-stock", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        queues = self.query_one("#queues", DataTable)
        queues.add_columns("queue", "pending", "scheduled", "in flight")
        self.query_one("#low-stock", DataTable).add_columns("SKU", "product", "stock", "threshold")
        if self.options.with_worker:
            self.action_toggle_worker()
        self.poll()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def poll(self) -> None:
        self.post_message(StatusCollected(collect(self.settings, self.engine, self.huey)))

    @on(StatusCollected)
    def show_status(self, event: StatusCollected) -> None:
        s = event.status
        with self.batch_update():
            queues = self.query_one("#queues", DataTable)
            queues.clear()
            for name, d in s.queues.items():
                queues.add_row(name, str(d.pending), str(d.scheduled), str(d.in_flight))
            worker = "running" if self.worker.running else "stopped"
            db, q = s.storage["database"], s.storage["queue"]
            self.query_one("#summary", Static).update(
                f"Failed jobs   {s.failed_jobs}\n"
                f"Outbox        {s.outbox['queued']} queued · {s.outbox['sent']} sent · "
                f"{s.outbox['failed']} failed\n"
                f"Low stock     {len(s.low_stock)} products\n"
                f"Worker        {worker} (embedded)\n"
                f"Database      {db}\nQueue         {q}"
            )
            low = self.query_one("#low-stock", DataTable)
            low.clear()
            for p in s.low_stock:
                low.add_row(p["sku"], p["name"], str(p["stock"]), str(p["threshold"]))
        # Reschedule only after this poll finished, so polls never pile up.
        if not self.paused:
            self.set_timer(self.settings.console.refresh_seconds, self.poll)

    def action_refresh_now(self) -> None:
        self.poll()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("Refresh paused" if self.paused else "Refresh resumed")
        if not self.paused:
            self.poll()

    def action_toggle_worker(self) -> None:
        if self.options.read_only:
            self.notify("Read-only console: the worker cannot be started", severity="warning")
            return
        self._switch_worker(not self.worker.running)

    @work(thread=True, exclusive=True, group="worker", exit_on_error=False)
    def _switch_worker(self, start: bool) -> None:
        if start:
            self.worker.start()
        else:
            self.worker.stop()
        self.call_from_thread(self.notify, "Worker started" if start else "Worker stopped")
        self.call_from_thread(self.poll)

    async def action_quit(self) -> None:
        if self.worker.running:
            self.notify("Stopping the worker: running jobs finish first…")
            await asyncio.to_thread(self.worker.stop)
        self.exit()


def make_app(
    settings: Settings,
    *,
    with_worker: bool = False,
    read_only: bool = False,
    huey: Huey | None = None,
) -> KolaqConsole:
    """The app factory used by the CLI and the tests."""
    if huey is None:
        import tasks

        huey = tasks.huey
    return KolaqConsole(settings, huey, AppOptions(read_only=read_only, with_worker=with_worker))
