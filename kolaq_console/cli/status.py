"""`kolaq-console status`: queue depths, failures, low stock, outbox, storage health."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from kolaq_console.cli.common import out, print_json
from kolaq_console.errors import KolaqError

if TYPE_CHECKING:
    from kolaq_console.config import Settings
    from kolaq_console.status import Status


class StorageDown(KolaqError):
    pass


UNKNOWN = "unknown"


def status(as_json: bool = typer.Option(False, "--json", help="One JSON document.")) -> None:
    """Print the system's status; exits 1 when the database or the queue is unreachable.
    What could not be read is shown as unknown (null in JSON), never as 0. Writes nothing."""
    settings = _settings()
    if as_json:
        from kolaq_console.statusfast import fast_document

        document = fast_document(settings)  # None: something to report, or unusual
        if document is not None:
            print_json(document)
            return
    from kolaq_console import runtime
    from kolaq_console.db import StorageUnavailable
    from kolaq_console.status import collect, reading_queue

    runtime.configure(settings)
    try:
        queue, problem = reading_queue(settings), None
    except StorageUnavailable as exc:
        queue, problem = None, str(exc)
    snapshot = collect(settings, runtime.engine(), queue, problem)
    if as_json:
        print_json(snapshot.as_dict())
    else:
        _print(snapshot)
    if not snapshot.healthy:
        problems = [v for v in snapshot.storage.values() if v != "ok"]
        raise StorageDown("; ".join(problems))


def _settings() -> Settings:
    """The process settings: runtime's when it is loaded (--config, tests), else read here
    without importing runtime (which imports SQLAlchemy; the fast path has no use for it)."""
    if "kolaq_console.runtime" in sys.modules:
        from kolaq_console import runtime

        return runtime.settings()
    from kolaq_console.config import load_settings

    return load_settings()


def _n(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _print(s: Status) -> None:
    from rich.table import Table

    table = Table(title="Queues", title_justify="left")
    for column in ("queue", "pending", "scheduled", "in flight"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, depth in s.queues.items():
        table.add_row(name, _n(depth.pending), _n(depth.scheduled), _n(depth.in_flight))
    out.print(table)
    outbox = (UNKNOWN if s.outbox is None else
              f"{s.outbox['queued']} queued, {s.outbox['sent']} sent, {s.outbox['failed']} failed")
    out.print(f"failed jobs: {_n(s.failed_jobs)}   outbox: {outbox}")
    if s.rejected_payloads:
        out.print(f"rejected queue payloads: {s.rejected_payloads} (signature or decoding "
                  "failed; see `jobs failed --task '(rejected payload)'`)", markup=False)
    if s.low_stock is None:
        out.print(f"low stock: {UNKNOWN}")
    else:
        out.print(f"low stock: {len(s.low_stock)} product(s)")
        for p in s.low_stock:
            out.print(f"  {p['sku']:<20} {p['stock']:>5} / {p['threshold']:<4} {p['name']}")
    out.print(f"storage: database {s.storage['database']}, "
              f"queue ({s.queue_backend}) {s.storage['queue']}", markup=False)
