"""Helpers shared by the SMS/WhatsApp tests: a Twilio-shaped test account (assembled at run
time, never a literal), customers with phones, reading message rows."""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from kolaq_console.models import Customer, TextMessage

# Shaped like Twilio's (AC + 32 hex; a 32-hex token) but made fresh per run.
ACCOUNT = "AC" + uuid.uuid4().hex
TOKEN = uuid.uuid4().hex
SHOP_NUMBER = "+2348090000001"
ADA_PHONE = "+2348031234567"
# The approved templates of tests/fixtures/config.toml, as the stand-in knows them.
TEMPLATE_TEXTS = {
    "HX0000000000000000000000000000c001": "Hi {{1}}, order {{2}} is confirmed: {{3}}.",
    "HX0000000000000000000000000000c002": "Order {{1}} shipped with {{2}}: {{3}}",
    "HX0000000000000000000000000000c003": "Order {{1}} is now {{2}}.",
    "HX0000000000000000000000000000c004": "Low stock ({{1}}): {{2}}",
}


def twilio_env(url: str, **extra: str) -> dict[str, str]:
    return {"KOLAQ_SMS__TRANSPORT": "twilio", "TWILIO_API_URL": url,
            "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN,
            "KOLAQ_SMS__FROM_NUMBER": SHOP_NUMBER, **extra}


def set_phone(engine: Engine, email: str = "ada@example.com", phone: str | None = ADA_PHONE,
              sms: bool = True, whatsapp: bool = False) -> None:
    with Session(engine) as s:
        customer = s.exec(select(Customer).where(Customer.email == email)).one()
        customer.phone, customer.sms_consent, customer.whatsapp_opt_in = phone, sms, whatsapp
        s.add(customer)
        s.commit()


def texts(engine: Engine) -> list[TextMessage]:
    with Session(engine) as s:
        return list(s.exec(select(TextMessage).order_by(TextMessage.id)).all())


def text(engine: Engine, row_id: int) -> TextMessage:
    with Session(engine) as s:
        row = s.get(TextMessage, row_id)
        assert row is not None
        return row
