"""Keep secrets out of logs, errors, the console and the failed-job views."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from kolaq_console.config import SECRET_ENV

MASK = "[REDACTED]"

# Shapes of provider credentials wherever they appear in free text, with what replaces them.
_PATTERNS = [
    (re.compile(r"\bre_[A-Za-z0-9_]{6,}"), MASK),  # Resend API keys
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{6,}"), MASK),  # Svix / Resend webhook secrets
    (re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{6,}"), MASK),  # Stripe / Paystack keys
    (re.compile(r"(?i)(authorization\s*[:=]\s*)(?:bearer\s+)?[^\s'\",}]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1{MASK}"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), rf"\1{MASK}@"),  # passwords inside URLs
]
# A literal every pattern above needs: text without any of them (most log lines) skips the six
# substitutions. Keep it in step with _PATTERNS.
_TRIGGER = re.compile(r"re_|whsec_|k_live_|k_test_|://|(?i:authorization|bearer)")
_SECRET_NAME = re.compile(r"(?i)(secret|password|passwd|token|api_?key|signing_?key|authorization)")


def is_secret_name(name: str) -> bool:
    """Does this key or parameter name say it holds a secret (api_key, token, password...)?"""
    return bool(_SECRET_NAME.search(name))


def _env_secret_values() -> list[str]:
    return [v for name in SECRET_ENV.values() if len(v := os.environ.get(name, "")) >= 4]


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Mask every known secret value and every credential-shaped token in `text`."""
    if not text:
        return text
    for value in [*_env_secret_values(), *extra]:
        if value and value in text:
            text = text.replace(value, MASK)
    if _TRIGGER.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any, key: str = "") -> Any:
    """Redact a JSON-like structure: secret-named keys are masked whole, strings scrubbed."""
    if key and _SECRET_NAME.search(key):
        return MASK
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the formatted message and any traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
