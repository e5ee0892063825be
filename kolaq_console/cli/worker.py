"""`kolaq-console worker`: a Huey consumer of tasks.huey with the configured workers."""

from __future__ import annotations

import logging

import typer

from kolaq_console.cli.common import huey, ready_engine


def setup_logging(verbose: bool = False) -> None:
    from kolaq_console.redact import install_log_redaction

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(process)d %(threadName)s %(name)s: %(message)s",
    )
    install_log_redaction()


def worker(
    workers: int | None = typer.Option(None, "--workers", "-w", help="Threads (default: config)."),
    periodic: bool | None = typer.Option(
        None, "--periodic/--no-periodic", help="Run periodic tasks (exactly one consumer should)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a worker (consumer) until SIGTERM/SIGINT, which let running jobs finish first."""
    from kolaq_console import runtime

    settings = runtime.settings()
    queue = huey()  # refuse to start on a queue it cannot build (no KOLAQ_SIGNING_KEY, ...)
    queue.check_ready()  # ...or on a configuration that cannot send email
    setup_logging(verbose)
    ready_engine()  # refuse to start on an unreachable or out-of-date database
    options: dict = {"workers": workers or settings.queue.workers}
    if periodic is not None:
        options["periodic"] = periodic
    # -w 1 is Huey's default too: say it was chosen, or [queue] workers would replace it.
    queue.create_consumer(**options, kolaq_explicit=("workers",)).run()
