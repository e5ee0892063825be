"""A yes/no dialog for destructive and bulk actions. While it is open the screen below is
suspended, so its refresh is frozen: what the operator confirms is what was shown."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmDialog(ModalScreen[bool]):
    """Dismisses with True (Enter or `y` on the confirm button) or False (Esc or `n`)."""

    AUTO_FOCUS = "#confirm"
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "Cancel"),
        Binding("y", "dismiss(True)", "Confirm"),
    ]

    def __init__(self, title: str, message: str, confirm: str = "Confirm",
                 back: str = "Cancel") -> None:
        """`back` names the way out; where the action itself is a cancel, something else
        ("Keep it"), so the two buttons never read alike."""
        super().__init__(classes="dialog")
        self.title_text = title
        self.message = message
        self.confirm_label = confirm
        self.back_label = back

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Static(self.title_text, id="dialog-title")
            yield Static(self.message, id="dialog-message", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="error",
                             compact=True)
                yield Button(f"{self.back_label} (n)", id="cancel", compact=True)

    @on(Button.Pressed, "#confirm")
    def _confirmed(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(False)
