"""`low_stock`: the consolidated alert to the admin, one per shop-local day unless the
inventory check passes its own key (follow-ups)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails.composers.base import Composition, composer
from kolaq_console.emails.request import EmailRequest, validate_address
from kolaq_console.errors import UserError
from kolaq_console.models import utcnow


def _products(products: Any) -> list[dict[str, Any]]:
    if not isinstance(products, Sequence) or isinstance(products, str) or not products:
        raise UserError("low_stock email needs a non-empty list of products")
    out = []
    for i, p in enumerate(products):
        item = dict(p) if isinstance(p, Mapping) else None
        missing = [k for k in ("sku", "name", "stock", "threshold") if not item or k not in item]
        if missing or item is None:
            raise UserError(f"low_stock product #{i + 1} lacks {', '.join(missing)}")
        item.setdefault("units_sold_7d", None)
        item.setdefault("days_of_cover", None)
        out.append(item)
    return out


@composer("low_stock")
def low_stock(session: Session, settings: Settings, request: EmailRequest) -> Composition:
    to = (
        validate_address(request.to) if request.to
        else validate_address(settings.email.admin_email, "admin", configured=True)
    )
    ctx = dict(request.context)
    ctx["products"] = _products(ctx.get("products"))
    ctx["follow_up"] = bool(ctx.get("follow_up"))  # a later alert listing newcomers only
    today = utcnow().astimezone(settings.shop.zone).date().isoformat()
    ctx.setdefault("as_of", today)
    return Composition(to=to, context=ctx, key=f"low_stock/{today}")
