"""`kolaq-console orders ...`: list, show (lines, payment, emails and their delivery state,
webhook events, activity) and set-status (validated; its customer email goes out once)."""

from __future__ import annotations

from typing import Any

import typer

from kolaq_console.cli.common import shop_time

app = typer.Typer(help="Orders: list, show, change status.", no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="One JSON document.")


def _money(minor: int | None, currency: str) -> str:
    from kolaq_console.emails.render import money

    return money(minor, currency)


def _when(value: Any) -> str:
    """A time on the shop's clock, with its zone (a stored time is UTC: printed as it was, it
    read an hour early in Lagos beside the console's)."""
    return shop_time(value, "%Y-%m-%d %H:%M %Z")


@app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, "--status", help="pending, paid, processing, "
                                      "shipped, delivered, cancelled, refunded."),
    search: str | None = typer.Option(None, "--search", help="Part of a number or an address."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Orders, newest first."""
    from sqlmodel import Session

    from kolaq_console.cli.common import out, print_json, ready_engine
    from kolaq_console.orders.queries import list_orders

    with Session(ready_engine()) as session:
        orders = list_orders(session, status=status, limit=limit, search=search)
    if as_json:
        print_json({"orders": orders})
        return
    from rich.table import Table

    table = Table(title=f"Orders ({len(orders)})", title_justify="left")
    for column in ("number", "status", "payment", "customer", "total", "created"):
        table.add_column(column, justify="right" if column == "total" else "left")
    for o in orders:
        table.add_row(o["number"], o["status"], o["payment_status"], o["customer_email"] or "-",
                      _money(o["total_minor"], o["currency"]),
                      shop_time(o["created_at"]))
    out.print(table)


@app.command("show")
def show_cmd(number: str = typer.Argument(..., metavar="NUMBER"), as_json: bool = JsonOpt) -> None:
    """One order with its lines, payment, emails (with delivery state) and activity."""
    from sqlmodel import Session

    from kolaq_console.cli.common import out, print_json, ready_engine
    from kolaq_console.orders.queries import order_detail

    with Session(ready_engine()) as session:
        d = order_detail(session, number)
    if as_json:
        print_json(d)
        return
    cur = d["currency"]
    p, s = d["payment"], d["shipping"]
    lines = [
        f"order {d['number']}  {d['status']}  ({d['customer_name'] or ''} "
        f"<{d['customer_email'] or '-'}>)",
        f"  payment   {p['status']} via {p['provider'] or '-'}, reference "
        f"{p['reference'] or '-'}, paid {_when(p['paid_at'])}",
        f"  shipping  {s['carrier'] or '-'} {s['tracking_number'] or ''} {s['tracking_url'] or ''}",
        "",
    ]
    for line in d["lines"]:
        lines.append(f"  {line['quantity']:>3} x {line['name']:<40} "
                     f"{_money(line['total_minor'], cur):>14}")
    # the fee is part of the total: without it the lines never added up to it
    lines.append(f"  {'shipping':>46} {_money(d['shipping_minor'], cur):>14}")
    lines.append(f"  {'total':>46} {_money(d['total_minor'], cur):>14}")
    lines.append("")
    lines.append("emails:")
    for e in d["emails"] or []:
        lines.append(f"  #{e['id']:<5} {e['kind']:<22} {e['status']:<8} "
                     f"delivery {e['delivery_status'] or 'unknown':<12} {e['to']}")
    if not d["emails"]:
        lines.append("  none")
    if d["webhooks"]:
        lines.append("webhook events:")
        for w in d["webhooks"]:
            lines.append(f"  #{w['id']:<5} {w['provider']:<9} {w['event_type']:<28} "
                         f"{w['status']:<9} {w['error'] or ''}")
    lines.append("activity (newest first):")
    for a in d["activity"][:20]:
        lines.append(f"  {_when(a['at'])}  {a['actor']:<12} {a['action']:<16} {a['details']}")
    out.print("\n".join(lines), markup=False)


@app.command("set-status")
def set_status_cmd(
    number: str = typer.Argument(..., metavar="NUMBER"),
    status: str = typer.Argument(..., metavar="STATUS"),
    carrier: str | None = typer.Option(None, "--carrier", help="Carrier (shipped)."),
    tracking: str | None = typer.Option(None, "--tracking", help="Tracking number (shipped)."),
    tracking_url: str | None = typer.Option(None, "--tracking-url", help="Tracking link."),
    note: str | None = typer.Option(None, "--note", help="Written to the activity log."),
    as_json: bool = JsonOpt,
) -> None:
    """Change an order's status; its customer email is queued once. Asking for the status it
    already has changes nothing and sends nothing."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, out, print_json, ready_engine
    from kolaq_console.orders.lifecycle import set_status

    settings = runtime.settings()
    huey()  # wire the queue: the email's send job is enqueued after commit
    with Session(ready_engine(), expire_on_commit=False) as session:
        change = set_status(session, settings, number, status, actor=settings.operator(),
                            note=note, carrier=carrier, tracking=tracking,
                            tracking_url=tracking_url)
    if as_json:
        print_json({"number": change.order.number, "from": change.old, "to": change.new,
                    "changed": change.changed, "emails": change.emails,
                    "stock_events": change.stock_events})
    else:
        out.print(change.describe(), markup=False)
