"""The base of every list screen: a caption, a RecordTable, an empty state that says what to
do next, and the `/` filter line with the one `key:value` grammar (ui/filtering.py).

Keys every list shares: `/` filter; Esc clears the marks, then the filter, then goes back to
the overview; `o` sorts by the next column and `O` reverses; `y` copies the cell of the sort
column (the first column when unsorted), `Y` the whole row; `f` cycles the status filter
where the list has one; Enter opens the record. j/k/g/G/Home/End live in RecordTable.

A subclass sets COLUMNS, GRAMMAR, PLACEHOLDER and EMPTY, implements `load()` (reading with
`self.filter`), `caption()` and `open_record(key)`, and shows its rows with `show_rows()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import DataTable, Static

from kolaq_console.ui.filtering import Filter, FilterError, Grammar, cycle
from kolaq_console.ui.screens.base import KolaqScreen, LiveScreen
from kolaq_console.ui.widgets.filter_bar import FilterBar
from kolaq_console.ui.widgets.record_table import Col, RecordTable

# Sort and copy, for screens with a table that are not a ListScreen (broadcasts).
TABLE_KEYS = [
    Binding("o", "sort", "Sort", show=False),
    Binding("O", "sort_reverse", "Reverse sort", show=False),
    Binding("y", "copy_cell", "Copy cell", show=False),
    Binding("Y", "copy_row", "Copy row", show=False),
]


def sort_table(screen: KolaqScreen, table: RecordTable, reverse: bool = False) -> None:
    label = table.sort_flip() if reverse else table.sort_next()
    screen.notify(label.capitalize(), timeout=2)


def copy_from(screen: KolaqScreen, table: RecordTable, whole_row: bool) -> None:
    """Copy the current record's sort-column cell (or whole row) to the clipboard."""
    if whole_row:
        text, what = table.row_text(), "row"
    else:
        cell = table.cell_text()
        text, what = (cell[1], cell[0]) if cell else (None, "")
    if text is None:
        screen.notify("Nothing to copy: the list is empty", severity="warning")
        return
    screen.app.copy_to_clipboard(text)
    shown = text if len(text) <= 60 else text[:59] + "…"
    screen.notify(f"Copied {what}: {shown}", timeout=3, markup=False)


class TableActions:
    """The actions of TABLE_KEYS, on the table `list_table()` returns (mixed into screens)."""

    def list_table(self) -> RecordTable:
        raise NotImplementedError

    def action_sort(self) -> None:
        sort_table(self, self.list_table())  # type: ignore[arg-type]

    def action_sort_reverse(self) -> None:
        sort_table(self, self.list_table(), reverse=True)  # type: ignore[arg-type]

    def action_copy_cell(self) -> None:
        copy_from(self, self.list_table(), whole_row=False)  # type: ignore[arg-type]

    def action_copy_row(self) -> None:
        copy_from(self, self.list_table(), whole_row=True)  # type: ignore[arg-type]


class ListScreen(TableActions, LiveScreen):
    COLUMNS: ClassVar[tuple[Col, ...]] = ()
    GRAMMAR: ClassVar[Grammar] = Grammar()
    PLACEHOLDER: ClassVar[str] = "words to look for"
    EMPTY: ClassVar[str] = "Nothing here yet."
    """Said when the list is empty without a filter: what the list is for, what to do next."""
    TABLE_ID: ClassVar[str] = "list"
    MARKABLE: ClassVar[bool] = False
    STATUS_KEY: ClassVar[str | None] = None
    """The filter key `f` cycles through (None: no `f`)."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back (clears marks, then the filter)", show=False),
        *TABLE_KEYS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = Filter()
        self.filter_error: str | None = None

    # --- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield from self.compose_chrome_top()
        yield Static(id="list-caption", classes="caption")
        yield from self.compose_list()
        yield FilterBar(f"{self.PLACEHOLDER}  ({self.GRAMMAR.help()})")
        yield from self.compose_chrome_bottom()

    def compose_list(self) -> ComposeResult:
        yield RecordTable(id=self.TABLE_ID, markable=self.MARKABLE)
        yield Static(id="list-empty", classes="empty", markup=True)

    def on_mount(self) -> None:
        self.table.set_columns(*self.COLUMNS)
        self.query_one(FilterBar).display = False
        self.query_one("#list-empty", Static).display = False

    @property
    def table(self) -> RecordTable:
        return self.query_one(f"#{self.TABLE_ID}", RecordTable)

    def active_table(self) -> RecordTable:
        """The table keys act on: the focused one, else the main one."""
        focused = self.focused
        return focused if isinstance(focused, RecordTable) else self.table

    def list_table(self) -> RecordTable:
        return self.active_table()

    # --- showing -----------------------------------------------------------------------------

    def show_rows(self, rows: Iterable[tuple[Any, Sequence[Any]]]) -> None:
        """Show these records (and the empty state when there are none), then the caption."""
        table = self.table
        with self.app.batch_update():
            table.replace_rows(rows)
            empty = self.query_one("#list-empty", Static)
            empty.display = table.row_count == 0
            table.set_class(table.row_count == 0, "-empty")  # the header, then what to do
            if table.row_count == 0:
                empty.update(self.empty_text())
            self.show_caption()

    def empty_text(self) -> str:
        if self.filter:
            return (f"Nothing matches {self.filter.describe()}. "
                    "Esc clears the filter; / changes it.")
        return escape(self.EMPTY)  # plain text: `[sms]` is a config section, not markup

    def caption(self) -> str:
        """The caption line (markup): counts and what is filtered."""
        return f"[b]{self.table.row_count}[/] · {self.filter.describe()}"

    def show_caption(self) -> None:
        text = self.caption()
        if self.filter_error:  # first: the caption's end may be cut at 80 columns
            text = f"[$error]{escape(self.filter_error)}; not applied[/] · {text}"
        self.query_one("#list-caption", Static).update(text)

    # --- filtering ---------------------------------------------------------------------------

    def filter_changed(self) -> None:
        """The filter is now `self.filter`: read again (lists filtered locally re-render)."""
        self.reload()

    def set_filter(self, new: Filter) -> None:
        self.filter_error = None
        if new != self.filter:
            self.filter = new
            self.filter_changed()
        self.show_caption()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    @on(FilterBar.Applied)
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        try:
            parsed = self.GRAMMAR.parse(event.text)
        except FilterError as exc:
            # The rest of the text applies without the word at fault: `who:ada` must not
            # leave the list filtered by the word `who` it passed through as it was typed.
            rest = " ".join(w for w in event.text.split() if w != exc.word)
            with contextlib.suppress(FilterError):  # another word at fault: stays as it was
                self.set_filter(self.GRAMMAR.parse(rest))
            self.filter_error = str(exc)
            self.show_caption()
            return
        self.set_filter(parsed)

    @on(FilterBar.Closed)
    def _filter_closed(self) -> None:
        self.table.focus()

    def action_cycle_status(self) -> None:
        key = self.STATUS_KEY
        if key is None:
            return
        values = self.GRAMMAR.keys.get(key) or ()
        new = self.filter.with_term(key, cycle(values, self.filter.get(key)))
        self.set_filter(new)
        bar = self.query_one(FilterBar)
        with bar.prevent(FilterBar.Changed):
            bar.value = new.unparse()

    def clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        with bar.prevent(FilterBar.Changed):
            bar.value = ""
        bar.display = False
        self.set_filter(Filter())

    async def action_back(self) -> None:
        table = self.active_table()
        if table.marked:
            table.clear_marks()
            self.show_caption()
        elif self.filter or self.filter_error or self.query_one(FilterBar).value:
            self.clear_filter()
        else:
            await self.app.run_action("go('overview')")

    # --- records -----------------------------------------------------------------------------

    def open_record(self, key: Any) -> None:
        """Enter on a record (override to open its screen)."""

    def action_open(self) -> None:
        key = self.active_table().current
        if key is not None:
            self.open_record(key)

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

