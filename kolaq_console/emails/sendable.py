"""Can this configuration send email at all? Workers refuse to start when it cannot, rather
than spend every email's retries on a mistake no retry fixes."""

from __future__ import annotations

from urllib.parse import urlsplit

from kolaq_console.config import ConfigError, Settings

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}


def sending_problems(settings: Settings) -> list[str]:
    """One line per reason the configured transport cannot send; empty when it can."""
    if settings.email.transport != "resend":
        return []  # the dev transport writes files: nothing to send through
    problems = []
    if settings.secrets.resend_api_key is None:
        problems.append('RESEND_API_KEY is not set but [email] transport = "resend": no email '
                        'could be sent; set it, or use transport = "dev"')
    url = settings.shop.public_url
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if (parts.scheme != "https" or host in LOCAL_HOSTS or host.endswith(".localhost")
            or host.startswith("127.")):
        problems.append(f'[shop] public_url = "{url}" with transport = "resend": every customer '
                        "email links to it; set the shop's public https:// address")
    return problems


def require_can_send(settings: Settings) -> None:
    """ConfigError (one line) when the configuration cannot send email."""
    problems = sending_problems(settings)
    if problems:
        raise ConfigError("; ".join(problems))
