"""A customer's record: consent per channel and suppression; then the failed jobs about
their messages, their orders, the emails sent to them, text messages and activity."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.content import Content
from textual.markup import escape

from kolaq_console.emails.render import money
from kolaq_console.lookup import customer_record
from kolaq_console.ui.format import when
from kolaq_console.ui.screens.records.base import (
    Record,
    RecordScreen,
    Related,
    activity_rows,
    email_rows,
    job_rows,
    text_rows,
)


def _yes(value: bool) -> str:
    return "[$success]yes[/]" if value else "[dim]no[/]"


def consent_line(consent: dict[str, Any], zone: Any) -> str:
    mail, sms, wa = consent["email"], consent["sms"], consent["whatsapp"]
    parts = [f"marketing email {_yes(mail['marketing'])}"]
    if mail["unsubscribed_at"]:
        parts[-1] += f" (unsubscribed {when(mail['unsubscribed_at'], zone)})"
    for name, channel in (("sms", sms), ("whatsapp", wa)):
        text = f"{name} {_yes(channel['consent'])}"
        if channel["opted_out"]:
            text += f" [$warning](opted out: {escape(channel['opted_out'])})[/]"
        parts.append(text)
    return " · ".join(parts)


class CustomerRecordScreen(RecordScreen):
    MODE = "orders"
    KIND = "customer"
    LINKS = frozenset({"order", "email", "job"})
    TITLE_TEXT = "Customer"

    def read(self, session: Any) -> Record:
        d = customer_record(session, self.key)
        zone = self.console.settings.shop.zone
        at = partial(when, zone=zone)
        self.key = d["email"]
        e = escape
        sup = d["suppression"]
        blocked = ("[$error]suppressed: " + e(sup["reason"]) +
                   (f" ({e(sup['source'])})" if sup["source"] else "") + "[/]"
                   if sup else "[dim]not suppressed[/]")
        header = "\n".join([
            f"[b]{e(d['name'] or d['email'])}[/] <{e(d['email'])}>  "
            f"[dim]phone {e(d['phone'] or '-')} · since {when(d['created_at'], zone)}[/]",
            f"[b]Consent[/] {consent_line(d['consent'], zone)}",
            f"[b]Email[/]   {blocked}",
        ])
        rows: list[Related] = job_rows(d["failed_jobs"], at)
        rows += [Related("order", o["number"], o["status"],
                         f"{o['payment_status']} · {money(o['total_minor'], o['currency'])}",
                         at(o["created_at"])) for o in d["orders"]]
        rows += email_rows(d["emails"], at)
        rows += text_rows(d["texts"], at)
        rows += activity_rows(d["activity"], at)
        newest = d["orders"][0]["number"] if d["orders"] else None
        return Record(Content.from_markup(header), rows, {"order": newest})
