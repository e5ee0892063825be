"""Links between records: every view opens the others with one key. `open_*` push the
screen of one thing; `follow_job`/`follow_email` first read what a failed job or an email is
about (in a thread worker), then open that, or say it is unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session
from textual.app import App

from kolaq_console.lookup import Subject, email_subject, job_subject


def open_order(app: App, number: str) -> None:
    from kolaq_console.ui.screens.records.order import OrderRecordScreen

    app.push_screen(OrderRecordScreen(number))


def open_customer(app: App, email: str) -> None:
    from kolaq_console.ui.screens.records.customer import CustomerRecordScreen

    app.push_screen(CustomerRecordScreen(email))


def open_product(app: App, sku: str) -> None:
    from kolaq_console.ui.screens.records.product import ProductRecordScreen

    app.push_screen(ProductRecordScreen(sku))


def open_email(app: App, email_id: int) -> None:
    from kolaq_console.ui.screens.email_detail import EmailDetailScreen

    app.push_screen(EmailDetailScreen(email_id))


def open_job(app: App, job_id: int) -> None:
    from kolaq_console.ui.screens.job_detail import JobDetailScreen

    app.push_screen(JobDetailScreen(job_id))


OPENERS: dict[str, Callable[[App, Any], None]] = {
    "order": open_order, "customer": open_customer, "product": open_product,
    "email": open_email, "job": open_job,
}


def open_kind(app: App, kind: str, ref: Any) -> None:
    """Open the screen of a `kind` (order, customer, product, email, job) named by `ref`."""
    OPENERS[kind](app, ref)


def _subject_ref(subject: Subject, kind: str) -> Any:
    return {"order": subject.order_number, "customer": subject.customer_email,
            "product": subject.sku, "email": subject.email_id,
            "job": subject.job_ids[0] if subject.job_ids else None}[kind]


def _follow(app: App, read: Callable[[Session], Subject], kind: str, source: str) -> None:
    engine = app.engine  # type: ignore[attr-defined]

    def resolve() -> None:
        with Session(engine) as session:
            ref = _subject_ref(read(session), kind)
        app.call_from_thread(_opened, app, kind, ref, source)

    app.run_worker(resolve, thread=True, exit_on_error=False, group="links",
                   description=f"Open the {kind}")


def _opened(app: App, kind: str, ref: Any, source: str) -> None:
    if ref is None:
        what = "failed job" if kind == "job" else kind
        app.notify(f"No {what} known for {source}", severity="warning")
        return
    open_kind(app, kind, ref)


def follow_job(app: App, job_id: int, kind: str) -> None:
    """Open the email, order, customer or product a failed job is about."""
    _follow(app, lambda s: job_subject(s, job_id), kind, f"failed job #{job_id}")


def follow_email(app: App, email_id: int, kind: str) -> None:
    """Open an email's order or customer, or the newest failed job about its sending."""
    _follow(app, lambda s: email_subject(s, email_id), kind, f"email #{email_id}")
