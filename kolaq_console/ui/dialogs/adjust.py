"""`a` on the Inventory screen: a stock adjustment's delta and reason, checked with the
inventory's own rules (parse_delta, check_reason) before anything is confirmed."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from kolaq_console.errors import UserError
from kolaq_console.inventory.adjust import check_reason, parse_delta


class AdjustDialog(ModalScreen[tuple[int, str] | None]):
    """Dismisses with (delta, reason) once both are valid, or None (Esc)."""

    AUTO_FOCUS = "#delta"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, sku: str, name: str, stock: int | None) -> None:
        super().__init__(classes="dialog")
        self.sku, self.product_name, self.stock = sku, name, stock

    def compose(self) -> ComposeResult:
        stock = "unknown" if self.stock is None else str(self.stock)
        with Vertical(id="dialog-box"):
            yield Static(f"Adjust {self.sku} ({self.product_name}), stock {stock}",
                         id="dialog-title", markup=False)
            yield Input(placeholder="change, e.g. 5 or -3", id="delta")
            yield Input(placeholder="reason (required), e.g. two bottles broken", id="reason")
            yield Static("", id="dialog-message")
            with Horizontal(id="dialog-buttons"):
                yield Button("Next", id="next", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Input.Submitted, "#delta")
    def _to_reason(self) -> None:
        self.query_one("#reason", Input).focus()

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#next")
    def _next(self) -> None:
        try:
            delta = parse_delta(self.query_one("#delta", Input).value)
            reason = check_reason(self.query_one("#reason", Input).value)
        except UserError as exc:
            self.query_one("#dialog-message", Static).update(f"[$error]{escape(str(exc))}[/]")
            return
        if self.stock is not None and self.stock + delta < 0:
            # Said here, before the confirm: adjust() refuses it after, naming a CLI flag.
            self.query_one("#dialog-message", Static).update(
                f"[$error]Stock would go below zero ({self.stock} {delta:+d} = "
                f"{self.stock + delta}); the console does not record that (the command line "
                "does, with inventory adjust --allow-negative)[/]")
            return
        self.dismiss((delta, reason))

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)
