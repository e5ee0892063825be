"""Errors meant for the operator: each message says what was wrong and where."""


class KolaqError(Exception):
    """Base of every error the CLI and console show as a one-line reason."""


class UserError(KolaqError):
    """Bad input (an address, a SKU, an order number, a file): nothing was changed."""


class NotFound(UserError):
    """The thing named does not exist."""


class PermanentJobError(KolaqError):
    """Raised by a task whose failure retrying cannot fix (validation, auth, conflict): the job
    fails at once, skipping its remaining retries, and lands in the failed-job ledger."""
