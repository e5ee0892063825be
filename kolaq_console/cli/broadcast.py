"""`kolaq-console broadcast ...`: send (count, confirm, then a progress bar), list, show, pause,
resume, cancel. Workers do the sending; this command submits and watches.

Only typer and the standard library are imported here: the domain is imported inside each
command, so `kolaq-console --help` does not pay for it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Broadcasts: send to an audience, list, show, pause, resume, cancel.",
                  no_args_is_help=True)

AUDIENCE_HELP = ("subscribers (marketing consent), customers (everyone who ordered), admin, "
                 "or sku:SKU (everyone who bought it); unsubscribed and suppressed addresses "
                 "are always left out.")
JsonOpt = typer.Option(False, "--json", help="One JSON document.")


def _read_body(path: Path, limit: int) -> str:
    """The --body-file's text; a file over [email] max_body_bytes is refused unread."""
    from kolaq_console.emails.request import body_limit_error
    from kolaq_console.errors import UserError

    try:
        size = path.stat().st_size
        if size > limit:
            raise body_limit_error(size, limit, f"--body-file {path}")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--body-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"--body-file {path}: not UTF-8 text") from None


def _figures(p: Any) -> dict[str, Any]:
    return p.as_dict()


@app.command("send")
def send_cmd(
    subject: str = typer.Option(..., "--subject", help="The subject line."),
    body_file: Path = typer.Option(..., "--body-file", help="The body, in Markdown."),
    audience: str = typer.Option(..., "--audience", help=AUDIENCE_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Send without asking."),
    detach: bool = typer.Option(False, "--detach", help="Submit and return at once."),
    as_json: bool = typer.Option(False, "--json", help="Submit, print one JSON document."),
) -> None:
    """Send a broadcast: prints how many it goes to and asks (unless --yes), then follows it
    with a progress bar until it is done (Ctrl-C stops watching, not sending)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.broadcasts import audience as audiences
    from kolaq_console.broadcasts import lifecycle
    from kolaq_console.cli.common import huey, out, print_json, ready_engine
    from kolaq_console.emails.composers.broadcast import content
    from kolaq_console.errors import UserError

    settings = runtime.settings()
    body = _read_body(body_file, settings.email.max_body_bytes)
    content(subject, body, settings.email.max_body_bytes)
    who = audiences.parse(audience)
    engine = ready_engine()
    with Session(engine) as session:
        count = audiences.count(session, settings, who)
    if not as_json:
        out.print(f"{count} recipient(s): audience {who.name}, net of unsubscribed and "
                  "suppressed addresses", markup=False)
    if count == 0:
        raise UserError(f"audience {who.name} has no one to send to; nothing was sent")
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"not sent: {count} recipient(s); add --yes to send without asking")
        if not typer.confirm(f"Send {subject!r} to {count} recipient(s)?", default=False):
            out.print("not sent", markup=False)
            raise typer.Exit(1)
    huey()  # wire the queue: the broadcast's job is enqueued after its commit
    with Session(engine, expire_on_commit=False) as session:
        result = lifecycle.submit(session, settings, actor=settings.operator(), subject=subject,
                                  body=body, audience=who.name)
    b = result.broadcast
    if as_json:
        from kolaq_console.broadcasts import progress

        with Session(engine) as session:
            print_json({**_figures(progress.progress(session, b.id)),  # type: ignore[arg-type]
                        "created": result.created})
        return
    if not result.created:
        out.print(f"already submitted as broadcast #{b.id} ({b.status}); nothing new was sent",
                  markup=False)
        return
    out.print(f"broadcast #{b.id} submitted to {b.total} recipient(s)", markup=False)
    if not detach:
        _follow(engine, b.id)  # type: ignore[arg-type]


def _follow(engine: Any, broadcast_id: int) -> None:
    """A progress bar until the broadcast is no longer sending."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.broadcasts import progress
    from kolaq_console.cli.common import out

    interval = min(1.0, runtime.settings().console.refresh_seconds)
    bar = Progress(TextColumn("#{task.fields[id]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), console=out, transient=False)
    try:
        with bar:
            task = bar.add_task("sending", total=None, id=broadcast_id, detail="")
            while True:
                with Session(engine) as session:
                    p = progress.progress(session, broadcast_id)
                bar.update(task, total=p.total, completed=p.done, detail=_detail(p))
                if p.status != "sending" or (p.remaining == 0 and p.finished_at):
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        out.print(f"stopped watching; broadcast #{broadcast_id} goes on in the workers "
                  f"(`kolaq-console broadcast show {broadcast_id}`)", markup=False)
        raise typer.Exit(130) from None
    out.print(f"broadcast #{broadcast_id} {p.status}: {_detail(p)}", markup=False)


def _detail(p: Any) -> str:
    from kolaq_console.broadcasts.progress import duration

    rate = "rate unknown" if p.rate is None else f"{p.rate:.1f}/s"
    eta = "" if p.eta_seconds is None else f", ETA {duration(p.eta_seconds)}"
    return (f"{p.sent} sent, {p.failed} failed, {p.skipped} skipped"
            + (f", {p.cancelled} cancelled" if p.cancelled else "") + f" · {rate}{eta}")


@app.command("list")
def list_cmd(
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Broadcasts, newest first, with their figures."""
    from rich.table import Table
    from sqlmodel import Session

    from kolaq_console.broadcasts import progress
    from kolaq_console.cli.common import out, print_json, ready_engine

    with Session(ready_engine()) as session:
        rows = progress.recent(session, limit)
    if as_json:
        print_json({"broadcasts": [_figures(p) for p in rows]})
        return
    table = Table(title=f"Broadcasts ({len(rows)})", title_justify="left")
    # unsent: skipped or cancelled, never handed to the provider (`show` tells them apart)
    for column in ("id", "status", "audience", "sent", "failed", "unsent", "total", "subject"):
        table.add_column(column, overflow="fold")
    for p in rows:
        table.add_row(str(p.id), p.status, p.audience, str(p.sent), str(p.failed),
                      str(p.skipped + p.cancelled), str(p.total), p.subject)
    out.print(table)


@app.command("show")
def show_cmd(broadcast_id: int = typer.Argument(..., metavar="ID"),
             as_json: bool = JsonOpt) -> None:
    """One broadcast: status, sent / failed / skipped of total, rate, ETA."""
    from sqlmodel import Session

    from kolaq_console.broadcasts import progress
    from kolaq_console.cli.common import out, print_json, ready_engine

    with Session(ready_engine()) as session:
        p = progress.progress(session, broadcast_id)
    if as_json:
        print_json(_figures(p))
        return
    for name, value in _figures(p).items():
        out.print(f"{name:>12}: {_shown(value)}", markup=False)


def _shown(value: object) -> str:
    """A figure as read: '-' when there is none (an ETA while paused, a finish not yet), a
    time on the shop's clock with its zone (not the stored UTC with its microseconds)."""
    from datetime import datetime

    from kolaq_console.cli.common import shop_time

    if value is None or isinstance(value, datetime):
        return shop_time(value, "%Y-%m-%d %H:%M:%S %Z")
    return str(value)


def _change(action: str, broadcast_id: int, as_json: bool) -> None:
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.broadcasts import lifecycle, progress
    from kolaq_console.cli.common import huey, out, print_json, ready_engine

    settings = runtime.settings()
    if action == "resume":
        huey()  # resuming enqueues the broadcast's job
    engine = ready_engine()
    with Session(engine, expire_on_commit=False) as session:
        getattr(lifecycle, action)(session, broadcast_id, actor=settings.operator())
    with Session(engine) as session:
        p = progress.progress(session, broadcast_id)
    if as_json:
        print_json(_figures(p))
    else:
        out.print(f"broadcast #{broadcast_id} {p.status}: {_detail(p)}", markup=False)


@app.command("pause")
def pause_cmd(broadcast_id: int = typer.Argument(..., metavar="ID"),
              as_json: bool = JsonOpt) -> None:
    """Stop forming batches; copies not yet handed to the provider wait for resume."""
    _change("pause", broadcast_id, as_json)


@app.command("resume")
def resume_cmd(broadcast_id: int = typer.Argument(..., metavar="ID"),
               as_json: bool = JsonOpt) -> None:
    """Go on with a paused broadcast where it stopped."""
    _change("resume", broadcast_id, as_json)


@app.command("cancel")
def cancel_cmd(broadcast_id: int = typer.Argument(..., metavar="ID"),
               as_json: bool = JsonOpt) -> None:
    """Send nothing more of this broadcast (what the provider already has still counts)."""
    _change("cancel", broadcast_id, as_json)
