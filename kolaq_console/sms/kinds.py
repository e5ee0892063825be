"""The message kinds: their texts, the values each offers to WhatsApp templates, and keys.

SMS bodies are short and stay in GSM-7 where they can (a currency code, not `₦`, which alone
would make the whole text UCS-2 and halve what a segment holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

KINDS = (
    "order_confirmation",
    "shipping_notification",
    "order_status_update",
    "low_stock",
    "generic",
)
ORDER_KINDS = ("order_confirmation", "shipping_notification", "order_status_update")
CHANNELS = ("sms", "whatsapp")

# The values a WhatsApp template of each kind may use, by name; config lists them in the
# order of the template's {{1}}, {{2}}, ...
VARIABLES: dict[str, tuple[str, ...]] = {
    "order_confirmation": ("shop", "customer_name", "order_number", "total"),
    "shipping_notification": (
        "shop", "customer_name", "order_number", "carrier", "tracking_number", "tracking_url",
    ),
    "order_status_update": ("shop", "customer_name", "order_number", "status", "status_message"),
    "low_stock": ("shop", "count", "products"),
    "generic": ("shop", "body"),
}

ZERO_DECIMAL = {"JPY", "KRW", "XOF", "XAF", "UGX", "RWF"}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        from kolaq_console.errors import UserError

        raise UserError(f"unknown message kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return kind


def check_template_variables(kind: str, variables: list[str]) -> None:
    """ValueError naming the problem if a configured template does not fit its kind."""
    if kind not in VARIABLES:
        raise ValueError(f"unknown message kind {kind!r} for a WhatsApp template; expected one "
                         f"of: {', '.join(KINDS)}")
    unknown = [v for v in variables if v not in VARIABLES[kind]]
    if unknown:
        raise ValueError(f"template of {kind} names unknown variable(s) {', '.join(unknown)}; "
                         f"{kind} offers: {', '.join(VARIABLES[kind])}")


def money(minor: int | None, currency: str) -> str:
    """`NGN 27,500.00`: GSM-7 safe, unlike most currency symbols."""
    if minor is None:
        return "-"
    code = (currency or "").upper()
    digits = 0 if code in ZERO_DECIMAL else 2
    return f"{code} {Decimal(int(minor)).scaleb(-digits):,.{digits}f}"


def first_name(name: str | None) -> str:
    return (name or "").strip().split(" ")[0]


def render(kind: str, values: Mapping[str, str]) -> str:
    """The SMS text of `kind` (also the preview of a WhatsApp template's message)."""
    v = values
    greeting = f" {v['customer_name']}" if v.get("customer_name") else ""
    if kind == "order_confirmation":
        return (f"{v['shop']}: thank you{greeting}! Order {v['order_number']} is confirmed, "
                f"total {v['total']}. We will text you when it ships.")
    if kind == "shipping_notification":
        track = v.get("tracking_url") or v.get("tracking_number", "")
        return (f"{v['shop']}: order {v['order_number']} has shipped with {v['carrier']}. "
                f"Track it: {track}")
    if kind == "order_status_update":
        return f"{v['shop']}: order {v['order_number']} is {v['status']}. {v['status_message']}"
    if kind == "low_stock":
        return f"{v['shop']} low stock ({v['count']}): {v['products']}"
    return v["body"]


def low_stock_summary(products: list[Mapping[str, object]], limit: int | None = None) -> str:
    """`KB-ORIG-750 4/10, KB-BAR-SPOON 0/5` (stock/threshold), the first `limit` products and
    `+N more`."""
    shown = products if limit is None else products[:limit]
    text = ", ".join(f"{p['sku']} {p['stock']}/{p['threshold']}" for p in shown)
    rest = len(products) - len(shown)
    return f"{text} +{rest} more" if rest > 0 else text
