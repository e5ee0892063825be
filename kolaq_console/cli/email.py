"""`kolaq-console email ...`: queue, list, show, preview and resend outbox emails."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from kolaq_console.cli.common import SECONDS, huey, out, print_json, ready_engine, shop_time
from kolaq_console.errors import NotFound, UserError

if TYPE_CHECKING:
    from sqlmodel import Session

    from kolaq_console.models import EmailOutbox

app = typer.Typer(help="Email outbox: queue, list, show, preview, resend.", no_args_is_help=True)

# The kinds are not listed here: that would import the renderer (Jinja) for --help. An unknown
# kind is refused with the list.
KIND_HELP = "Email kind, e.g. order_confirmation, low_stock, generic."


def _read_body(path: Path | None) -> str | None:
    """The --body-file's text; a file over [email] max_body_bytes is refused unread."""
    if path is None:
        return None
    from kolaq_console import runtime
    from kolaq_console.emails import outbox

    limit = runtime.settings().email.max_body_bytes
    try:
        size = path.stat().st_size
        if size > limit:
            raise outbox.body_limit_error(size, limit, f"--body-file {path}")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--body-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"--body-file {path}: not UTF-8 text") from None


def _kind(kind: str) -> str:
    from kolaq_console.emails.composers import known_kind

    return known_kind(kind)


def _context(session: Session, kind: str) -> dict:
    if kind != "low_stock":
        return {}
    from kolaq_console import runtime
    from kolaq_console.inventory.alert import email_context
    from kolaq_console.inventory.lowstock import low_stock_products

    settings = runtime.settings()
    items = low_stock_products(session, settings.inventory.low_stock_threshold, with_sales=True)
    if not items:
        raise UserError("no product is at or below its low-stock threshold; nothing to send")
    return email_context(items)


@app.command("queue")
def queue_cmd(
    kind: str = typer.Argument(..., help=KIND_HELP),
    order: str | None = typer.Option(None, "--order", help="Order number (order emails)."),
    to: str | None = typer.Option(None, "--to", help="Recipient (default: the order's customer,"
                                  " or the admin for low_stock)."),
    subject: str | None = typer.Option(None, "--subject", help="Subject (generic, broadcast)."),
    body_file: Path | None = typer.Option(None, "--body-file", help="Body: text (generic) or "
                                          "Markdown (broadcast)."),
    key: str | None = typer.Option(None, "--key", help="Idempotency key (default: derived)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Queue one email. The same logical email queued twice is sent once. `low_stock` is the
    low-stock alert: it lists the low products no alert listed today, and counts for the day
    (the 08:00 check then sends only follow-ups for products that fell low since)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.emails import EmailRequest, outbox

    kind = _kind(kind)
    if kind == "low_stock":
        _queue_low_stock(to, key, as_json)
        return
    body = _read_body(body_file)
    settings = runtime.settings()
    engine = ready_engine()
    huey()  # wire the queue (the send job is enqueued after commit); refuses before any write
    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest(kind, to=to, order_number=order, subject=subject, body=body,
                               context=_context(session, kind), idempotency_key=key)
        result = outbox.add(session, settings, request)
    row = result.row
    if as_json:
        print_json({**outbox.row_summary(row), "created": result.created})
    elif result.created:
        out.print(f"queued email #{row.id}: {row.kind} to {row.to_address} ({row.subject})",
                  markup=False)
    else:
        out.print(f"already queued as email #{row.id} ({row.status}); nothing new was queued. "
                  f"Use `email resend {row.id}` to send it again.", markup=False)


def _queue_low_stock(to: str | None, key: str | None, as_json: bool) -> None:
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.emails import outbox
    from kolaq_console.inventory.lowstock import send_alerts
    from kolaq_console.models import EmailOutbox

    if key:
        raise UserError("--key is not taken for low_stock: alerts are keyed per shop day "
                        "(low_stock/DATE/N) so that every alert sent counts for the day")
    settings = runtime.settings()
    engine = ready_engine()
    huey()  # wire the queue: the alert's send job is enqueued after commit
    outcome = send_alerts(engine, settings, actor=settings.operator(), to=to)
    if not outcome.queued and outcome.low == 0:
        raise UserError("no product is at or below its low-stock threshold; nothing to send")
    if not outcome.queued:
        if as_json:
            print_json({"created": False, "alert": outcome.as_dict()})
        else:
            out.print(f"no new low-stock alert: {outcome.reason} ({outcome.low} low product(s))",
                      markup=False)
        return
    with Session(engine) as session:
        row = session.get(EmailOutbox, outcome.outbox_id)
        assert row is not None
        summary = outbox.row_summary(row)
    if as_json:
        print_json({**summary, "created": True, "alert": outcome.as_dict()})
    else:
        kind = "follow-up alert" if outcome.follow_up else "alert"
        out.print(f"queued email #{row.id}: low-stock {kind} to {row.to_address} for "
                  f"{len(outcome.skus)} product(s) ({outcome.key})", markup=False)


@app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, "--status", help="queued, sending, sent, failed."),
    kind: str | None = typer.Option(None, "--kind", help=KIND_HELP),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Recent outbox rows, newest first."""
    from rich.table import Table
    from sqlmodel import Session

    from kolaq_console.emails import outbox

    with Session(ready_engine()) as session:
        rows = outbox.list_emails(session, status=status, kind=kind, limit=limit)
        summaries = [outbox.row_summary(r) for r in rows]
    if as_json:
        print_json({"emails": summaries})
        return
    table = Table(title=f"Emails ({len(rows)})", title_justify="left")
    for column in ("id", "status", "kind", "to", "tries", "updated", "subject / last error"):
        table.add_column(column, overflow="fold")
    for r in summaries:
        note = r["subject"] if r["status"] == "sent" else (r["last_error"] or r["subject"])
        table.add_row(
            str(r["id"]), r["status"], r["kind"], r["to"], str(r["attempts"]),
            shop_time(r["updated_at"], SECONDS), note,
        )
    out.print(table)


def _get(session: Session, row_id: int) -> EmailOutbox:
    from kolaq_console.models import EmailOutbox

    row = session.get(EmailOutbox, row_id)
    if row is None:
        raise NotFound(f"email #{row_id} not found")
    return row


@app.command("show")
def show_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (with bodies)."),
) -> None:
    """One outbox row with its text part."""
    from sqlmodel import Session

    from kolaq_console.emails import outbox
    from kolaq_console.emails.bodies import body_of

    with Session(ready_engine()) as session:
        row = _get(session, row_id)
        summary = outbox.row_summary(row)
        html, text = body_of(session, row)
    if as_json:
        print_json({**summary, "text": text, "html": html})
        return
    for name, value in summary.items():
        out.print(f"{name:>20}: {'' if value is None else value}", markup=False)
    out.print("", markup=False)
    out.print(text, markup=False)


@app.command("preview")
def preview_cmd(
    kind: str = typer.Argument(..., help=KIND_HELP),
    out_file: Path = typer.Option(..., "--out", help="Write the HTML part here."),
    order: str | None = typer.Option(None, "--order", help="Order number (order emails)."),
    to: str | None = typer.Option(None, "--to", help="Recipient."),
    subject: str | None = typer.Option(None, "--subject"),
    body_file: Path | None = typer.Option(None, "--body-file"),
    text: bool = typer.Option(False, "--text", help="Also print the plain-text part."),
) -> None:
    """Render an email without queueing it: HTML to --out, subject (and text) to stdout."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.emails import EmailRequest, compose

    kind = _kind(kind)
    body = _read_body(body_file)
    with Session(ready_engine()) as session:
        context = _context(session, kind)
        if kind == "broadcast":  # a copy as one recipient (or the admin) would see it
            context = {"test": True}
        request = EmailRequest(kind, to=to, order_number=order, subject=subject, body=body,
                               context=context)
        draft = compose(session, runtime.settings(), request)
        session.rollback()  # preview writes nothing
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(draft.html, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--out {out_file}: {exc.strerror or exc}") from None
    out.print(f"wrote {out_file} ({kind} to {draft.to}: {draft.subject})", markup=False)
    if text:
        out.print(draft.text, markup=False)


@app.command("resend")
def resend_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
) -> None:
    """Send an email again: a new outbox row with a new key, noted in the activity log. The
    original's open failed send jobs are closed (a retry of them would send a second copy)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.emails import outbox

    settings = runtime.settings()
    engine = ready_engine()
    huey()  # wire the queue (the send job is enqueued after commit); refuses before any write
    with Session(engine, expire_on_commit=False) as session:
        resent = outbox.resend_email(session, settings, row_id, settings.operator())
    row = resent.row
    if as_json:
        print_json({**outbox.row_summary(row), "resend_of": row_id,
                    "closed_failed_jobs": resent.closed_failed_jobs})
        return
    out.print(f"queued email #{row.id} (resend of #{row_id}) to {row.to_address}", markup=False)
    if resent.closed_failed_jobs:
        ids = ", ".join(f"#{i}" for i in resent.closed_failed_jobs)
        out.print(f"closed failed job {ids} of email #{row_id}: it will not be retried",
                  markup=False)
