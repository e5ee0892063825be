"""Can this configuration send SMS/WhatsApp at all? Workers refuse to start when it cannot
(one line each), as they do for email, rather than fail every message on it."""

from __future__ import annotations

from kolaq_console.config import ConfigError, Settings


def sending_problems(settings: Settings) -> list[str]:
    """One line per reason the configured text transport cannot send; empty when it can."""
    s = settings.sms
    if s.transport != "twilio":
        return []  # the dev transport writes files
    problems = [
        f'{name} is not set but [sms] transport = "twilio": no message could be sent; set it, '
        'or use transport = "dev"'
        for name, value in (("TWILIO_ACCOUNT_SID", settings.secrets.twilio_account_sid),
                            ("TWILIO_AUTH_TOKEN", settings.secrets.twilio_auth_token))
        if value is None
    ]
    if not s.from_number and not s.whatsapp_from:
        problems.append('[sms] from_number is not set but transport = "twilio": Twilio needs '
                        "the shop's sending number")
    return problems


def require_can_send(settings: Settings) -> None:
    problems = sending_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))
