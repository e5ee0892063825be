"""The top line of every screen: the numbered screens (current one highlighted) and the
console's state (paused, read-only)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

SCREENS = (("1", "overview", "Overview"), ("2", "failed", "Failed jobs"),
           ("3", "inventory", "Inventory"), ("4", "emails", "Emails"),
           ("5", "broadcast", "Broadcasts"), ("6", "orders", "Orders"),
           ("7", "webhooks", "Webhooks"), ("8", "activity", "Activity"),
           ("9", "messages", "SMS"))
# Below 120 columns every label must fit one 80-column line with the flags.
SHORT = {"overview": "Home", "failed": "Fail", "inventory": "Stock", "emails": "Mail",
         "broadcast": "Bcast", "orders": "Order", "webhooks": "Hook", "activity": "Log"}


class NavBar(Horizontal):
    """`1 Overview  2 Failed jobs ... 9 SMS` ... `PAUSED  READ-ONLY`."""

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current
        self.narrow = False  # set by compose: short labels below 120 columns

    def compose(self) -> ComposeResult:
        parts = []
        self.narrow = narrow = self.app.size.width < 120  # every label on one 80-column line
        for key, mode, label in SCREENS:
            if narrow:
                label = SHORT.get(mode, label)
                if mode == self.current:
                    parts.append(f"[reverse b]{key} {label}[/] ")
                else:
                    parts.append(f"[b]{key}[/] [dim]{label}[/] ")
            elif mode == self.current:
                parts.append(f"[reverse b] {key} {label} [/]")
            else:
                parts.append(f" [b]{key}[/] [dim]{label}[/] ")
        # Narrow: no pad after the last label, so the labels (63 columns) and both flags
        # ("PAUSED READ-ONLY", 16) fit 80 columns together.
        yield Static("".join(parts).rstrip() if narrow else "".join(parts), id="nav-screens",
                     markup=True)
        yield Static(id="nav-flags", markup=True)

    def on_resize(self) -> None:
        if (self.app.size.width < 120) != self.narrow:  # the terminal crossed 120 columns
            self.refresh(recompose=True)
            self.call_after_refresh(self._show_flags)  # the new flags widget starts empty

    def on_mount(self) -> None:
        self.watch(self.app, "paused", self._show_flags, init=False)
        self._show_flags()

    def _show_flags(self, _value: object = None) -> None:
        app = self.app
        flags = []
        if getattr(app, "paused", False):
            flags.append("[b $warning]PAUSED[/]")
        if getattr(app, "read_only", False):
            flags.append("[b $error]READ-ONLY[/]")
        # The embedded worker is in the health line, beside the live and dead workers.
        gap = " " if self.narrow else "  "
        self.query_one("#nav-flags", Static).update(gap.join(flags) + ("" if self.narrow else " "))
