"""What every console screen shares: the nav bar and footer, the read-only guard, error
notifications from workers, and (LiveScreen) a poll that reschedules itself only after the
previous one finished and only while the screen is the one in front."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from kolaq_console.ui.format import one_line
from kolaq_console.ui.widgets.health_line import HealthLine
from kolaq_console.ui.widgets.navbar import NavBar

if TYPE_CHECKING:
    from kolaq_console.ui.app import KolaqConsole

POLL = "poll"
ACTIVE = (WorkerState.PENDING, WorkerState.RUNNING)


class KolaqScreen(Screen):
    MODE: ClassVar[str] = "overview"
    """The numbered screen this one belongs to (highlighted in the nav bar)."""
    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset()
    """Actions that change something: hidden from the footer and refused when read-only."""
    HELP: ClassVar[str] = ""

    @property
    def console(self) -> KolaqConsole:
        return cast("KolaqConsole", self.app)

    def compose_chrome_top(self) -> ComposeResult:
        yield NavBar(self.MODE)

    def compose_chrome_bottom(self) -> ComposeResult:
        yield HealthLine()  # truthful health on every screen, above the keys
        yield Footer(compact=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.WRITE_ACTIONS and self.console.read_only)

    def refused(self, what: str) -> bool:
        """True (and a warning) when the console is read-only; call first in write actions."""
        if self.console.read_only:
            self.notify(f"Read-only console: {what} refused", severity="warning")
            return True
        return False

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            self.worker_failed(worker, worker.error)

    def worker_failed(self, worker: Worker, error: BaseException) -> None:
        self.notify(one_line(error), title=worker.description or "Error", severity="error",
                    timeout=8, markup=False)


class LiveScreen(KolaqScreen):
    """A screen whose `load()` (a thread worker in group POLL) runs on show, then every
    `[console] refresh_seconds` while the screen is in front and the console not paused.
    A dialog or detail view on top suspends the screen, which freezes its refresh."""

    PERIODIC: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._last_poll_error: str | None = None

    def load(self) -> None:
        raise NotImplementedError

    def deliver(self, message: Message) -> None:
        """Post a poll's answer from its worker thread, unless a newer poll replaced it
        (`exclusive` cancels the older worker, but a thread runs on to its end)."""
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def reload(self) -> None:
        """Read the data again now (and go on polling from there)."""
        self.stop_refresh()
        self.load()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_screen_suspend(self) -> None:
        self.stop_refresh()

    def stop_refresh(self) -> None:
        """No next poll (one already running still shows its answer)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _poll_running(self) -> bool:
        return any(w.node is self and w.group == POLL and w.state in ACTIVE
                   for w in self.app.workers)

    def _schedule(self) -> None:
        self.stop_refresh()
        if not self.PERIODIC or self.console.paused or not self.is_active:
            return
        if self._poll_running():
            return  # that poll reschedules when it ends
        self._timer = self.set_timer(self.console.settings.console.refresh_seconds, self.reload)

    def accepts(self) -> bool:
        """Apply polled data only while in front: a dialog on top freezes what is shown."""
        return self.is_active

    @on(Worker.StateChanged)
    def _poll_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != POLL or event.state in ACTIVE:
            return
        if event.state == WorkerState.SUCCESS:
            self._last_poll_error = None
        self._schedule()

    def worker_failed(self, worker: Worker, error: BaseException) -> None:
        if worker.group == POLL:
            message = one_line(error)
            if message == self._last_poll_error:
                return  # the same failure every refresh: say it once
            self._last_poll_error = message
        super().worker_failed(worker, error)
