"""1 Overview: queue depths, what needs attention (failures, low stock, outbox, a store that is
down and why), the last hour per queue as charts, workers; refreshed live. Database, queue
and worker health is the health line every screen shows (widgets/health_line.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.markup import escape
from textual.widgets import DataTable, Static

from kolaq_console.ui.data import Overview, collect_overview
from kolaq_console.ui.format import ago
from kolaq_console.ui.messages import OverviewCollected
from kolaq_console.ui.screens.base import POLL, LiveScreen
from kolaq_console.ui.widgets.charts import LastHourCharts

NO_WORKERS = ("No worker has reported yet. Start one with `kolaq-console worker`,\n"
              "or press w to run the embedded worker in this console.")
UNREADABLE = ("[b $warning]Workers and activity unknown[/]: the database cannot be read.\n"
              "Figures marked [$warning]~[/] are the last known{since}; "
              "[b $warning]?[/] were never read.")


def figure(value: int | None, last: int | None, width: int = 0) -> str:
    """A number as markup: itself when known; when it could not be read, the last known value
    marked stale (~), or ? if it was never read. Never a 0 that nobody counted."""
    if value is not None:
        return f"{value:>{width}}"
    if last is not None:
        return f"[$warning]{'~' + str(last):>{width}}[/]"
    return f"[b $warning]{'?':>{width}}[/]"


def _panel(widget_id: str, title: str) -> Vertical:
    box = Vertical(id=widget_id, classes="panel")
    box.border_title = title
    return box


class OverviewScreen(LiveScreen):
    MODE = "overview"
    TITLE_TEXT = "Overview"
    BINDINGS = [
        Binding("w", "app.toggle_worker", "Worker on/off"),
        Binding("p", "app.toggle_pause", "Pause"),
        Binding("ctrl+r", "refresh", "Refresh"),  # `r` means retry on every other screen
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        with Horizontal(id="ov-top"):
            with _panel("ov-queues", "Queues"):
                yield DataTable(id="queues", cursor_type="none", zebra_stripes=True)
            with _panel("ov-attention-box", "Needs attention"):
                yield Static(id="ov-attention")
        with _panel("ov-activity", "Last hour"):
            yield LastHourCharts(id="ov-charts")
        with _panel("ov-workers", "Workers"):
            yield DataTable(id="workers", cursor_type="none", zebra_stripes=True)
            yield Static(NO_WORKERS, id="workers-empty")
        yield from self.compose_chrome_bottom()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Last value read of each figure, shown (marked stale) while it cannot be read.
        self.known: dict[str, Any] = {}
        self.known_at: datetime | None = None

    def on_mount(self) -> None:
        # Fixed widths: columns do not jump as numbers grow (and snapshots do not depend on
        # when the table measured its content).
        queues = self.query_one("#queues", DataTable)
        queues.add_column("queue", width=9)
        for label in ("pending", "scheduled", "in flight"):
            queues.add_column(label.rjust(9), width=9)
        workers = self.query_one("#workers", DataTable)
        for label, width in (("worker", 24), ("state", 5), ("threads", 7), ("heartbeat", 9),
                             ("running", 7), ("periodic", 8)):
            workers.add_column(label, width=width)

    def action_refresh(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group=POLL,
          description="Overview")
    def load(self) -> None:
        app = self.console
        self.deliver(OverviewCollected(
            collect_overview(app.settings, app.engine, app.huey, app.clock(),
                             queue_problem=app.queue_problem)))

    @on(OverviewCollected)
    def show_overview(self, event: OverviewCollected) -> None:
        if not self.accepts():
            return
        data: Overview = event.data
        s = data.status
        last = dict(self.known)
        self._remember(data)
        with self.app.batch_update():
            queues = self.query_one("#queues", DataTable)
            queues.clear()
            for name, d in s.queues.items():
                values = (getattr(d, k) for k in ("pending", "scheduled", "in_flight"))
                queues.add_row(name, *(
                    f"{v:>9}" if v is not None
                    else Content.from_markup(figure(v, last.get(f"{name}.{k}"), 9))
                    for k, v in zip(("pending", "scheduled", "in_flight"), values, strict=True)))
            self.query_one("#ov-activity").border_title = Content.from_markup(
                "Last hour · " + self._rates(data, last))
            self.query_one("#ov-charts", LastHourCharts).show(data.charts)
            self.query_one("#ov-attention", Static).update(self._attention(data, last))
            workers = self.query_one("#workers", DataTable)
            empty = self.query_one("#workers-empty", Static)
            workers.display = bool(data.workers)
            empty.display = not data.workers
            if data.activity_known:
                empty.update(NO_WORKERS)
            else:
                since = f" (read {ago(self.known_at, data.now)} ago)" if self.known_at else ""
                empty.update(UNREADABLE.format(since=since))
            workers.clear()
            for w in data.workers:
                state = (Content.from_markup("[b $error]dead[/]") if w["state"] == "dead"
                         else w["state"])
                workers.add_row(Text(w["name"]), state, str(w["threads"]),
                                ago(w["heartbeat_at"], data.now) + " ago", str(w["running"]),
                                "yes" if w["periodic"] else "")

    def _remember(self, data: Overview) -> None:
        """Keep every figure that was read this time as the last known one."""
        s = data.status
        for name, d in s.queues.items():
            for k in ("pending", "scheduled", "in_flight"):
                if getattr(d, k) is not None:
                    self.known[f"{name}.{k}"] = getattr(d, k)
        if s.failed_jobs is not None:
            self.known["failed_jobs"] = s.failed_jobs
        if s.low_stock is not None:
            self.known["low_stock"] = len(s.low_stock)
        if s.outbox is not None:
            self.known.update({f"outbox.{k}": v for k, v in s.outbox.items()})
        if data.activity_known:
            self.known.update(completed=data.total_completed, failed=data.total_failed,
                              retried=data.total_retried,
                              live=sum(1 for w in data.workers if w["state"] == "live"),
                              dead=sum(1 for w in data.workers if w["state"] == "dead"))
            self.known_at = data.now

    def _rates(self, data: Overview, last: dict[str, Any]) -> str:
        if not data.activity_known:
            return (f"done {figure(None, last.get('completed'))} · "
                    f"failed {figure(None, last.get('failed'))} · "
                    f"retry {figure(None, last.get('retried'))}"
                    " · errors [b $warning]?[/] · [b $warning]?[/] jobs/min")
        rate = data.error_rate
        shown = "-" if rate is None else f"{rate:.1%}"
        per_min = data.total_completed / data.minutes if data.minutes else 0
        failed = (f"[b $error]{data.total_failed}[/]" if data.total_failed
                  else str(data.total_failed))
        return (f"done {data.total_completed} · failed {failed} · retry {data.total_retried}"
                f" · errors {shown} · {per_min:.1f} jobs/min")

    def _attention(self, data: Overview, last: dict[str, Any]) -> str:
        s = data.status
        if s.failed_jobs is None:
            failed = figure(None, last.get("failed_jobs"))
        else:
            failed = f"[b $error]{s.failed_jobs}[/]" if s.failed_jobs else "0"
        if s.low_stock is None:
            low, products = figure(None, last.get("low_stock")), "products"
        else:
            low = f"[b $warning]{len(s.low_stock)}[/]" if s.low_stock else "0"
            products = "product" if len(s.low_stock) == 1 else "products"
        out = s.outbox
        if out is None:
            queued, out_failed = (figure(None, last.get(f"outbox.{k}"))
                                  for k in ("queued", "failed"))
        else:
            queued = out["queued"]
            out_failed = f"[b $error]{out['failed']}[/]" if out["failed"] else "0"
        rejected = (f" · [b $error]{s.rejected_payloads} payload"
                    f"{'' if s.rejected_payloads == 1 else 's'} rejected[/]"
                    if s.rejected_payloads else "")
        down = "".join(f"\n[b $error]{name.capitalize()} down[/] {escape(why)}"
                       for name, why in s.storage.items() if why != "ok")
        return (
            f"Failed jobs {failed} open{rejected}\n"
            f"Low stock   {low} {products}\n"
            f"Outbox      {queued} queued\n"
            f"            {out_failed} failed"  # sent needs no attention (it is on 4 Emails)
            + down
        )
