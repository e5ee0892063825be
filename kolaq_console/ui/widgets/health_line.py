"""The health line at the bottom of every screen, and the one app-level poll that feeds it.

`HealthMonitor` (one per app) reads `kolaq_console.health` in a thread worker every
`[console] refresh_seconds` and publishes each reading on a Textual Signal; every screen's
`HealthLine` shows the latest one. An outage reads "db unknown · stale since 17:02", never
zeros, and the next good reading clears it by itself. It keeps reading while the screens'
refresh is paused (`p`): a frozen screen must not hide an outage.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from textual.markup import escape
from textual.signal import Signal
from textual.widgets import Static
from textual.worker import WorkerState

from kolaq_console.health import Figure, Health, HealthTracker

if TYPE_CHECKING:
    from kolaq_console.ui.app import KolaqConsole

GROUP = "health"
SEP = " [dim]│[/] "


class HealthMonitor:
    """The app's single health poll; `latest` is the last reading (None before the first)."""

    def __init__(self, app: KolaqConsole) -> None:
        self.app = app
        self.tracker = HealthTracker()
        self.latest: Health | None = None
        self.changed: Signal[Health] = Signal(app, "health")

    def start(self) -> None:
        self.app.set_interval(self.app.settings.console.refresh_seconds, self.poll,
                              name="health")
        self.poll()

    def poll(self) -> None:
        """Read again unless a read is still running (a slow outage must not pile up)."""
        if any(w.group == GROUP and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
               for w in self.app.workers):
            return
        self.app.run_worker(self._read, thread=True, group=GROUP, exit_on_error=False,
                            description="Health")

    def _read(self) -> None:
        app = self.app
        embedded = None if app.read_only or app.embedded is None else app.embedded.running
        health = self.tracker.read(app.engine, app.huey, app.settings.jobs.lease_seconds,
                                   app.clock(), embedded=embedded,
                                   queue_problem=app.queue_problem)
        app.call_from_thread(self._publish, health)

    def _publish(self, health: Health) -> None:
        self.latest = health
        self.changed.publish(health)


class HealthLine(Static):
    """`db ok │ queue ok │ workers 1 live · 0 dead │ embedded off │ outbox 3 · jobs 2`."""

    DEFAULT_CSS = """
    HealthLine { dock: bottom; height: 1; margin-bottom: 1; padding: 0 1;
                 background: $panel; }
    """

    def __init__(self) -> None:
        super().__init__("[dim]health: reading…[/]", markup=True, id="health-line")

    @property
    def console(self) -> KolaqConsole:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        monitor: HealthMonitor | None = getattr(self.app, "health", None)
        if monitor is None:
            return
        monitor.changed.subscribe(self, self.show)
        self.watch(self.app, "worker_running", self._again, init=False)
        self._again()

    def _again(self, _value: object = None) -> None:
        """Show the latest reading again (the embedded worker switched, the width changed)."""
        monitor: HealthMonitor | None = getattr(self.app, "health", None)
        if monitor is not None and monitor.latest is not None:
            self.show(monitor.latest)

    def on_resize(self) -> None:
        self._again()

    def show(self, health: Health) -> None:
        self.update(render(health, self.console, narrow=self.app.size.width < 100))


def _stale(f: Figure, zone: tzinfo, narrow: bool) -> str:
    since = f.stale_since()
    if since is None:
        return "[b $error]unknown[/] [dim]never read[/]"
    label = "stale" if narrow else "stale since"
    return f"[b $error]unknown[/] · {label} {since.astimezone(zone):%H:%M}"


def render(health: Health, app: KolaqConsole, narrow: bool = False) -> str:
    """The line as markup. Narrow (< 100 columns) keeps every figure with shorter words."""
    zone = app.settings.shop.zone
    parts = []
    # Why a store is down is in the overview and `status`: the line stays one line.
    for label, f in (("db", health.database), ("queue", health.queue)):
        parts.append(f"{label} [$success]ok[/]" if f.known
                     else f"{label} {_stale(f, zone, narrow)}")
    live, dead = health.workers_live, health.workers_dead
    if live.known and dead.known:
        dead_part = f" · [b $error]{dead.value} dead[/]" if dead.value else " · 0 dead"
        parts.append(f"{'' if narrow else 'workers '}{live.value} live{dead_part}")
    else:
        parts.append("workers [b $warning]?[/]" if narrow else "workers [b $warning]unknown[/]")
    running = app.worker_running if health.embedded is not None else None
    if running is not None:
        parts.append(f"{'emb' if narrow else 'embedded'} "
                     + ("[b $success]on[/]" if running else "off"))
    waiting, depth = health.outbox_waiting, health.queue_depth
    out = f"{waiting.value}" if waiting.known else "[b $warning]?[/]"
    jobs = f"{depth.value}" if depth.known else "[b $warning]?[/]"
    outbox = (f"outbox {out}/{jobs} jobs" if narrow
              else f"outbox {out} waiting · {jobs} jobs")
    mismatch = health.mismatch
    if mismatch:
        outbox = f"[b $warning]{outbox} ⚠[/]" if narrow else \
            f"[b $warning]{outbox} ⚠ {escape(mismatch)}[/]"
    parts.append(outbox)
    return SEP.join(parts)
