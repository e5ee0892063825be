"""Small input dialogs of the Orders screen: pick one of a few values; carrier and tracking."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static

from kolaq_console.errors import UserError
from kolaq_console.orders.lifecycle import check_tracking_url


class ChooseDialog(ModalScreen[str | None]):
    """Dismisses with the chosen value (Enter) or None (Esc)."""

    AUTO_FOCUS = "OptionList"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, choices: list[str]) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box"):
            yield Static(self.title_text, id="dialog-title", markup=False)
            yield OptionList(*self.choices, id="choices")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])


class ShippingDialog(ModalScreen[tuple[str, str, str] | None]):
    """Carrier, tracking number and tracking link; dismisses with them or None (Esc)."""

    AUTO_FOCUS = "#carrier"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, number: str, carrier: str = "", tracking: str = "", url: str = "") -> None:
        super().__init__(classes="dialog")
        self.number = number
        self.values = (carrier, tracking, url)

    def compose(self) -> ComposeResult:
        carrier, tracking, url = self.values
        with Vertical(id="dialog-box"):
            yield Static(f"Ship order {self.number}", id="dialog-title", markup=False)
            yield Input(carrier, placeholder="carrier (e.g. GIG Logistics)", id="carrier")
            yield Input(tracking, placeholder="tracking number", id="tracking")
            yield Input(url, placeholder="tracking link (optional, https://…)", id="url")
            yield Static("", id="dialog-message")
            with Horizontal(id="dialog-buttons"):
                yield Button("Next", id="next", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Input.Submitted)
    @on(Button.Pressed, "#next")
    def _next(self) -> None:
        carrier, tracking, url = (self.query_one(f"#{i}", Input).value.strip()
                                  for i in ("carrier", "tracking", "url"))
        message = self.query_one("#dialog-message", Static)
        if not carrier or not tracking:
            message.update("[$error]A carrier and a tracking number are needed[/]")
            return
        try:
            check_tracking_url(url)
        except UserError as exc:
            message.update(Content.styled(str(exc), "$error"))
            return
        self.dismiss((carrier, tracking, url))

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)
