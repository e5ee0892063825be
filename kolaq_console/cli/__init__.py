"""`kolaq-console`: the console by default, and subcommands for scripts and cron.

Every failure the operator can fix ends as one line on stderr and a non-zero exit.

Start-up rule for every module of this package (so `--help` stays under 0.2 s and
`status --json` under 0.5 s, bench/startup.py): at module level import only the standard
library, `typer`, `kolaq_console.errors` and other `kolaq_console.cli` modules. Everything else
(rich, sqlalchemy/sqlmodel, settings, the domain, tasks.py) is imported inside the command
that uses it, and type hints of such things stay strings (`from __future__ import
annotations`; never in a command's own signature, which typer evaluates). Option defaults and
help texts are plain values. `out`/`err` in `common` make their rich Console on first use.
tests/test_cli_startup.py fails when `kolaq-console --help` imports anything heavy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kolaq_console.cli import (
    broadcast,
    db,
    demo,
    email,
    inventory,
    jobs,
    lookup,
    orders,
    sms,
    status,
    web,
    webhooks,
    worker,
)
from kolaq_console.cli.common import err
from kolaq_console.errors import KolaqError

app = typer.Typer(
    name="kolaq-console",
    help="Background jobs and operations console of the Kolaq Bitters shop.",
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks could carry secrets; errors are one line
    no_args_is_help=False,
    rich_markup_mode=None,
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="Config file (default: $KOLAQ_CONFIG, else ./config.toml)."
    ),
    with_worker: bool = typer.Option(
        False, "--worker", help="Run an embedded worker inside the console."
    ),
    read_only: bool = typer.Option(False, "--read-only", help="Console without actions."),
) -> None:
    """Open the console (no subcommand), or run one of the subcommands."""
    if config is not None:
        from kolaq_console import runtime
        from kolaq_console.config import load_settings

        runtime.configure(load_settings(path=config.resolve()))
    if ctx.invoked_subcommand is None:
        from kolaq_console.cli.console import run_console

        run_console(with_worker=with_worker, read_only=read_only)


app.add_typer(broadcast.app, name="broadcast")
app.add_typer(db.app, name="db")
app.add_typer(email.app, name="email")
app.add_typer(inventory.app, name="inventory")
app.add_typer(jobs.app, name="jobs")
app.add_typer(orders.app, name="orders")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(sms.app, name="sms")
app.command("demo")(demo.demo)
app.command("lookup")(lookup.lookup)
app.command("status")(status.status)
app.command("worker")(worker.worker)
app.command("web")(web.web)


def main(argv: list[str] | None = None) -> None:
    # Typer handles usage errors itself (usage line, exit 2); ours are one line and exit 1.
    try:
        app(args=argv, prog_name="kolaq-console")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise  # success returns normally, so in-process callers (tests) can go on
    except KolaqError as exc:
        err.print(f"kolaq-console: {exc}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
