"""RecordTable keeps what it shows when a refresh reads the same records, redrawing only the
cells that changed (bench/console.py: rebuilding 200 rows cost ~60-130 ms of layout on every
refresh and every key press)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from kolaq_console.ui.widgets.record_table import Col, RecordTable

ROWS = [(i, (f"job {i}", "emails", "503 Service Unavailable")) for i in range(1, 40)]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RecordTable(id="t")

    def on_mount(self) -> None:
        self.query_one(RecordTable).set_columns(Col("task", 12), Col("queue", 10),
                                                 Col("error", 20, flex=1))


async def test_the_same_records_keep_the_table_changed_cells_are_redrawn_new_rows_rebuild():
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(RecordTable)
        table.replace_rows(ROWS)
        await pilot.pause()
        table.move_cursor(row=7)
        cleared = []
        original = table.clear
        table.clear = lambda *a, **k: (cleared.append(1), original(*a, **k))[1]

        table.replace_rows(list(ROWS))  # a refresh that read the same records
        await pilot.pause()
        assert cleared == [] and table.cursor_row == 7 and table.row_count == len(ROWS)

        table.replace_rows(ROWS[1:])  # one record gone: the table is rebuilt
        await pilot.pause()
        assert cleared == [1] and table.row_count == len(ROWS) - 1
        assert table.current == 8  # the cursor stayed on the record it was on

        table.move_cursor(row=3)
        changed = [(k, (c[0], c[1], "429 Too Many Requests" if k == 5 else c[2]))
                   for k, c in ROWS[1:]]
        table.replace_rows(changed)  # the same records, one cell changed: no new layout
        await pilot.pause()
        assert cleared == [1] and table.cursor_row == 3
        assert str(table.get_row("5")[2]) == "429 Too Many Requests"
        assert str(table.get_row("6")[2]) == "503 Service Unavailable"
