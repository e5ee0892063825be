"""`kolaq-console webhooks ...`: serve the receiver, list and show stored events, replay one."""

from __future__ import annotations

import signal
import sys

import typer

app = typer.Typer(help="Webhook receiver and inbox: serve, list, show, replay.",
                  no_args_is_help=True)

JsonOpt = typer.Option(False, "--json", help="One JSON document.")


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, "--host", help="Address (default: [webhooks] host)."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535,
                                    help="Port (default: [webhooks] port; 0: any free one)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve POST /webhooks/{paystack,stripe,resend}, GET/POST /unsubscribe/{token} and
    GET /health until SIGTERM/SIGINT (requests in flight finish first)."""
    import uvicorn

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, ready_engine
    from kolaq_console.cli.worker import setup_logging
    from kolaq_console.webhooks.server import make_app

    setup_logging(verbose)
    settings = runtime.settings()
    host = host or settings.webhooks.host
    port = settings.webhooks.port if port is None else port
    engine = ready_engine()  # refuse to start on an unreachable or out-of-date database
    # Wire the queue the events' jobs go to; this also settles the signing key that checks
    # unsubscribe tokens (Redis without KOLAQ_SIGNING_KEY refuses here, in one line).
    huey()
    config = uvicorn.Config(
        make_app(settings, engine), host=host, port=port, log_config=None, access_log=False,
        server_header=False, timeout_graceful_shutdown=settings.webhooks.shutdown_seconds,
        lifespan="on",
    )
    # uvicorn stops gracefully on SIGTERM, then re-raises it to the handler it found: a no-op
    # one here, so a supervisor's stop ends with exit status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run()


@app.command("list")
def list_cmd(
    status: str | None = typer.Option(None, "--status",
                                      help="received, processed, ignored, flagged, failed."),
    provider: str | None = typer.Option(None, "--provider", help="paystack, stripe, resend."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JsonOpt,
) -> None:
    """Stored events, newest first."""
    from sqlmodel import Session

    from kolaq_console.cli.common import SECONDS, out, print_json, ready_engine, shop_time
    from kolaq_console.orders.queries import event_summary
    from kolaq_console.webhooks.inbox import list_events

    with Session(ready_engine()) as session:
        events = [event_summary(e) for e in list_events(session, status, provider, limit)]
    if as_json:
        print_json({"webhooks": events})
        return
    for e in events:
        received = shop_time(e["received_at"], SECONDS)
        out.print(f"#{e['id']:<6} {received}  {e['provider']:<9} "
                  f"{e['event_type']:<28} {e['status']:<9} {e['error'] or ''}", markup=False)
    if not events:
        out.print("no webhook events", markup=False)


@app.command("show")
def show_cmd(row_id: int = typer.Argument(..., metavar="ID"), as_json: bool = JsonOpt) -> None:
    """One stored event with its payload."""
    import json

    from sqlmodel import Session

    from kolaq_console.cli.common import out, print_json, ready_engine
    from kolaq_console.models import Order
    from kolaq_console.orders.queries import event_summary
    from kolaq_console.webhooks.inbox import get_event

    with Session(ready_engine()) as session:
        event = get_event(session, row_id)
        order = session.get(Order, event.order_id) if event.order_id else None
        doc = {**event_summary(event), "order": order.number if order else None,
               "email_id": event.email_id, "payload": event.payload}
    if as_json:
        print_json(doc)
        return
    for key, value in doc.items():
        if key != "payload":
            out.print(f"{key:>12}: {'' if value is None else value}", markup=False)
    out.print(json.dumps(doc["payload"], indent=2), markup=False)


@app.command("replay")
def replay_cmd(
    row_id: int = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", help="Do not ask."),
) -> None:
    """Process a failed, flagged or ignored event again (effects still happen once)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.cli.common import huey, out, ready_engine
    from kolaq_console.errors import UserError
    from kolaq_console.webhooks.inbox import replay, replayable

    settings = runtime.settings()
    engine = ready_engine()
    # What cannot be replayed is said before asking; without a terminal there is no asking.
    with Session(engine) as session:
        found = replayable(session, row_id)
        what = f"webhook event #{row_id} ({found.provider} {found.event_type}, {found.status})"
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"not replayed: {what}; add --yes to replay without asking")
        if not typer.confirm(f"Replay {what}?", default=False):
            raise UserError("not replayed")
    huey()
    event = replay(engine, row_id, actor=settings.operator(),
                   lease_seconds=settings.webhooks.lease_seconds)
    out.print(f"webhook event #{event.id} ({event.provider} {event.event_type}) queued again",
              markup=False)
