"""Errors meant for the operator: each message says what was wrong and where."""

import sys


class KolaqError(Exception):
    """Base of every error the CLI and console show as a one-line reason."""


class UserError(KolaqError):
    """Bad input (an address, a SKU, an order number, a file): nothing was changed."""


class NotFound(UserError):
    """The thing named does not exist."""


class PermanentJobError(KolaqError):
    """Raised by a task whose failure retrying cannot fix (validation, auth, conflict): the job
    fails at once, skipping its remaining retries, and lands in the failed-job ledger."""


def print_operator_errors_in_one_line(who: str) -> None:
    """Make a KolaqError that ends the process print as `who: reason`, not as a traceback
    (for entry points we do not own, e.g. `huey_consumer tasks.huey`); others are unchanged."""
    previous = sys.excepthook
    if getattr(previous, "kolaq_one_line", False):
        return

    def hook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        if issubclass(exc_type, KolaqError):
            sys.stderr.write(f"{who}: {exc}\n")
        else:
            previous(exc_type, exc, tb)

    hook.kolaq_one_line = True  # type: ignore[attr-defined]
    sys.excepthook = hook
