"""`?`: the keys of the current screen and the global ones."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, title: str, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog-box"):
            yield Static(self.title_text, id="dialog-title")
            lines: list[str] = []
            # One key column as wide as the longest key ("shift+tab", "^c/super+c"), so no
            # description is pushed out of line with the others.
            width = max((len(k) for _, keys in self.sections for k, _ in keys), default=7)
            for heading, keys in self.sections:
                if not keys:
                    continue
                lines.append(f"[b $text-accent]{heading}[/]")
                lines.extend(f"  [b $accent]{key:<{width}}[/] {text}" for key, text in keys)
            lines.append("[dim]Esc closes this help.[/]")
            yield Static("\n".join(lines), id="help-keys")
