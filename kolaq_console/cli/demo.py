"""`kolaq-console demo`: load the demo shop, and what a running shop has (demo_live)."""

from __future__ import annotations

from kolaq_console.cli.common import err, huey, out, ready_engine


def demo() -> None:
    """Load a believable demo shop with a living present: sales this week, email sent, failed
    and retrying, a broadcast, texts, the last hour of jobs (idempotent: a second run adds
    only the hour that passed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kolaq_console import runtime
    from kolaq_console.demo import load_demo
    from kolaq_console.demo_live import load_live

    engine = ready_engine()
    with Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
        console=err, transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = load_demo(engine, report)
    payload = enqueue = None
    try:  # with the queue, failed jobs can be retried and retries in backoff are scheduled
        queue = huey()
        import tasks as wired
        from kolaq_console.emails.outbox import enqueue_send

        def payload(name: str, args: tuple) -> bytes:
            return queue.serialize_task(getattr(wired, name.removeprefix("tasks.")).s(*args))

        def enqueue(row_id: int, delay: float) -> None:
            enqueue_send(row_id, delay=delay)
    except Exception as exc:  # the shop still loads; its failed jobs just cannot be retried
        err.print(f"[yellow]queue not available ({exc}): failed jobs will not be retryable[/]")
    live = load_live(engine, runtime.settings(), payload=payload, enqueue=enqueue)
    if result.changed:
        out.print(
            f"demo shop loaded: {result.products} products, {result.customers} customers, "
            f"{result.orders} orders, {result.events} inventory events, "
            f"{result.webhooks} webhook events"
        )
    if live.changed:
        out.print(
            f"demo activity: {live.emails} emails, {live.failed_jobs} failed jobs, "
            f"{live.texts} texts, {live.broadcasts} broadcast, "
            f"{'a reconcile run, ' if live.reconciled else ''}{live.stats} job-stat and "
            f"{live.samples} queue-depth rows for the last hour"
        )
    if not (result.changed or live.changed):
        out.print("demo shop already loaded: nothing changed")
