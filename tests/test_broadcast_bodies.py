"""A broadcast copy's row holds only its recipient's part; the body sent is the broadcast's one
rendering with the recipient's token put in, byte for byte what rendering it per recipient
gives, on every path that sends or shows it (batch, retry, send again, CLI, console)."""

from __future__ import annotations

import json

from broadcast_fixtures import resend_stub, resend_workers  # noqa: F401
from broadcast_support import seed_customers, subscribers
from sqlmodel import Session, select

from kolaq_console import consent
from kolaq_console.broadcasts import lifecycle
from kolaq_console.emails import EmailRequest, compose, outbox
from kolaq_console.emails.bodies import body_of
from kolaq_console.models import BroadcastRendering, EmailOutbox
from kolaq_console.ui.screens.email_detail import load_email

SUBJECT = "Harmattan cocktails"
BODY = ("# Harmattan cocktails\n\nThree drinks for dry season. **Cheers!**\n\n"
        "<b>not html</b> & a [link](https://kolaq.example/drinks?a=1&b=2)")
ODD = ["o'neil+news@example.com", "ada.lovelace@example.com", "x_y-z@sub.example.co.uk"]


def submit(engine, settings):
    with Session(engine, expire_on_commit=False) as s:
        return lifecycle.submit(s, settings, actor="ops", subject=SUBJECT, body=BODY,
                                audience="subscribers").broadcast


def per_recipient(engine, settings, broadcast_id: int, address: str):
    """What the old path stored per row: the whole copy rendered for this one recipient."""
    with Session(engine) as s:
        return compose(s, settings, EmailRequest(
            "broadcast", to=address, subject=SUBJECT, body=BODY,
            context={"broadcast_id": broadcast_id}))


def test_every_copy_sent_is_byte_identical_to_its_per_recipient_rendering(
    engine, settings, stub, workers
):
    people = [*subscribers(140), *ODD]
    seed_customers(engine, people)
    b = submit(engine, settings)
    workers.run()

    assert sorted(d.to[0] for d in stub.deliveries) == sorted(people)
    links = set()
    for delivery in stub.deliveries:
        sent, address = delivery.payload, delivery.to[0]
        want = per_recipient(engine, settings, b.id, address)
        assert sent["html"].encode() == want.html.encode()
        assert sent["text"].encode() == want.text.encode()
        assert sent["subject"] == want.subject
        assert sent["headers"] == {k: v for k, v in want.headers.items()
                                   if k not in ("From", "Reply-To")}  # those go as fields
        link = consent.unsubscribe_url(settings, address)
        assert link in sent["html"] and link in sent["text"]  # this recipient's own link
        links.add(link)
    assert len(links) == len(people)


def test_a_copy_row_stores_no_body_only_its_recipients_part(engine, settings, stub, workers):
    seed_customers(engine, subscribers(120))
    b = submit(engine, settings)
    workers.run()  # formed, sent and marked sent: the row still holds no body
    with Session(engine) as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.broadcast_id == b.id)).all()
        renderings = s.exec(select(BroadcastRendering)).all()
    assert len(rows) == 120 == len(stub.deliveries)
    assert {row.status for row in rows} == {"sent"}
    for row in rows:
        assert (row.html, row.text) == ("", "")
        assert consent.read_token(settings, row.unsubscribe_token) == row.to_address
        assert row.unsubscribe_token in row.headers["List-Unsubscribe"]
        assert len(json.dumps(row.headers)) < 600  # From, Reply-To, List-Unsubscribe(-Post)
    [rendering] = renderings  # one per broadcast
    assert rendering.broadcast_id == b.id and rendering.slot in rendering.html
    assert "<html" in rendering.html and "Harmattan" in rendering.text  # the body, once


def test_send_again_and_the_cli_and_console_show_a_copys_real_body(
    engine, settings, stub, workers, cli_run
):
    seed_customers(engine, ODD)
    submit(engine, settings)
    workers.run()
    first = stub.deliveries[0]
    with Session(engine) as s:
        row = s.exec(select(EmailOutbox).where(EmailOutbox.to_address == first.to[0])).one()
        assert body_of(s, row) == (first.payload["html"], first.payload["text"])
        assert load_email(s, row.id)["text"] == first.payload["text"]  # the console's detail
        again = outbox.resend_email(s, settings, row.id, "ops@kolaq").row
        assert (again.html, again.unsubscribe_token) == ("", row.unsubscribe_token)
    workers.run()
    resent = stub.deliveries[-1]
    assert len(stub.deliveries) == len(ODD) + 1 and resent.to == first.to
    assert (resent.payload["html"], resent.payload["text"]) == (
        first.payload["html"], first.payload["text"])

    code, out, _ = cli_run("email", "show", str(row.id), "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["html"], shown["text"]) == (
        first.payload["html"], first.payload["text"])
    code, out, _ = cli_run("email", "show", str(row.id))
    assert code == 0 and consent.unsubscribe_url(settings, first.to[0]) in out.replace("\n", "")
