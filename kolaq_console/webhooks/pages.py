"""The small branded pages of the unsubscribe link (autoescaped Jinja2, no script, no cookie)."""

from __future__ import annotations

import functools

from jinja2 import Environment, PackageLoader, select_autoescape

from kolaq_console.config import Settings


@functools.lru_cache(maxsize=1)
def _template():
    env = Environment(loader=PackageLoader("kolaq_console.webhooks", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html",)))
    return env.get_template("page.html")


def _render(settings: Settings, kind: str, title: str, **values: str) -> str:
    return _template().render(kind=kind, title=title, shop=settings.shop.name,
                              support=settings.email.support_email, **values)


def confirm_unsubscribe(settings: Settings, address: str) -> str:
    return _render(settings, "confirm", "Unsubscribe", address=address)


def unsubscribed(settings: Settings, address: str) -> str:
    return _render(settings, "done", "You are unsubscribed", address=address)


def invalid_link(settings: Settings, message: str) -> str:
    return _render(settings, "invalid", "This link does not work", message=message)
