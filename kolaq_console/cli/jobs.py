"""`kolaq-console jobs ...`: the failed-job ledger, workers and job statistics."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from kolaq_console.cli import common
from kolaq_console.cli.common import SECONDS, out, print_json, ready_engine, shop_time
from kolaq_console.errors import KolaqError, UserError

if TYPE_CHECKING:
    from sqlmodel import Session

    from kolaq_console.jobs import failed as ledger

app = typer.Typer(help="Failed jobs (list, show, retry, discard), workers, statistics.",
                  no_args_is_help=True)

QueueOpt = typer.Option(None, "--queue", "-q", help="Logical queue: emails, inventory, webhooks.")
TaskOpt = typer.Option(None, "--task", "-t", help="Task name, e.g. send_email or tasks.send_email.")
ErrorOpt = typer.Option(None, "--error", "-e", help="Text in the error type or message.")
SinceOpt = typer.Option(None, "--since", help="Last attempt at or after: 30m, 2h, 1d or a date.")
UntilOpt = typer.Option(None, "--until", help="Last attempt before: 30m, 2h, 1d or a date.")
JsonOpt = typer.Option(False, "--json", help="One JSON document.")
YesOpt = typer.Option(False, "--yes", "-y", help="Act on several jobs without asking.")
AllOpt = typer.Option(False, "--all", help="Every open failed job matching the filters.")

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str | None, option: str) -> datetime | None:
    """'30m', '2h', '1d' ago, or an ISO date/time (shop time when it names no zone)."""
    if value is None:
        return None
    from kolaq_console import runtime
    from kolaq_console.models import utcnow

    match = _AGO.match(value)
    if match:
        return utcnow() - timedelta(**{_UNITS[match[2]]: float(match[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(
            f"{option} {value!r}: expected an age such as 30m, 2h, 1d or a date/time such as "
            "2026-11-28T08:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=runtime.settings().shop.zone)
    return moment


def _filter(queue: str | None, task: str | None, error: str | None, since: str | None,
            until: str | None, status: str = "open") -> ledger.JobFilter:
    from kolaq_console.jobs.failed import JobFilter

    return JobFilter(
        queue=queue, task=task, error=error, since=parse_when(since, "--since"),
        until=parse_when(until, "--until"), status=status,
    )


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    from kolaq_console.models import utcnow

    seconds = max((utcnow() - moment).total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _jsonable(value: Any) -> Any:
    """Times as ISO 8601 (UTC) in JSON output."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _describe(flt: ledger.JobFilter) -> str:
    parts = [f"{k}={v}" for k, v in flt.describe().items() if k != "status"]
    return f" matching {', '.join(parts)}" if parts else ""


def _columns(headers: list[str], cells: list[list[str]], right: set[int] = frozenset()) -> str:
    """Plain aligned columns; the last one takes what is left of the terminal width."""
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers[:-1])]
    rest = max(out.width - sum(widths) - 2 * len(widths), 20)
    lines = []
    for row in [headers, *cells]:
        parts = [
            (v.rjust(w) if i in right else v.ljust(w))
            for i, (v, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*parts, _short(row[-1], rest)]).rstrip())
    return "\n".join(lines)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- list and show ---------------------------------------------------------------------------


@app.command("failed")
def failed(
    queue: str | None = QueueOpt, task: str | None = TaskOpt, error: str | None = ErrorOpt,
    since: str | None = SinceOpt, until: str | None = UntilOpt,
    status: str = typer.Option(
        "open", "--status", help="open (failed + interrupted), failed, interrupted, retried, "
        "discarded, completed or all."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="Rows per page."),
    before: int | None = typer.Option(None, "--before", help="Next page: ids below this one."),
    as_json: bool = JsonOpt,
) -> None:
    """List failed and interrupted jobs, newest first (arguments and errors redacted)."""
    from sqlmodel import Session

    from kolaq_console.jobs import failed as ledger

    flt = _filter(queue, task, error, since, until, status)
    with Session(ready_engine()) as session:
        rows = ledger.list_failed(session, flt, limit=limit, before_id=before)
        total = ledger.count_failed(session, flt, cap=ledger.PAGE_COUNT_CAP)
    capped = total >= ledger.PAGE_COUNT_CAP
    if as_json:
        print_json({"total": total, "total_capped": capped, "filter": flt.describe(),
                    "jobs": [_jsonable(r.as_dict()) for r in rows]})
        return
    if not rows:
        out.print("no more failed jobs match" if before else "no failed jobs match")
        return
    cells = [
        [str(r.id), r.status, r.queue, r.task_name.rsplit(".", 1)[-1], str(r.attempts),
         shop_time(r.last_attempt_at, "%m-%d %H:%M:%S"),
         f"{r.error_type.rsplit('.', 1)[-1]}: {r.error_message}"]
        for r in rows
    ]
    headers = ["id", "status", "queue", "task", "tries", "last (shop)", "error"]
    out.print(_columns(headers, cells, right={0, 4}), markup=False)
    more = ""
    if total > len(rows) and len(rows) == limit:
        more = f"; next page: --before {rows[-1].id}"
    out.print(f"{len(rows)} of {total:,}{'+' if capped else ''} shown{more}")


@app.command("show")
def show(job_id: int = typer.Argument(..., metavar="ID"), as_json: bool = JsonOpt) -> None:
    """Everything about one failed job: call (redacted), error, traceback, attempts, worker."""
    from sqlmodel import Session

    from kolaq_console.jobs import failed as ledger

    with Session(ready_engine()) as session:
        job = ledger.get_failed(session, job_id)
    if as_json:
        print_json(_jsonable(vars(job)))
        return
    lines = [
        f"failed job #{job.id}  {job.status}",
        f"task        {job.task_name}  (queue {job.queue}, task id {job.task_id})",
        f"attempts    {job.attempts}  (first {shop_time(job.first_attempt_at, SECONDS)}, "
        f"last {shop_time(job.last_attempt_at, SECONDS)}, shop time)",
        f"worker      {job.worker_host or '-'} pid {job.worker_pid or '-'}",
        f"error       {job.error_type}: {job.error_message}",
        f"args        {job.args}",
        f"kwargs      {job.kwargs}",
    ]
    if job.retried_as:
        lines.append(f"retried as  task id {job.retried_as}")
    if job.resolved_by:
        lines.append(f"resolved    by {job.resolved_by} at "
                     f"{shop_time(job.resolved_at, SECONDS)}")
    for line in lines:
        out.print(line, markup=False)
    if job.traceback:
        out.print("traceback:", markup=False)
        out.print(job.traceback.rstrip(), markup=False)


# --- retry and discard -----------------------------------------------------------------------


def _targets(verb: str, ids: list[int], all_: bool, flt: ledger.JobFilter, yes: bool,
             session: Session) -> list[int]:
    from kolaq_console.jobs import failed as ledger

    narrowed = any(v is not None for v in (flt.queue, flt.task, flt.error, flt.since, flt.until))
    if ids and (all_ or narrowed):
        raise UserError("give job ids, or --all with filters, not both")
    if not ids and not all_:
        raise UserError(f"name the job ids to {verb}, or --all (optionally with --queue, --task, "
                        "--error, --since, --until)")
    targets = ledger.select_ids(session, ids, None if ids else flt)
    # --all asks even for one: the operator has not seen what it matched
    if (all_ or len(targets) > 1) and not yes:
        what = (f"{len(targets)} failed job{'' if len(targets) == 1 else 's'}"
                + (_describe(flt) if all_ else ""))
        if not sys.stdin.isatty():
            raise UserError(f"refusing to {verb} {what} without --yes (no terminal to confirm on)")
        if not typer.confirm(f"{verb.capitalize()} {what}?", default=False):
            raise UserError(f"{verb} cancelled: nothing changed")
    return targets


@app.command("retry")
def retry(
    ids: list[int] = typer.Argument(None, metavar="[ID]...", help="Failed job ids."),
    all_: bool = AllOpt, queue: str | None = QueueOpt, task: str | None = TaskOpt,
    error: str | None = ErrorOpt, since: str | None = SinceOpt, until: str | None = UntilOpt,
    yes: bool = YesOpt, as_json: bool = JsonOpt,
) -> None:
    """Re-enqueue exactly the failed call(s) as new jobs with a fresh retry budget."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.jobs import failed as ledger

    engine = ready_engine()
    flt = _filter(queue, task, error, since, until)
    with Session(engine) as session:
        targets = _targets("retry", ids or [], all_, flt, yes, session)
    if not targets:
        out.print("no failed jobs match: nothing to retry")
        return
    result = ledger.retry_failed(engine, common.huey(), targets, runtime.settings().operator(),
                                 None if ids else flt)
    if as_json:
        print_json({
            "retried": [{"id": i, "retried_as": t} for i, t in result.retried],
            "skipped": [{"id": i, "reason": why} for i, why in result.skipped],
        })
    else:
        for i, t in result.retried[:20]:
            out.print(f"#{i} re-enqueued as task {t}", markup=False)
        if len(result.retried) > 20:
            out.print(f"... and {len(result.retried) - 20} more")
        out.print(f"retried {len(result.retried)} job(s)")
        for i, why in result.skipped:
            common.err.print(f"skipped #{i}: {why}", markup=False)
    if result.skipped:
        raise KolaqError(f"{len(result.skipped)} job(s) could not be retried (see above)")


@app.command("discard")
def discard(
    ids: list[int] = typer.Argument(None, metavar="[ID]...", help="Failed job ids."),
    all_: bool = AllOpt, queue: str | None = QueueOpt, task: str | None = TaskOpt,
    error: str | None = ErrorOpt, since: str | None = SinceOpt, until: str | None = UntilOpt,
    yes: bool = YesOpt,
) -> None:
    """Close failed job(s) without running them again (kept, with who and when, and logged)."""
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.jobs import failed as ledger

    engine = ready_engine()
    flt = _filter(queue, task, error, since, until)
    with Session(engine) as session:
        targets = _targets("discard", ids or [], all_, flt, yes, session)
    if not targets:
        out.print("no failed jobs match: nothing to discard")
        return
    n = ledger.discard_failed(engine, targets, runtime.settings().operator(), None if ids else flt)
    out.print(f"discarded {n} job(s)")


# --- workers, stats, sweep -------------------------------------------------------------------


@app.command("workers")
def workers(
    all_: bool = typer.Option(False, "--all", help="Include stopped workers."),
    as_json: bool = JsonOpt,
) -> None:
    """Worker processes: host, pid, heartbeat, jobs running; dead ones flagged."""
    from rich.table import Table
    from rich.text import Text
    from sqlmodel import Session

    from kolaq_console import runtime
    from kolaq_console.jobs import workers as job_workers

    settings = runtime.settings()
    with Session(ready_engine()) as session:
        rows = job_workers.list_workers(session, settings.jobs.lease_seconds,
                                        include_stopped=all_)
    if as_json:
        print_json(_jsonable({"lease_seconds": settings.jobs.lease_seconds,
                              "workers": [w.as_dict() for w in rows]}))
        return
    if not rows:
        out.print("no workers have registered" + ("" if all_ else " (--all shows stopped ones)"))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("state", "host", "pid", "threads", "periodic", "started", "heartbeat", "jobs"):
        table.add_column(column, no_wrap=column != "jobs")
    for w in rows:
        state = Text(w.state.upper() if w.state == "dead" else w.state,
                     style="bold red" if w.state == "dead" else "")
        jobs = ", ".join(j.task_name.rsplit(".", 1)[-1] for j in w.jobs) or "-"
        table.add_row(state, Text(w.host), str(w.pid), str(w.threads),
                      "yes" if w.periodic else "no", shop_time(w.started_at, SECONDS),
                      _ago(w.heartbeat_at), Text(jobs))
    out.print(table)
    dead = sum(w.state == "dead" for w in rows)
    if dead:
        out.print(f"{dead} dead worker(s): no heartbeat for over {settings.jobs.lease_seconds:g}s; "
                  "their jobs are re-enqueued or listed as interrupted")


@app.command("stats")
def stats(
    hours: float = typer.Option(24.0, "--hours", min=0.02, help="Window, in hours."),
    per_minute: bool = typer.Option(False, "--per-minute", help="JSON: include each minute."),
    as_json: bool = JsonOpt,
) -> None:
    """Completed / failed / retried per queue, and run times (avg, p95) per task."""
    from rich.table import Table
    from rich.text import Text
    from sqlmodel import Session

    from kolaq_console.jobs import stats as job_stats
    from kolaq_console.models import utcnow

    since = utcnow() - timedelta(hours=hours)
    with Session(ready_engine()) as session:
        totals = job_stats.totals_by_queue(session, since)
        timings = job_stats.task_timings(session, since)
        minutes = job_stats.throughput(session, since) if per_minute else []
    if as_json:
        doc: dict = {"since": since.isoformat(), "queues": totals,
               "tasks": [t.as_dict() for t in timings]}
        if per_minute:
            doc["per_minute"] = [vars(m) for m in minutes]
        print_json(_jsonable(doc))
        return
    out.print(f"last {hours:g} h")
    for name, t in sorted(totals.items()):
        out.print(f"  {name:<10} {t['completed']:>8} completed {t['failed']:>6} failed "
                  f"{t['retried']:>6} retried")
    table = Table(box=None, pad_edge=False)
    for column in ("task", "queue", "runs", "avg ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("task", "queue") else "right")
    for t in timings:
        table.add_row(Text(t.task_name), t.queue, str(t.runs),
                      *(f"{v:.1f}" if v is not None else "-" for v in (t.avg_ms, t.p95_ms,
                                                                        t.max_ms)))
    out.print(table)


@app.command("sweep")
def sweep() -> None:
    """Look now for jobs and emails lost with a dead worker (workers also do it on their own)."""
    ready_engine()
    result = common.huey().kolaq_ledger.sweep()  # the ledger of tasks.huey, with its hooks
    out.print(f"{len(result.requeued)} re-enqueued, {len(result.interrupted)} recorded as "
              "interrupted")
