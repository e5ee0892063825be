"""Render an email kind to (subject, HTML, text) with Jinja2 and one brand layout.

Templates live in this package (`templates/`); `[email] templates_dir` may hold files of the
same names that replace the packaged ones one by one. Per kind there are three:
`<kind>.subject.txt`, `<kind>.html` (autoescaped, CSS inlined with css-inline) and `<kind>.txt`
(the plain-text part every email carries).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import css_inline
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    select_autoescape,
)
from markupsafe import Markup, escape

from kolaq_console.config import Settings
from kolaq_console.errors import UserError

KINDS = (
    "order_confirmation",
    "shipping_notification",
    "order_status_update",
    "low_stock",
    "broadcast",
    "generic",
)

CURRENCY_SYMBOLS = {"NGN": "₦", "USD": "$", "GBP": "£", "EUR": "€", "GHS": "GH₵", "KES": "KSh "}
ZERO_DECIMAL = {"JPY", "KRW", "XOF", "XAF", "UGX", "RWF"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def money(minor: int | None, currency: str = "NGN") -> str:
    """Integer minor units as a price: 1250000, "NGN" -> "₦12,500.00"."""
    if minor is None:
        return "-"
    code = (currency or "").upper()
    symbol = CURRENCY_SYMBOLS.get(code, f"{code} ")
    digits = 0 if code in ZERO_DECIMAL else 2
    amount = f"{Decimal(int(minor)).scaleb(-digits):,.{digits}f}"
    sign = "-" if int(minor) < 0 else ""
    return f"{sign}{symbol}{amount.lstrip('-')}"


@functools.lru_cache(maxsize=256)
def country_name(code: str) -> str:
    """An ISO 3166 code as the country's everyday name ("NG" -> "Nigeria"); anything else as
    given (an address may already name its country)."""
    value = (code or "").strip()
    if len(value) not in (2, 3) or not value.isalpha():
        return value
    import pycountry  # only when an address is rendered

    found = pycountry.countries.get(**{f"alpha_{len(value)}": value.upper()})
    return getattr(found, "common_name", None) or getattr(found, "name", None) or value


def address_lines(address: Mapping[str, Any] | None) -> list[str]:
    """A shipping address dict (name, line1, line2, city, state, postal_code, country, phone)
    as display lines."""
    if not address:
        return []
    a = {k: str(v).strip() for k, v in address.items() if v is not None and str(v).strip()}
    lines = [a.get("name", ""), a.get("line1", ""), a.get("line2", "")]
    lines.append(" ".join(x for x in (a.get("city"), a.get("state"), a.get("postal_code")) if x))
    lines += [country_name(a.get("country", "")), a.get("phone", "")]
    return [line for line in lines if line]


def paragraphs(text: str | None) -> Markup:
    """Plain text as escaped HTML paragraphs (blank line = new paragraph, newline = <br>)."""
    parts = [p.strip("\n") for p in re.split(r"\n\s*\n", (text or "").replace("\r\n", "\n"))]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in p.split("\n")))
        for p in parts
        if p.strip()
    )


def safe_url(url: str | None) -> str:
    """Only http(s) and mailto links make it into an href; anything else becomes '#'."""
    value = (url or "").strip()
    return value if re.match(r"(?i)^(https?://|mailto:)", value) else "#"


def cover(days: float | None) -> str:
    if days is None:
        return "-"
    return f"{float(days):.1f}"


def markdown_html(source: str) -> Markup:
    """CommonMark to HTML with raw HTML disabled (it is shown escaped, never interpreted)."""
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).render(source or ""))


@functools.lru_cache(maxsize=8)
def environment(templates_dir: str = "") -> Environment:
    loaders = []
    if templates_dir:
        loaders.append(FileSystemLoader(templates_dir))
    loaders.append(PackageLoader("kolaq_console.emails", "templates"))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(
        money=money, address_lines=address_lines, paragraphs=paragraphs, url=safe_url, cover=cover
    )
    return env


def shop_context(settings: Settings) -> dict[str, Any]:
    return {
        "name": settings.shop.name,
        "public_url": settings.shop.public_url,
        "support_email": settings.email.support_email,
    }


def _tidy_text(text: str) -> str:
    # Templates leave runs of blank lines where optional blocks were skipped.
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def render(settings: Settings, kind: str, context: Mapping[str, Any]) -> Rendered:
    """Render `kind` with `context` (plus `shop`); template problems become a UserError."""
    if kind not in KINDS:
        raise UserError(f"unknown email kind {kind!r}; expected one of: {', '.join(KINDS)}")
    env = environment(settings.email.templates_dir)
    ctx = {"shop": shop_context(settings), **context}
    try:
        subject = " ".join(env.get_template(f"{kind}.subject.txt").render(ctx).split())
        ctx["subject"] = subject
        html = env.get_template(f"{kind}.html").render(ctx)
        text = env.get_template(f"{kind}.txt").render(ctx)
    except TemplateError as exc:
        where = getattr(exc, "filename", None) or getattr(exc, "name", None) or kind
        raise UserError(f"email template {where}: {exc}") from exc
    if not subject:
        raise UserError(f"email {kind}: the subject rendered empty")
    html = css_inline.inline(html, load_remote_stylesheets=False)
    return Rendered(subject=subject, html=html, text=_tidy_text(text))


def template_names(kinds: Iterable[str] = KINDS) -> list[str]:
    """Every template file a full override folder would contain."""
    names = ["layout.html", "layout.txt", "_macros.html"]
    for kind in kinds:
        names += [f"{kind}.subject.txt", f"{kind}.html", f"{kind}.txt"]
    return names
