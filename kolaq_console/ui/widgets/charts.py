"""The overview's last-hour charts: depth, completed and failed per queue, one row each,
as wide as the terminal allows (1, 2, 3... minutes per column), each row with its scale, a
time axis below, and a dot where nothing was sampled (a gap is not a 0). A queue with nothing
waiting or run all hour takes one line, one with no failure has no failed row."""

from __future__ import annotations

import math

from textual.widgets import Static

from kolaq_console.jobs.depth import Charts

BLOCKS = "▁▂▃▄▅▆▇█"
GAP = "[dim]·[/]"
LABEL = 17  # "inventory failed "
SCALE = 10  # " max 1234 " (a done row may add "· 0 failed" past it: the scale column)
STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)  # minutes per column: divisors of an hour
COLOURS = {"depth": "$accent", "completed": "$success", "failed": "$error"}
NAMES = {"depth": "depth", "completed": "done", "failed": "failed"}


def minutes_per_column(minutes: int, width: int) -> int:
    """The fewest minutes per column for which the hour fits in `width` columns."""
    for step in STEPS:
        if math.ceil(minutes / step) <= width:
            return step
    return minutes


def columns(values: list[int | None], step: int, metric: str) -> list[int | None]:
    """Minutes folded into columns: depth takes the highest sample, counts add up; a column
    with no sample at all stays None."""
    out: list[int | None] = []
    for start in range(0, len(values), step):
        known = [v for v in values[start:start + step] if v is not None]
        if not known:
            out.append(None)
        else:
            out.append(max(known) if metric == "depth" else sum(known))
    return out


def bar(values: list[int | None], top: int, colour: str, widen: int = 1) -> str:
    """One row: each value `widen` columns wide, scaled to `top`; · where not sampled."""
    cells = []
    for v in values:
        if v is None:
            cells.append(GAP)
        elif v == 0 or top == 0:
            cells.append(" ")
        else:
            level = min(len(BLOCKS), max(1, math.ceil(v / top * len(BLOCKS))))
            cells.append(f"[{colour}]{BLOCKS[level - 1]}[/]")
    return "".join(cell * widen for cell in cells)


def render_charts(charts: Charts, width: int) -> str:
    """The chart rows and the axis as markup, for a content area `width` columns wide."""
    room = max(width - LABEL - SCALE, 12)
    step = minutes_per_column(charts.minutes, room)
    widen = max(room // charts.minutes, 1)  # a wide terminal: several columns per minute
    lines = []
    for queue, series in charts.queues.items():
        if all(not v for m in ("depth", "completed", "failed") for v in getattr(series, m)):
            known = any(v is not None for v in series.depth + series.completed)
            lines.append(f"[b]{queue:<10}[/][dim]" + ("idle: no job waiting or run this hour"
                         if known else "no sample this hour") + "[/]")
            continue
        # Nothing failed all hour: no row of blanks, the done row says so.
        none_failed = not any(series.failed)
        metrics = ("depth", "completed") if none_failed else ("depth", "completed", "failed")
        for n, metric in enumerate(metrics):
            cols = columns(getattr(series, metric), step, metric)
            top = max((v for v in cols if v is not None), default=None)
            name = queue if n == 0 else ""
            scale = "[dim]no data[/]" if top is None else f"[dim]max[/] {top}"
            if metric == "completed" and none_failed:
                scale += " [dim]· 0 failed[/]"
            lines.append(f"[b]{name:<10}[/][dim]{NAMES[metric]:<7}[/]"
                         f"{bar(cols, top or 0, COLOURS[metric], widen)} {scale}")
    drawn = math.ceil(charts.minutes / step) * widen
    start, middle, end = f"-{charts.minutes}m", f"-{charts.minutes // 2}m", "now"
    axis = list("─" * drawn)
    gap = drawn - len(start) - len(end)
    if gap > len(middle) + 2:
        at = drawn // 2 - len(middle) // 2
        axis[at:at + len(middle)] = middle
    axis[:len(start)] = start
    axis[drawn - len(end):] = end
    per = f"{widen} cols = 1 min" if widen > 1 else f"1 col = {step} min"
    lines.append(" " * LABEL + "[dim]" + "".join(axis) + f" {per}  · no sample[/]")
    return "\n".join(lines)


class LastHourCharts(Static):
    """Redrawn with the data it was last given whenever its width changes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=True, **kwargs)
        self.charts: Charts | None = None
        self.unknown = "[b $warning]Charts unknown[/]: the database cannot be read."

    def show(self, charts: Charts | None) -> None:
        self.charts = charts
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self.charts is None:
            self.update(self.unknown)
            return
        width = self.content_size.width or (self.app.size.width - 4)
        self.update(render_charts(self.charts, width))
