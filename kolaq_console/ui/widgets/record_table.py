"""A DataTable of records keyed by id: columns sized to the terminal (fixed, flexible, or
hidden when narrow), the cursor kept on the same record across refreshes, and marks (space)
for bulk actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events
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


def clip(value: Any, width: int, right: bool = False) -> Any:
    """The cell, cut to `width` with an ellipsis. Text becomes a plain `rich.text.Text`: a
    DataTable reads `str` cells as markup, and data (errors, addresses) may contain `[`."""
    if isinstance(value, Content):
        return value if value.cell_length <= width else value.truncate(width, ellipsis=True)
    text = "" if value is None else " ".join(str(value).split())
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return Text(text.rjust(width) if right else text, no_wrap=True, end="")


class RecordTable(DataTable):
    """Rows are `(key, cells)`, one cell per column given to `set_columns`."""

    def __init__(self, *, markable: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.markable = markable
        self.marked: set[Any] = set()
        self._specs: list[Col] = []
        self._rows: dict[Any, Sequence[Any]] = {}
        self._laid_out_for = -1

    def set_columns(self, *specs: Col) -> None:
        self._specs = list(specs)
        self._rebuild()

    # --- layout ------------------------------------------------------------------------------

    def _widths(self, total: int) -> list[tuple[int, Col, int]]:
        """(index in the row, spec, width) of each column shown at this table width."""
        padding = 2 * self.cell_padding
        avail = total - SCROLLBAR - (1 + padding if self.markable else 0)
        shown = [(i, c) for i, c in enumerate(self._specs) if total >= c.hide_below]
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
            self.add_column(spec.label.rjust(width) if spec.right else spec.label,
                            key=f"c{i}", width=width)
        for key, cells in self._rows.items():
            shown = [clip(cells[i], width, spec.right) for i, spec, width in layout]
            if self.markable:
                shown.insert(0, MARK if key in self.marked else " ")
            self.add_row(*shown, key=str(key))
        if self.row_count:
            index = self._index_of(keep)
            self.move_cursor(row=index if index is not None else min(old_row, self.row_count - 1),
                             animate=False, scroll=True)

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
        return list(self._rows)

    def cells(self, key: Any) -> Sequence[Any]:
        """The record's cells as given (not cut to the column widths)."""
        return self._rows[key]

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
