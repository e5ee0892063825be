"""A DataTable of records keyed by id: columns sized to the terminal (fixed, flexible, or
dropped by priority when narrow), the cursor kept on the same record across refreshes, marks
(space) for bulk actions, vi keys (j/k/g/G), sorting by a column and the plain text of a
cell or a row (for copying)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

MARK = "●"
SCROLLBAR = 2


@dataclass(frozen=True)
class Col:
    label: str
    width: int
    """Fixed width, or the least a flexible column gets."""
    flex: int = 0
    """Share of the width left over by the fixed columns."""
    hide_below: int = 0
    """Not shown when the table is narrower than this."""
    right: bool = False
    priority: int = 1
    """When the columns do not fit, the highest priority number goes first; 0 never goes
    (the columns that identify the record: order number, recipient, reason, tries)."""


def clip(value: Any, width: int, right: bool = False) -> Any:
    """The cell, cut to `width` with an ellipsis. Text becomes a plain `rich.text.Text`: a
    DataTable reads `str` cells as markup, and data (errors, addresses) may contain `[`."""
    if isinstance(value, Content):
        return value if value.cell_length <= width else value.truncate(width, ellipsis=True)
    text = "" if value is None else " ".join(str(value).split())
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return Text(text.rjust(width) if right else text, no_wrap=True, end="")


def plain(value: Any) -> str:
    """A cell as the text it shows (markup and styles dropped)."""
    if value is None:
        return ""
    if isinstance(value, Content | Text):
        return value.plain
    return str(value)


_NUMBER = re.compile(r"[#+-]?[\d,]+(\.\d+)?")


def sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers (`1,234`, `#12`, `-3`, `4.5d`) by value and before words; words by text."""
    text = plain(value).strip()
    match = _NUMBER.match(text)
    if match and match.group(0) not in ("+", "-", "#"):
        try:
            return (0, float(match.group(0).lstrip("#").replace(",", "")), text.lower())
        except ValueError:
            pass
    return (1, 0.0, text.lower())


class RecordTable(DataTable, inherit_bindings=False):
    """Rows are `(key, cells)`, one cell per column given to `set_columns`."""

    # All of a list's own keys (DataTable's horizontal ones are left out: columns fit).
    BINDINGS = [
        Binding("enter", "select_cursor", "Open", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("g,home", "scroll_top", "First row", show=False),
        Binding("G,end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, *, markable: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.markable = markable
        self.marked: set[Any] = set()
        self._specs: list[Col] = []
        self._rows: dict[Any, Sequence[Any]] = {}
        self._laid_out_for = -1
        self.sort_column: int | None = None
        """Index (into the columns given) of the column the rows are sorted by, or None:
        the order the rows were given in."""
        self.sort_reverse = False

    def set_columns(self, *specs: Col) -> None:
        self._specs = list(specs)
        self._rebuild()

    # --- layout ------------------------------------------------------------------------------

    def _widths(self, total: int) -> list[tuple[int, Col, int]]:
        """(index in the row, spec, width) of each column shown at this table width."""
        padding = 2 * self.cell_padding
        avail = total - SCROLLBAR - (1 + padding if self.markable else 0)
        shown = [(i, c) for i, c in enumerate(self._specs) if total >= c.hide_below]
        while sum(c.width + padding for _, c in shown) > avail:
            droppable = [(c.priority, n) for n, (_, c) in enumerate(shown) if c.priority]
            if not droppable:
                break
            shown.pop(max(droppable)[1])  # the least important; of equals, the rightmost
        fixed = sum(c.width + padding for _, c in shown if not c.flex)
        flex_cols = [(i, c) for i, c in shown if c.flex]
        # flexible columns get their least width, then share what is left by weight
        spare = max(avail - fixed - sum(c.width + padding for _, c in flex_cols), 0)
        weights = sum(c.flex for _, c in flex_cols) or 1
        out = []
        for i, c in shown:
            width = c.width if not c.flex else c.width + spare * c.flex // weights
            out.append((i, c, width))
        return out

    def _rebuild(self) -> None:
        total = self.size.width or self.app.size.width
        self._laid_out_for = total
        keep, old_row = self.current, self.cursor_row
        self.clear(columns=True)
        layout = self._widths(total)
        if self.markable:
            self.add_column(" ", key="mark", width=1)
        for i, spec, width in layout:
            label = spec.label
            if i == self.sort_column:
                label = f"{label}{'▼' if self.sort_reverse else '▲'}"
            self.add_column(label.rjust(width) if spec.right else label[:width],
                            key=f"c{i}", width=width)
        for key, cells in self._sorted():
            shown = [clip(cells[i], width, spec.right) for i, spec, width in layout]
            if self.markable:
                shown.insert(0, MARK if key in self.marked else " ")
            self.add_row(*shown, key=str(key))
        if self.row_count:
            index = self._index_of(keep)
            self.move_cursor(row=index if index is not None else min(old_row, self.row_count - 1),
                             animate=False, scroll=True)

    def _sorted(self) -> list[tuple[Any, Sequence[Any]]]:
        rows = list(self._rows.items())
        column = self.sort_column
        if column is not None:
            rows.sort(key=lambda row: sort_key(row[1][column]), reverse=self.sort_reverse)
        return rows

    def shown_columns(self) -> list[int]:
        """Indexes (into the columns given) of the columns shown at this width."""
        return [i for i, _, _ in self._widths(self.size.width or self.app.size.width)]

    def sort_next(self) -> str:
        """Sort by the next column shown (after the last: the order given); its label."""
        shown = self.shown_columns()
        if self.sort_column in shown:
            at = shown.index(self.sort_column) + 1
            self.sort_column = shown[at] if at < len(shown) else None
        else:
            self.sort_column = shown[0] if shown else None
        self._rebuild()
        return self.sort_label()

    def sort_flip(self) -> str:
        """Reverse the order (sorting by the first column if unsorted); its label."""
        if self.sort_column is None:
            shown = self.shown_columns()
            self.sort_column = shown[0] if shown else None
            self.sort_reverse = True
        else:
            self.sort_reverse = not self.sort_reverse
        self._rebuild()
        return self.sort_label()

    def sort_label(self) -> str:
        if self.sort_column is None:
            return "unsorted (as listed)"
        order = "descending" if self.sort_reverse else "ascending"
        return f"sorted by {self._specs[self.sort_column].label} ({order})"

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._laid_out_for and self._specs:
            self._rebuild()

    # --- records -----------------------------------------------------------------------------

    def replace_rows(self, rows: Iterable[tuple[Any, Sequence[Any]]]) -> None:
        """Show these records; the cursor stays on the record it was on, if still listed.
        Marks of records no longer listed are dropped. The same records in the same order at
        the same width only have their changed cells redrawn: a refresh (or the key press that
        brings a screen back) then costs no new layout. Rebuilding 200 rows made the table
        measure every cell again, ~60-130 ms each time (bench/console.py)."""
        new = {key: cells for key, cells in rows}
        if (list(new) == list(self._rows) and self.columns
                and self._laid_out_for == (self.size.width or self.app.size.width)):
            self._update_cells(new)
            return
        self._rows = new
        self.marked &= set(self._rows)
        self._rebuild()

    def _update_cells(self, new: dict[Any, Sequence[Any]]) -> None:
        layout = self._widths(self._laid_out_for)
        for key, cells in new.items():
            old = self._rows[key]
            if cells == old:
                continue
            for i, spec, width in layout:
                if cells[i] != old[i]:
                    self.update_cell(str(key), f"c{i}", clip(cells[i], width, spec.right))
        self._rows = new

    def move_to(self, key: Any) -> bool:
        """Put the cursor on the record `key`, if listed; whether it is."""
        index = self._index_of(key)
        if index is not None:
            self.move_cursor(row=index, animate=False, scroll=True)
        return index is not None

    def _index_of(self, key: Any) -> int | None:
        if key is None:
            return None
        try:
            return self.get_row_index(str(key))
        except RowDoesNotExist:
            return None

    @property
    def current(self) -> Any | None:
        """The key of the record under the cursor (its original type), or None."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        for key in self._rows:
            if str(key) == row_key.value:
                return key
        return None

    def keys(self) -> list[Any]:
        """The records in the order given (see `displayed` for the order shown)."""
        return list(self._rows)

    def displayed(self) -> list[Any]:
        """The records in the order shown (sorted, if a sort column is set)."""
        return [key for key, _ in self._sorted()]

    def cells(self, key: Any) -> Sequence[Any]:
        """The record's cells as given (not cut to the column widths)."""
        return self._rows[key]

    def cell_text(self) -> tuple[str, str] | None:
        """(column label, full text) of the current record's cell in the sort column (the
        first column when unsorted): the value `y` copies."""
        key = self.current
        if key is None or not self._specs:
            return None
        column = self.sort_column if self.sort_column is not None else 0
        return self._specs[column].label, plain(self._rows[key][column])

    def row_text(self) -> str | None:
        """The current record, every column (shown or not), tab-separated: what `Y` copies."""
        key = self.current
        if key is None:
            return None
        return "\t".join(plain(c) for c in self._rows[key])

    def toggle_mark(self) -> None:
        key = self.current
        if key is None or not self.markable:
            return
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        self.update_cell(str(key), "mark", MARK if key in self.marked else " ")
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def clear_marks(self) -> None:
        for key in list(self.marked):
            self.marked.discard(key)
            if self._index_of(key) is not None:
                self.update_cell(str(key), "mark", " ")
