"""Domain errors: a machine-readable code, a message that says what to do next.

They know nothing of HTTP; the gateway maps each kind to a status code.
"""

from typing import Any, Literal

Kind = Literal["invalid", "unauthorized", "forbidden", "not_found", "conflict", "too_many_requests"]


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


class TooManyRequests(DomainError):
    """Come back in `retry_after` seconds."""

    kind = "too_many_requests"

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(code, message, retry_after=retry_after)
