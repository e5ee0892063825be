"""What a reconciliation run reports and leaves behind, for every kind of run (reconcile.py,
incremental.py): the result, the products it changed, and the end of a bulk run - the
checkpoint, the run's summary entry and correction entries - written in its final transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from kolaq_console.inventory.stock import CHECKPOINT_KEY
from kolaq_console.models import ActivityLog, SystemState
from kolaq_console.sqlutil import upsert_insert

ACTION_PRODUCT = "inventory.reconcile"
ACTION_RUN = "inventory.reconcile.run"
ACTION_REFUSED = "inventory.reconcile.refused"
SUMMARY_CHANGES = 500  # [sku, old, new] triples listed in a run's summary entry, at most


@dataclass(slots=True)
class Change:
    product_id: int
    sku: str
    old: int
    new: int
    folded_events: int = 0  # events newly covered by the cache
    unexplained: int = 0  # part of the correction no event explains (full and one-product runs)
    # what the plan saw; the write checks the row still holds these
    seen_mark: int = 0

    @property
    def drift(self) -> int:
        return self.new - self.old

    def details(self, mode: str, trigger: str | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "old": self.old, "new": self.new, "drift": self.drift, "reason": "reconciliation",
            "mode": mode, "folded_events": self.folded_events, "unexplained": self.unexplained,
        }
        if trigger:
            d["trigger"] = trigger
        return d


# A change as a bulk fold returns it: (product_id, sku, old, drift, folded_events).
ChangeRow = tuple[int, str, int, int, int]


class ChangeRows(Sequence[Change]):
    """The changes of a run that only folds events (the incremental ones), kept as the rows
    its query returned: each `Change` is made when the changes are first read. The periodic
    job reads only the summary, and 950 objects were ~7% of a run on SQLite."""

    __slots__ = ("_made", "rows")

    def __init__(self, rows: list[ChangeRow]) -> None:
        self.rows = rows
        self._made: list[Change] | None = None

    def _changes(self) -> list[Change]:
        if self._made is None:
            self._made = [Change(pid, sku, old, old + drift, n)
                          for pid, sku, old, drift, n in self.rows]
        return self._made

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self._changes()[index]

    def __iter__(self) -> Iterator[Change]:
        return iter(self._changes())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return self._changes() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._changes())


@dataclass
class ReconcileResult:
    mode: str  # incremental | full | product
    checked: int = 0
    changed: int = 0
    events_folded: int = 0
    unexplained: int = 0  # products whose correction no event explains
    checkpoint_from: int | None = None
    checkpoint_to: int | None = None
    duration_ms: int = 0
    changes: Sequence[Change] = field(default_factory=list)  # a list, or ChangeRows
    # products left as they were because their events could not be folded: [sku, reason]
    refused: list[list[str]] = field(default_factory=list)
    # products changed to a stock beyond +/-max_stock: [sku, stock]
    out_of_range: list[list[Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Every field but the changes; `refused` and `out_of_range` only when not empty."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "changes"
                and not (f.name in ("refused", "out_of_range") and not getattr(self, f.name))}

    def note_out_of_range(self, max_stock: int | None) -> None:
        if max_stock is None:
            return
        if isinstance(self.changes, ChangeRows):
            self.out_of_range = [[sku, old + drift] for _pid, sku, old, drift, _n
                                 in self.changes.rows if abs(old + drift) > max_stock]
        else:
            self.out_of_range = [[c.sku, c.new] for c in self.changes if abs(c.new) > max_stock]

    def log_details(self) -> dict[str, Any]:
        """The run's summary entry: the summary plus the products changed as [sku, old, new]
        (the first SUMMARY_CHANGES of them; "more" counts the rest), so it stays bounded."""
        d = self.summary()
        if isinstance(self.changes, ChangeRows):
            d["changes"] = [[sku, old, old + drift] for _pid, sku, old, drift, _n
                            in self.changes.rows[:SUMMARY_CHANGES]]
        else:
            d["changes"] = [[c.sku, c.old, c.new] for c in self.changes[:SUMMARY_CHANGES]]
        d["more"] = max(0, len(self.changes) - SUMMARY_CHANGES)
        return d

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        d = self.summary()
        shown = self.changes if limit is None else self.changes[:limit]
        d["changes"] = [
            {"sku": c.sku, "old": c.old, "new": c.new, "drift": c.drift,
             "folded_events": c.folded_events, "unexplained": c.unexplained}
            for c in shown
        ]
        return d


def correction_rows(changes: Iterable[Change], actor: str, mode: str, trigger: str | None,
                    now: datetime) -> list[dict[str, Any]]:
    """One activity entry per product with drift no event explains (folding is not audited
    per product: the events are the trail, and the run's summary lists the changes)."""
    return [
        {"actor": actor, "action": ACTION_PRODUCT, "entity": "product", "entity_id": c.sku,
         "details": c.details(mode, trigger), "created_at": now}
        for c in changes if c.unexplained
    ]


@cache
def save_state_stmt(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (key) DO UPDATE, built once per dialect (Core: every run saves
    its checkpoint, and the ORM's bookkeeping would cost more than the statement)."""
    table = SystemState.__table__  # type: ignore[attr-defined]
    stmt = upsert_insert(dialect, table).values(key=bindparam("b_key"),
                                                value=bindparam("b_value"),
                                                updated_at=bindparam("b_now"))
    return stmt.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at})


@cache
def summary_stmt() -> Insert:
    """The run's summary entry in the activity log (parameters: actor, details, b_now), built
    once: every bulk run writes it, the incremental ones on the driver's connection."""
    return insert(ActivityLog.__table__).values(  # type: ignore[attr-defined]
        actor=bindparam("actor"), action=ACTION_RUN, entity="inventory", entity_id=None,
        details=bindparam("details", type_=ActivityLog.__table__.c.details.type),  # type: ignore[attr-defined]
        created_at=bindparam("b_now"))


def close_run(result: ReconcileResult, applied: Sequence[Change], checkpoint: int,
              high_water: int, previous: dict[str, Any] | None, started: float, now: datetime,
              max_stock: int | None = None) -> dict[str, Any]:
    """Fill in the result of a bulk run that is about to commit and return the reconciliation
    state to save with it (checkpoint := H, unless a product was refused)."""
    if result.refused:
        high_water = checkpoint  # the refused products' events stay above the checkpoint
    value = dict(previous or {})
    value["event_id"] = high_water
    if result.refused:
        # the checkpoint stays, and so does its time (a state from before "checkpoint_at"
        # was kept: its last run's time, which stock.reconciled_times reads in its place)
        value.setdefault("checkpoint_at", value.get("at"))
    else:  # every product's stock verified up to the checkpoint now: its reconciled time
        value["checkpoint_at"] = now.isoformat()
        if result.mode == "full":
            value["full_at"] = now.isoformat()
    value["at"] = now.isoformat()
    result.changes = applied
    result.changed = len(applied)
    if isinstance(applied, ChangeRows):  # folded events only: nothing unexplained
        result.events_folded = sum([row[4] for row in applied.rows])
        result.unexplained = 0
    else:
        result.events_folded = sum(c.folded_events for c in applied)
        result.unexplained = sum(1 for c in applied if c.unexplained)
    result.note_out_of_range(max_stock)
    result.checkpoint_from, result.checkpoint_to = checkpoint, high_water
    result.duration_ms = int((time.perf_counter() - started) * 1000)
    return value


def finish_run(conn: Connection, result: ReconcileResult, applied: list[Change],
               checkpoint: int, high_water: int, previous: dict[str, Any] | None, actor: str,
               started: float, now: datetime, max_stock: int | None = None) -> None:
    """Checkpoint := H (unless a product was refused) and the run's summary entry, in the
    run's final transaction (whose first statement gave the lease back: `Lease.give_back`).
    The incremental runs write the same two rows on the driver's connection (incremental.py,
    incremental_pg.py)."""
    value = close_run(result, applied, checkpoint, high_water, previous, started, now,
                      max_stock)
    conn.execute(save_state_stmt(conn.dialect.name),
                 {"b_key": CHECKPOINT_KEY, "b_value": value, "b_now": now})
    conn.execute(summary_stmt(), {"actor": actor, "details": result.log_details(), "b_now": now})
