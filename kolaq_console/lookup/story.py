"""`lookup TERM`: an order number, an address or a SKU resolved to one record, with the
emails, failed jobs and activity about it (the DESIGN contract: keys `order`, `customer`,
`product`, `emails`, `failed_jobs`, `activity`)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from kolaq_console.errors import NotFound, UserError
from kolaq_console.lookup.records import (
    address_story,
    customer_email,
    customer_record,
    customer_summary,
    order_number,
    order_record,
    product_record,
    product_sku,
)
from kolaq_console.lookup.search import MAX_TERM, find, normalise, order_prefixes

SHOWN_CHOICES = 5


def resolve(session: Session, term: str) -> tuple[str, str]:
    """(kind, key) of the one record `term` names: exactly an order number (or its digits), an
    address or a SKU; else the only match of a prefix search. Several or none: a UserError
    saying which."""
    text = normalise(term)
    if not text:
        raise UserError("give an order number, an email address or a SKU")
    if len(term.strip()) > MAX_TERM:
        raise UserError(f"a lookup term is at most {MAX_TERM} characters")
    for prefix in order_prefixes(session, text):
        number = order_number(session, prefix)
        if number:
            return "order", number
    if "@" in text:
        address = customer_email(session, text)
        return "customer", address or text
    sku = product_sku(session, text)
    if sku:
        return "product", sku
    matches = find(session, text, limit=SHOWN_CHOICES + 1)
    if len(matches) == 1:
        return matches[0].kind, matches[0].key
    if not matches:
        raise NotFound(f"no order, customer or product matches {term.strip()!r}")
    shown = ", ".join(f"{m.kind} {m.key}" for m in matches[:SHOWN_CHOICES])
    more = " …" if len(matches) > SHOWN_CHOICES else ""
    raise UserError(f"{term.strip()!r} matches several: {shown}{more}; be more precise")


def lookup(session: Session, term: str, default_threshold: int) -> dict[str, Any]:
    kind, key = resolve(session, term)
    out: dict[str, Any] = {"order": None, "customer": None, "product": None,
                           "emails": [], "failed_jobs": [], "activity": []}
    if kind == "order":
        record = order_record(session, key)
        out["order"] = {k: v for k, v in record.items()
                        if k not in ("emails", "failed_jobs", "activity")}
        if record["customer_email"]:
            out["customer"] = customer_summary(session, record["customer_email"])
            out["customer"].pop("id")
    elif kind == "customer":
        try:
            record = customer_record(session, key)
        except NotFound:  # an address that is no customer's: what was sent to it
            story = address_story(session, key)
            if not story["emails"]:
                raise NotFound(f"no customer and no email with address {key!r}") from None
            out["emails"] = story["emails"]
            return out
        out["customer"] = {k: v for k, v in record.items()
                           if k not in ("emails", "failed_jobs", "activity")}
    else:
        record = product_record(session, key, default_threshold)
        out["product"] = {k: v for k, v in record.items() if k not in ("failed_jobs", "activity")}
    out["emails"] = record.get("emails", [])
    out["failed_jobs"] = record["failed_jobs"]
    out["activity"] = record["activity"]
    return out
