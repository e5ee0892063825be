"""`kolaq-console sms ...`: queue, list, show, preview, resend and retry SMS/WhatsApp messages.

Top-level imports stay light (typer + stdlib): the domain is imported inside each command.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="SMS and WhatsApp messages: queue, list, show, preview, resend, retry.",
                  no_args_is_help=True)

KIND_HELP = ("order_confirmation, shipping_notification, order_status_update, low_stock or "
             "generic.")
CHANNEL_HELP = "sms or whatsapp (default: [sms] channel)."


def _read_body(path: Path | None) -> str | None:
    from kolaq_console.errors import UserError

    if path is None:
        return None
    try:
        # 1,600 characters are at most 6,400 bytes of UTF-8: a larger file is refused unread.
        if path.stat().st_size > 6400:
            raise UserError(f"--body-file {path}: larger than a message can be (Twilio takes "
                            "at most 1,600 characters)")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--body-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"--body-file {path}: not UTF-8 text") from None


def _context(session, kind: str) -> dict | None:
    if kind != "low_stock":
        return None
    from kolaq_console import runtime
    from kolaq_console.errors import UserError
    from kolaq_console.inventory.lowstock import low_stock_products

    items = low_stock_products(session, runtime.settings().inventory.low_stock_threshold)
    if not items:
        raise UserError("no product is at or below its low-stock threshold; nothing to send")
    return {"products": [{"sku": p.sku, "stock": p.stock, "threshold": p.threshold}
                         for p in items]}


def _print_row(summary: dict) -> None:
    from kolaq_console.cli.common import out

    for name, value in summary.items():
        if name != "body":
            out.print(f"{name:>20}: {'' if value is None else value}", markup=False)
    out.print("", markup=False)
    out.print(summary["body"], markup=False)


@app.command("queue")
def queue_cmd(
    kind: str = typer.Argument(..., help=KIND_HELP),
    order: str | None = typer.Option(None, "--order", help="Order number (order kinds)."),
    to: str | None = typer.Option(None, "--to", help="Recipient number, e.g. +2348031234567 "
                                  "(default: the order's customer, or [sms] admin_phone)."),
    body_file: Path | None = typer.Option(None, "--body-file", help="Body of a generic "
                                          "message (plain text)."),
    channel: str | None = typer.Option(None, "--channel", help=CHANNEL_HELP),
    key: str | None = typer.Option(None, "--key", help="Idempotency key (default: derived)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Queue one message. The same logical message queued twice is sent once."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, out, print_json, ready_engine
    from kolaq_console.sms import kinds, outbox

    kinds.check_kind(kind)
    body = _read_body(body_file)
    settings = runtime.settings()
    huey()  # wire the queue: the new row's send job is enqueued after commit
    with Session(ready_engine(), expire_on_commit=False) as session:
        result = outbox.queue_message(
            session, settings, kind, channel=channel, to=to, order_number=order, body=body,
            context=_context(session, kind), idempotency_key=key,
        )
    row = result.row
    if as_json:
        print_json({**outbox.row_summary(row), "created": result.created})
    elif result.created:
        size = f", {row.segments} segment(s) {row.encoding}" if row.segments else ""
        out.print(f"queued message #{row.id}: {row.channel} {row.kind} to {row.to_number}"
                  f"{size}", markup=False)
    else:
        out.print(f"already queued as message #{row.id} ({row.status}); nothing new was "
                  f"queued. Use `sms resend {row.id}` to send it again.", markup=False)


@app.command("preview")
def preview_cmd(
    kind: str = typer.Argument(..., help=KIND_HELP),
    order: str | None = typer.Option(None, "--order", help="Order number (order kinds)."),
    to: str | None = typer.Option(None, "--to", help="Recipient number."),
    body_file: Path | None = typer.Option(None, "--body-file", help="Body (generic)."),
    channel: str | None = typer.Option(None, "--channel", help=CHANNEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Show a message without queueing it: recipient, segments (SMS) or template, text."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import out, print_json, ready_engine
    from kolaq_console.sms import kinds, outbox

    kinds.check_kind(kind)
    body = _read_body(body_file)
    with Session(ready_engine()) as session:
        draft = outbox.build_message(session, runtime.settings(), kind, channel=channel, to=to,
                                     order_number=order, body=body,
                                     context=_context(session, kind))
        session.rollback()  # a preview writes nothing
    doc = {
        "channel": draft.channel, "kind": draft.kind, "to": draft.to, "from": draft.from_number,
        "segments": draft.segments.segments if draft.segments else None,
        "encoding": draft.segments.encoding if draft.segments else None,
        "units": draft.segments.units if draft.segments else None,
        "content_sid": draft.content_sid, "content_variables": draft.content_variables,
        "idempotency_key": draft.idempotency_key, "body": draft.body,
    }
    if as_json:
        print_json(doc)
        return
    what = draft.segments.describe() if draft.segments else f"template {draft.content_sid} " \
        f"{draft.content_variables}"
    out.print(f"{draft.channel} {draft.kind} to {draft.to}: {what}", markup=False)
    out.print(draft.body, markup=False)


@app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, "--status", help="queued, sending, sent, failed, "
                                      "unknown or cancelled."),
    channel: str | None = typer.Option(None, "--channel", help="sms or whatsapp."),
    kind: str | None = typer.Option(None, "--kind", help=KIND_HELP),
    order: str | None = typer.Option(None, "--order", help="Messages of this order."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Recent messages of every channel, newest first."""
    from rich.table import Table
    from sqlmodel import Session, select

    from kolaq_console.cli.common import SECONDS, out, print_json, ready_engine, shop_time
    from kolaq_console.errors import NotFound
    from kolaq_console.models import Order
    from kolaq_console.sms import outbox

    with Session(ready_engine()) as session:
        order_id = None
        if order:
            found = session.exec(select(Order).where(Order.number == order)).first()
            if found is None:
                raise NotFound(f"order {order!r} not found")
            order_id = found.id
        rows = outbox.list_messages(session, status=status, channel=channel, kind=kind,
                                    order_id=order_id, limit=limit)
        summaries = [outbox.row_summary(r) for r in rows]
    if as_json:
        print_json({"messages": summaries})
        return
    table = Table(title=f"Messages ({len(rows)})", title_justify="left")
    for column in ("id", "channel", "status", "delivery", "kind", "to", "seg", "tries",
                   "updated", "text / last error"):
        table.add_column(column, overflow="fold")
    for r in summaries:
        note = r["last_error"] if r["status"] in ("failed", "unknown", "cancelled") else r["body"]
        table.add_row(
            str(r["id"]), r["channel"], r["status"], r["delivery_status"] or "", r["kind"],
            r["to"], "" if r["segments"] is None else str(r["segments"]), str(r["attempts"]),
            shop_time(r["updated_at"], SECONDS), (note or "")[:80],
        )
    out.print(table)


@app.command("show")
def show_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """One message with its text."""
    from sqlmodel import Session

    from kolaq_console.cli.common import print_json, ready_engine
    from kolaq_console.sms import outbox

    with Session(ready_engine()) as session:
        summary = outbox.row_summary(outbox.get_message(session, row_id))
    if as_json:
        print_json(summary)
    else:
        _print_row(summary)


@app.command("resend")
def resend_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Send a message again: a new row with a new key, noted in the activity log."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, out, print_json, ready_engine
    from kolaq_console.sms import outbox

    settings = runtime.settings()
    huey()
    with Session(ready_engine(), expire_on_commit=False) as session:
        row = outbox.resend_message(session, settings, row_id, settings.operator())
    if as_json:
        print_json(outbox.row_summary(row))
    else:
        out.print(f"queued message #{row.id} (send again of #{row_id}) to {row.to_number}",
                  markup=False)


@app.command("retry")
def retry_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", help="Retry an `unknown` message although it may "
                             "already have reached the recipient."),
) -> None:
    """Send a failed (or, with --yes, an unknown) message again under its own row."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, out, ready_engine
    from kolaq_console.sms import outbox

    settings = runtime.settings()
    huey()
    with Session(ready_engine(), expire_on_commit=False) as session:
        row = outbox.retry_message(session, settings, row_id, settings.operator(),
                                   accept_duplicate=yes)
    out.print(f"message #{row.id} queued again", markup=False)


@app.command("mark-sent")
def mark_sent_cmd(row_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Record that an `unknown` message did go out (you checked Twilio's console)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import out, ready_engine
    from kolaq_console.sms import outbox

    settings = runtime.settings()
    with Session(ready_engine(), expire_on_commit=False) as session:
        row = outbox.mark_sent_by_operator(session, settings, row_id, settings.operator())
    out.print(f"message #{row.id} marked sent", markup=False)


@app.command("kinds")
def kinds_cmd() -> None:
    """Each kind and the values its WhatsApp template may use ({{1}}, {{2}}, ... in config)."""
    from kolaq_console import runtime
    from kolaq_console.cli.common import out
    from kolaq_console.sms.kinds import KINDS, VARIABLES

    templates = runtime.settings().sms.whatsapp_templates
    for kind in KINDS:
        template = templates.get(kind)
        mark = f"template {template.content_sid} {template.variables}" if template else \
            "no WhatsApp template (SMS only)"
        out.print(f"{kind}: values {', '.join(VARIABLES[kind])}; {mark}", markup=False)
