"""`kolaq-console demo`: load the demo shop."""

from __future__ import annotations

from kolaq_console.cli.common import err, out, ready_engine


def demo() -> None:
    """Load a believable demo shop (idempotent: a second run changes nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kolaq_console.demo import load_demo

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
    if result.changed:
        out.print(
            f"demo shop loaded: {result.products} products, {result.customers} customers, "
            f"{result.orders} orders, {result.events} inventory events, "
            f"{result.webhooks} webhook events"
        )
    else:
        out.print("demo shop already loaded: nothing changed")
