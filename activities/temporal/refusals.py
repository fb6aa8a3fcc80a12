"""Errors typed once, mapped at the worker's edge: a service's DomainError becomes a
non-retryable ApplicationError of the same code; anything else is retried by Temporal."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from kassa.errors import DomainError


@asynccontextmanager
async def refusals_are_final() -> AsyncIterator[None]:
    try:
        yield
    except DomainError as refusal:
        # BENIGN: an expected answer (out of stock…), logged quietly rather than as a failure.
        raise ApplicationError(
            refusal.message,
            refusal.detail,
            type=refusal.code,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        ) from None
