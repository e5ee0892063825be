"""Phone numbers, parsed and validated with `phonenumbers` (Google's libphonenumber metadata).

Numbers are stored in E.164 (`+2348031234567`); a number written without its country code is
read as a number of the shop's country ([shop] country), as a Nigerian customer would write it.
"""

from __future__ import annotations

import functools

from kolaq_console.errors import UserError

WHATSAPP_PREFIX = "whatsapp:"


@functools.lru_cache(maxsize=4096)
def normalise_number(value: str | None, region: str, what: str = "phone number") -> str:
    """`value` in E.164, or a UserError naming what was wrong (nothing else is checked: no
    network look-up). Accepts spaces, dashes, brackets and a `whatsapp:` prefix."""
    import phonenumbers

    raw = (value or "").strip()
    if raw.lower().startswith(WHATSAPP_PREFIX):
        raw = raw[len(WHATSAPP_PREFIX):].strip()
    if not raw:
        raise UserError(f"{what} is missing")
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise UserError(f"invalid {what} {raw!r}: {exc._msg}") from None
    if not phonenumbers.is_valid_number(parsed):
        where = (phonenumbers.region_code_for_number(parsed)
                 or phonenumbers.region_code_for_country_code(parsed.country_code))
        if where in (None, "ZZ"):
            where = f"+{parsed.country_code}"
        raise UserError(f"invalid {what} {raw!r}: not a valid number for {where}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def address(channel: str, number: str) -> str:
    """Twilio's address of `number` on `channel` (`whatsapp:+234...` for WhatsApp)."""
    return f"{WHATSAPP_PREFIX}{number}" if channel == "whatsapp" else number


def strip_channel(value: str) -> tuple[str, str]:
    """(channel, E.164) of a Twilio address such as `whatsapp:+234...` or `+234...`."""
    if value.lower().startswith(WHATSAPP_PREFIX):
        return "whatsapp", value[len(WHATSAPP_PREFIX):]
    return "sms", value
