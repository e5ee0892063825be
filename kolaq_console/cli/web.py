"""`kolaq-console web`: the console in a browser (textual-serve), on localhost by default."""

from __future__ import annotations

import typer


def web(
    host: str | None = typer.Option(
        None, "--host", help="Address (default: [web] host, 127.0.0.1). Any but a loopback address "
        "needs [web] allow_remote: the console has no login of its own."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535,
                                    help="Port (default: [web] port, 8000)."),
    read_only: bool = typer.Option(False, "--read-only", help="Consoles without actions."),
) -> None:
    """Serve the console to browsers until Ctrl+C: every tab runs its own console."""
    from kolaq_console import runtime
    from kolaq_console.cli.common import ready_engine
    from kolaq_console.ui.web import make_server, serve

    settings = runtime.settings()
    config = settings.source if settings.source != "packaged defaults" else None
    server = make_server(settings, host=host, port=port, read_only=read_only, config=config)
    ready_engine()  # an unreachable or out-of-date database fails here, not in every tab
    serve(server)
