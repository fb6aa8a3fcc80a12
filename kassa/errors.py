"""Domain errors: a machine-readable code, a message that says what to do next.

They know nothing of HTTP; the gateway maps each kind to a status code.
"""

from typing import Any, Literal

Kind = Literal["invalid", "unauthorized", "forbidden", "not_found", "conflict", "payment_required"]


class DomainError(Exception):
    kind: Kind = "invalid"

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


class Invalid(DomainError):
    kind = "invalid"


class Unauthorized(DomainError):
    kind = "unauthorized"


class Forbidden(DomainError):
    kind = "forbidden"


class NotFound(DomainError):
    kind = "not_found"


class Conflict(DomainError):
    kind = "conflict"
