"""The `/` filter line at the bottom of a list screen."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    """Typing narrows the list as you go; Enter keeps the filter and returns to the list;
    Esc clears it. Hidden until `/` opens it."""

    BINDINGS = [Binding("escape", "clear_filter", "Clear filter", show=False)]

    class Applied(Message):
        """The filter text changed (empty: no filter)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Closed(Message):
        """The operator left the filter line (Enter or Esc)."""

    def __init__(self, placeholder: str) -> None:
        super().__init__(placeholder=placeholder, id="filter", compact=True)

    def open(self) -> None:
        self.display = True
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Applied(event.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.value.strip():
            self.display = False
        self.post_message(self.Closed())

    def action_clear_filter(self) -> None:
        self.value = ""  # posts Input.Changed, hence Applied("") if there was a filter
        self.display = False
        self.post_message(self.Closed())
