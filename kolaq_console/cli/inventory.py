"""`kolaq-console inventory`: reconcile, low-stock, adjust, history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from kolaq_console.cli.common import err, huey, out, print_json, ready_engine, shop_time
from kolaq_console.errors import UserError

if TYPE_CHECKING:
    from kolaq_console.inventory.reconcile import ReconcileResult

app = typer.Typer(
    help="Stock from the event log: reconcile, low stock, adjustments, history.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SHOWN_CHANGES = 20


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A progress bar on stderr (transient); a no-op reporter when output is JSON."""
    if not enabled:
        yield lambda _stage, _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=True,
    ) as progress:
        tasks: dict[str, Any] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total or None)
            progress.update(tasks[stage], completed=done, total=total or None)

        yield report


def _print_result(result: ReconcileResult) -> None:
    from rich.table import Table

    s = result
    where = (f"events {s.checkpoint_from} -> {s.checkpoint_to}"
             if s.checkpoint_to is not None else "")
    out.print(
        f"reconciled ({s.mode}): {s.checked} product(s) checked, {s.changed} changed, "
        f"{s.events_folded} event(s) folded, {where}, {s.duration_ms / 1000:.2f} s"
    )
    if s.unexplained:
        out.print(f"warning: {s.unexplained} product(s) had drift no event explains "
                  "(see the activity log)")
    for sku, stock in s.out_of_range:
        out.print(f"warning: {sku} now holds {stock} units, beyond [inventory] max_stock: "
                  f"check its events (`inventory history {sku}`)", markup=False)
    for sku, why in s.refused:
        out.print(f"refused: {sku} was not reconciled ({why}); its stored stock is left as it "
                  f"was: check its events (`inventory history {sku}`)", markup=False)
    if s.changes:
        table = Table(title_justify="left")
        for column in ("sku", "old", "new", "drift", "unexplained"):
            table.add_column(column, justify="left" if column == "sku" else "right")
        for c in s.changes[:SHOWN_CHANGES]:
            table.add_row(c.sku, str(c.old), str(c.new), f"{c.drift:+d}", str(c.unexplained))
        out.print(table)
        if len(s.changes) > SHOWN_CHANGES:
            out.print(f"... and {len(s.changes) - SHOWN_CHANGES} more (see the activity log)")


@app.command("reconcile")
def reconcile_cmd(
    sku: str | None = typer.Option(None, "--sku", help="Only this product."),
    full: bool = typer.Option(
        False, "--full", help="Recompute every product from all events (default: events since "
        "the last run)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Bring stored stock in line with the event log. Each run writes one activity-log entry
    listing the products it changed; drift no event explains gets an entry per product."""
    from kolaq_console import runtime
    from kolaq_console.inventory.reconcile import reconcile, reconcile_product

    engine = ready_engine()
    settings = runtime.settings()
    actor = settings.operator()
    max_stock = settings.inventory.max_stock
    if sku:
        result = reconcile_product(engine, sku, actor=actor, max_stock=max_stock)
    else:
        with _progress(not as_json) as report:
            result = reconcile(engine, full=full, actor=actor,
                               lease_ttl=settings.inventory.lock_ttl_seconds, progress=report,
                               max_stock=max_stock)
    if any(c.unexplained for c in result.changes):
        from kolaq_console.alerts import reconciliation_report

        huey()  # wire the queue for the report's send job
        reconciliation_report(engine, settings, result)
    if as_json:
        print_json(result.as_dict())
    else:
        _print_result(result)
    if result.refused:
        raise UserError(f"{len(result.refused)} product(s) could not be reconciled: "
                        + ", ".join(sku for sku, _why in result.refused[:10])
                        + "; every other product was")


@app.command("low-stock")
def low_stock_cmd(
    send: bool = typer.Option(
        False, "--send", help="Queue the alert email to the admin (at most once a day for the "
        "same products)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """List active products at or below their threshold; with --send, alert the admin."""
    from rich.table import Table
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.inventory.lowstock import low_stock_products, send_alerts

    engine = ready_engine()
    settings = runtime.settings()
    with Session(engine) as session:
        items = low_stock_products(session, settings.inventory.low_stock_threshold,
                                   with_sales=True)
    outcome = None
    if send:
        huey()  # wire the queue (tasks.py) so the alert is enqueued after commit
        outcome = send_alerts(engine, settings, actor=settings.operator())
    if as_json:
        print_json({"default_threshold": settings.inventory.low_stock_threshold,
                    "products": [i.as_dict() for i in items],
                    "alert": outcome.as_dict() if outcome else None})
        return
    if not items:
        out.print("no product is at or below its threshold")
    else:
        table = Table(title=f"Low stock ({len(items)})", title_justify="left")
        for column in ("sku", "name", "stock", "threshold", "sold 7d", "days of cover"):
            table.add_column(column, justify="left" if column in ("sku", "name") else "right")
        for i in items:
            cover = "-" if i.days_of_cover is None else f"{i.days_of_cover:.1f}"
            table.add_row(i.sku, i.name, str(i.stock), str(i.threshold), str(i.sold_7d), cover)
        out.print(table)
    if outcome is not None:
        if outcome.queued:
            kind = "follow-up alert" if outcome.follow_up else "alert"
            out.print(f"{kind} queued to {settings.email.admin_email}: {outcome.key} "
                      f"({len(outcome.skus)} product(s))")
        else:
            out.print(f"no alert sent: {outcome.reason}")


@app.command(
    "adjust",
    context_settings={"ignore_unknown_options": True},  # so DELTA may be negative: -3
)
def adjust_cmd(
    sku: str = typer.Argument(..., metavar="SKU", help="Product SKU."),
    delta: str = typer.Argument(..., metavar="DELTA", help="Units to add (5) or remove (-3)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the activity log)."),
    allow_negative: bool = typer.Option(
        False, "--allow-negative", help="Record it even if stock goes below zero."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Record a stock adjustment as an inventory event (stock itself is never edited)."""
    from kolaq_console import runtime
    from kolaq_console.inventory import adjust as adjust_mod

    value = adjust_mod.parse_delta(delta)
    if not reason or not reason.strip():
        raise UserError("--reason is required: say why the stock changed")
    engine = ready_engine()
    settings = runtime.settings()
    result = adjust_mod.adjust(engine, settings, sku, value, reason,
                               allow_negative=allow_negative, actor=settings.operator())
    if as_json:
        print_json(result.as_dict())
        return
    out.print(f"{sku}: {result.stock_before} {result.delta:+d} -> {result.stock_after} "
              f"(event {result.event_id}, by {settings.operator()})")
    if result.low:
        line = f"{sku} is at or below its threshold ({result.stock_after} <= {result.threshold})"
        if result.alert and result.alert.queued:
            out.print(f"{line}: follow-up alert queued ({result.alert.key})")
        elif result.alert and "not run yet" in result.alert.reason:
            out.print(f"{line}: it will be in today's low-stock alert")
        else:
            out.print(f"{line}: already alerted today")


@app.command("history")
def history_cmd(
    sku: str = typer.Argument(..., metavar="SKU", help="Product SKU."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many events and entries."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """A product's latest inventory events and activity-log entries."""
    from rich.table import Table
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.inventory import adjust as adjust_mod

    engine = ready_engine()
    with Session(engine) as session:
        h = adjust_mod.history(session, sku, limit)
    if as_json:
        print_json(h)
        return
    threshold = h["threshold"] if h["threshold"] is not None else (
        f"{runtime.settings().inventory.low_stock_threshold} (default)")
    out.print(f"{h['sku']}  {h['name']}  stock {h['stock']} (stored {h['stored_stock']}), "
              f"threshold {threshold}, last reconciled {shop_time(h['last_reconciled_at'])}")
    table = Table(title="Events (newest first)", title_justify="left")
    for column in ("id", "time", "kind", "delta", "stock", "actor", "reference / note"):
        table.add_column(column, justify="right" if column in ("id", "delta", "stock") else "left")
    for e in h["events"]:
        table.add_row(str(e["id"]), shop_time(e["at"]), e["kind"], f"{e['delta']:+d}",
                      str(e["stock_after"]), e["actor"],
                      " ".join(x for x in (e["reference"], e["note"]) if x))
    out.print(table)
    if h["activity"]:
        table = Table(title="Activity", title_justify="left")
        for column in ("time", "actor", "action", "details"):
            table.add_column(column)
        for a in h["activity"]:
            d = a["details"]
            if "old" in d:
                text = f"{d['old']} -> {d['new']} ({d['drift']:+d}) {d.get('reason', '')}"
            else:
                text = ", ".join(f"{k}={v}" for k, v in d.items())
            table.add_row(shop_time(a["at"]), a["actor"], a["action"], text)
        out.print(table)
