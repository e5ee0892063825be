"""The top line of every screen: the numbered screens (current one highlighted) and the
console's state (paused, read-only, embedded worker)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

SCREENS = (("1", "overview", "Overview"), ("2", "failed", "Failed jobs"),
           ("3", "inventory", "Inventory"), ("4", "emails", "Emails"), ("6", "orders", "Orders"),
           ("7", "webhooks", "Webhooks"))
SHORT = {"failed": "Failed"}


class NavBar(Horizontal):
    """`1 Overview  2 Failed jobs ... 7 Webhooks` ... `PAUSED  READ-ONLY  worker off`."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        parts = []
        narrow = self.app.size.width < 100  # every label on one 80-column line
        for key, mode, label in SCREENS:
            if narrow:
                label = SHORT.get(mode, label)
            if mode == self.current:
                parts.append(f"[reverse b] {key} {label} [/]")
            else:
                parts.append(f" [b]{key}[/] [dim]{label}[/] ")
        yield Static("".join(parts), id="nav-screens", markup=True)
        yield Static(id="nav-flags", markup=True)

    def on_mount(self) -> None:
        self.watch(self.app, "paused", self._show_flags, init=False)
        self.watch(self.app, "worker_running", self._show_flags, init=False)
        self._show_flags()

    def _show_flags(self, _value: object = None) -> None:
        app = self.app
        flags = []
        if getattr(app, "paused", False):
            flags.append("[b $warning]PAUSED[/]")
        if getattr(app, "read_only", False):
            flags.append("[b $error]READ-ONLY[/]")
        elif getattr(app, "worker_running", False):
            flags.append("[b $success]worker on[/]")
        else:
            flags.append("[dim]worker off[/]")
        self.query_one("#nav-flags", Static).update("  ".join(flags) + " ")
