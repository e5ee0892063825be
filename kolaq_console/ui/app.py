"""The console app: numbered screens (modes), global keys, pause, the embedded worker.

`make_app(settings, with_worker=..., read_only=..., huey=...)` is the factory the CLI and the
tests use. Screens live in screens/, dialogs in dialogs/, widgets in widgets/, CSS in styles/.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime

from huey.api import Huey
from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.worker import Worker, WorkerState

from kolaq_console import dispatch, runtime
from kolaq_console.config import Settings
from kolaq_console.models import utcnow
from kolaq_console.ui import terminal
from kolaq_console.ui.dialogs.help import HelpDialog
from kolaq_console.ui.embedded_worker import EmbeddedWorker
from kolaq_console.ui.format import one_line
from kolaq_console.ui.messages import EmbeddedWorkerSwitched
from kolaq_console.ui.palette import LookupProvider
from kolaq_console.ui.screens.activity import ActivityScreen
from kolaq_console.ui.screens.base import LiveScreen
from kolaq_console.ui.screens.broadcasts import BroadcastsScreen
from kolaq_console.ui.screens.emails import EmailsScreen
from kolaq_console.ui.screens.failed_jobs import FailedJobsScreen
from kolaq_console.ui.screens.inventory import InventoryScreen
from kolaq_console.ui.screens.messages import MessagesScreen
from kolaq_console.ui.screens.orders import OrdersScreen
from kolaq_console.ui.screens.overview import OverviewScreen
from kolaq_console.ui.screens.webhooks import WebhooksScreen
from kolaq_console.ui.widgets.health_line import HealthMonitor

WRITE_ACTIONS = frozenset({"toggle_worker"})
# Textual's own keys of every screen: listed under "Everywhere", not as this screen's.
SCREEN_GENERIC = frozenset({"app.focus_next", "app.focus_previous", "screen.copy_text"})

log = logging.getLogger(__name__)


class KolaqConsole(App[None]):
    CSS_PATH = ["styles/app.tcss", "styles/screens.tcss", "styles/dialogs.tcss",
                "styles/broadcasts.tcss"]
    TITLE = "kolaq-console"
    ENABLE_COMMAND_PALETTE = True  # ctrl+p: Textual's palette, with the lookup
    COMMANDS = App.COMMANDS | {LookupProvider}
    MODES = {
        "overview": OverviewScreen,
        "failed": FailedJobsScreen,
        "inventory": InventoryScreen,
        "emails": EmailsScreen,
        "broadcast": BroadcastsScreen,
        "orders": OrdersScreen,
        "webhooks": WebhooksScreen,
        "activity": ActivityScreen,
        "messages": MessagesScreen,
    }
    DEFAULT_MODE = "overview"
    BINDINGS = [
        Binding("1", "go('overview')", "Overview", show=False),
        Binding("2", "go('failed')", "Failed jobs", show=False),
        Binding("3", "go('inventory')", "Inventory", show=False),
        Binding("4", "go('emails')", "Emails", show=False),
        Binding("5", "go('broadcast')", "Broadcast", show=False),
        Binding("6", "go('orders')", "Orders", show=False),
        Binding("7", "go('webhooks')", "Webhooks", show=False),
        Binding("8", "go('activity')", "Activity", show=False),
        Binding("9", "go('messages')", "Messages (SMS, WhatsApp)", show=False),
        Binding("question_mark", "help", "Help"),
        # Textual's palette, bound here so `?` names what it finds (the lookup)
        Binding("ctrl+p", "command_palette", "Look up", show=False, priority=True,
                tooltip="Find an order, a customer or a product as you type"),
        Binding("ctrl+r", "refresh", "Refresh now", show=False),
        Binding("T", "change_theme", "Theme", show=False),
        Binding("p", "toggle_pause", "Pause or resume the refresh", show=False),
        Binding("w", "toggle_worker", "Start or stop the embedded worker", show=False),
        Binding("q", "quit", "Quit"),
    ]

    paused: reactive[bool] = reactive(False)
    worker_running: reactive[bool] = reactive(False)

    def __init__(
        self,
        settings: Settings,
        huey: Huey | None,
        *,
        read_only: bool = False,
        with_worker: bool = False,
        clock: Callable[[], datetime] = utcnow,
        queue_problem: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.huey = huey  # None: the queue cannot be read (read-only console; see queue_problem)
        self.queue_problem = queue_problem
        self.read_only = read_only
        self.with_worker = with_worker
        self.clock = clock
        self.engine = runtime.engine_for(settings.database.url)
        self.embedded = EmbeddedWorker(huey, settings.queue.workers) if huey else None
        self.sub_title = settings.shop.name
        self.health = HealthMonitor(self)  # the one poll behind every screen's health line

    @property
    def operator(self) -> str:
        return self.settings.operator()

    def on_mount(self) -> None:
        self.health.start()
        if self.with_worker and not self.read_only:
            self._switch_worker(True)
        # Only a console started in a terminal watches it (not tests, not `web`).
        if not self.is_headless and not self.is_web:
            self._quit_on_signals()
            if terminal.has_terminal():
                self.set_interval(terminal.CHECK_SECONDS, self._check_terminal,
                                  name="terminal watch")

    def _quit_on_signals(self) -> None:
        """SIGHUP (the console leads its terminal's session and the terminal went away) and
        SIGTERM quit as `q` does: running jobs of the embedded worker finish first. Python's
        default for both is to die at once, leaving those jobs to the sweeper. A second
        signal gets that default back."""
        loop = asyncio.get_running_loop()

        def quit_once(signum: int, _frame: object) -> None:
            for sig in (signal.SIGHUP, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            if signum == signal.SIGHUP:
                # The kernel sends SIGCONT with the hang-up; Textual's handler of it would
                # restart its screen mode on the dead terminal (and its output thread then
                # deadlocks the quit). Handlers run in signal order: this one comes first.
                signal.signal(signal.SIGCONT, signal.SIG_DFL)
            loop.call_soon_threadsafe(leave, signal.Signals(signum).name)

        def leave(name: str) -> None:  # on the event loop, not inside the signal handler
            log.warning("%s: quitting", name)
            self.run_worker(self._leave(), name=name)

        for sig in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, quit_once)

    async def _check_terminal(self) -> None:
        if not terminal.has_terminal():  # quit as `q` does, with nothing more to draw
            log.warning("the console's terminal went away: quitting")
            await self._leave()

    async def _leave(self) -> None:
        await self._stop_embedded()
        self.exit()

    # --- global actions ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in WRITE_ACTIONS and self.read_only)

    async def action_go(self, mode: str) -> None:
        if mode not in self.MODES:
            self.notify(f"The {mode} screen is not available in this version",
                        severity="warning")
            return
        if mode != self.current_mode:
            await self.switch_mode(mode)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpDialog):
            return
        screen = self.screen
        title = f"Keys — {getattr(screen, 'TITLE_TEXT', 'console')}"
        if self.read_only:
            title += " (read-only: actions are hidden)"
        self.push_screen(HelpDialog(title, self.key_sections()))

    def key_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every key active now, from the bindings themselves (the focused widget's, the
        screen's, the app's), grouped by where it works; keys of one action share a line."""
        groups: dict[str, dict[tuple[str, str], list[str]]] = {}
        for active in self.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.system:
                continue
            node = active.node
            where = ("Everywhere" if node is self or binding.action in SCREEN_GENERIC else
                     "This screen" if node is self.screen else "In the list")
            label = self.get_key_display(binding)
            entries = groups.setdefault(where, {}).setdefault(
                (binding.action, binding.description), [])
            if label not in entries:
                entries.append(label)
        order = ("This screen", "In the list", "Everywhere")
        return [(where, [("/".join(labels), description)
                         for (_action, description), labels in groups[where].items()])
                for where in order if where in groups]

    def action_refresh(self) -> None:
        if isinstance(self.screen, LiveScreen):
            self.screen.reload()
            self.notify("Refreshed", timeout=1.5)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("Refresh paused (p resumes)" if self.paused else "Refresh resumed")
        if isinstance(self.screen, LiveScreen):
            if self.paused:
                self.screen.stop_refresh()
            else:
                self.screen.reload()

    def action_toggle_worker(self) -> None:
        if self.read_only or self.embedded is None:
            self.notify("Read-only console: the embedded worker cannot be started",
                        severity="warning")
            return
        self._switch_worker(not self.embedded.running)  # type: ignore[union-attr]

    @work(thread=True, exclusive=True, exit_on_error=False, group="embedded-worker",
          description="Embedded worker")
    def _switch_worker(self, start: bool) -> None:
        if self.embedded is None:
            return
        if start:
            self.embedded.start()
        else:
            self.embedded.stop()  # waits for running jobs (up to the shutdown timeout)
        self.post_message(EmbeddedWorkerSwitched(self.embedded.running))

    @on(EmbeddedWorkerSwitched)
    def _worker_switched(self, event: EmbeddedWorkerSwitched) -> None:
        self.worker_running = event.running
        self.notify("Embedded worker started" if event.running else "Embedded worker stopped")
        if isinstance(self.screen, LiveScreen):
            self.screen.reload()

    @on(Worker.StateChanged)
    def _app_worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(one_line(event.worker.error), title=event.worker.description,
                        severity="error", timeout=8, markup=False)

    async def action_quit(self) -> None:
        if self.embedded is not None and self.embedded.running:
            self.notify("Stopping the embedded worker: running jobs finish first…")
        await self._leave()

    async def _stop_embedded(self) -> None:
        if self.embedded is not None and self.embedded.running:
            await asyncio.to_thread(self.embedded.stop)


def make_app(
    settings: Settings,
    *,
    with_worker: bool = False,
    read_only: bool = False,
    huey: Huey | None = None,
    clock: Callable[[], datetime] | None = None,
    queue_problem: str | None = None,
) -> KolaqConsole:
    """The app factory used by the CLI and the tests. `huey` defaults to the queue tasks.py
    wired (kolaq_console.dispatch), the one every enqueue of this process goes to; `clock`
    (UTC now) is fixed by snapshot tests. A read-only console whose queue cannot be opened
    gets `queue_problem` instead of a Huey: its figures are shown as unknown."""
    if huey is None and queue_problem is None:
        huey = dispatch.huey()
    return KolaqConsole(settings, huey, read_only=read_only, with_worker=with_worker,
                        clock=clock or utcnow, queue_problem=queue_problem)
