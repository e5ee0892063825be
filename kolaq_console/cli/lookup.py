"""`kolaq-console lookup TERM [--json]`: an order number (or its digits), a customer's email
address or a SKU, with the emails, failed jobs and activity about it. Exit 1 with one line
on stderr when nothing (or more than one thing) matches."""

from __future__ import annotations

from typing import Any

import typer

from kolaq_console.cli.common import out, print_json, shop_time


def lookup(
    term: str = typer.Argument(..., metavar="TERM",
                               help="Order number (KB-10009 or 10009), email address or SKU."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Everything about an order, a customer or a product: the record, its emails (with their
    state), the failed jobs about it and its activity, newest first."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import ready_engine
    from kolaq_console.lookup import lookup as read

    settings = runtime.settings()
    with Session(ready_engine()) as session:
        found = read(session, term, settings.inventory.low_stock_threshold)
    if as_json:
        print_json(found)
        return
    out.print("\n".join(_lines(found)), markup=False)


def _lines(d: dict[str, Any]) -> list[str]:
    from kolaq_console.emails.render import money

    lines: list[str] = []
    if d["order"]:
        o = d["order"]
        lines.append(f"order {o['number']}  {o['status']}  payment {o['payment']['status']}"
                     f"  {money(o['total_minor'], o['currency'])}")
        lines += [f"  {line['quantity']:>3} x {line['sku']:<14} {line['name']}"
                  for line in o["lines"]]
    if d["customer"]:
        c = d["customer"]
        consent = c["consent"]
        lines.append(f"customer {c['name'] or '-'} <{c['email']}>  phone {c['phone'] or '-'}")
        lines.append(f"  marketing email {'yes' if consent['email']['marketing'] else 'no'}"
                     f" · sms {'yes' if consent['sms']['consent'] else 'no'}"
                     f" · whatsapp {'yes' if consent['whatsapp']['consent'] else 'no'}"
                     f" · suppressed {(c['suppression'] or {}).get('reason') or 'no'}")
        for o in c.get("orders", [])[:10]:
            lines.append(f"  order {o['number']:<10} {o['status']:<10} "
                         f"{shop_time(o['created_at'])}")
    if d["product"]:
        p = d["product"]
        lines.append(f"product {p['sku']} {p['name']}  stock {p['stock']}"
                     f"  threshold {p['threshold']}")
        for e in p["events"][:10]:
            lines.append(f"  {shop_time(e['at'])}  {e['kind']:<10} {e['delta']:>+6}  "
                         f"{e['actor']}  {e['note'] or e['reference'] or ''}")
    lines.append("emails (newest first):" if d["emails"] else "emails: none")
    for e in d["emails"][:20]:
        lines.append(f"  #{e['id']:<6} {e['kind']:<22} {e['status']:<8} "
                     f"delivery {e['delivery_status'] or 'unknown':<12} {e['to']}")
    lines.append("failed jobs (newest first):" if d["failed_jobs"] else "failed jobs: none")
    for j in d["failed_jobs"][:20]:
        lines.append(f"  #{j['id']:<6} {j['task_name']:<24} {j['status']:<11} "
                     f"{j['error_message'][:60]}")
    lines.append("activity (newest first):" if d["activity"] else "activity: none")
    for a in d["activity"][:20]:
        lines.append(f"  {shop_time(a['at'])}  {a['actor']:<12} {a['action']:<22} {a['details']}")
    return lines
