"""One call to a provider's API, made the same way by every adapter: timed and traced under its
operation, counted when it fails, and an answer that a retry under the same idempotency key can
fix raised as `ProviderUnavailable` (Temporal retries the activity)."""

import time
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import propagate, trace

from activities.providers.protocol import ProviderUnavailable
from kassa.metrics import PSP_ERRORS, PSP_SECONDS
from kassa.tracing import tracer


def server_error(status_code: int) -> str | None:
    """The common rule: a 5xx is the provider's trouble, anything else is an answer to read."""
    return "server_error" if status_code >= 500 else None


async def call(
    http: httpx.AsyncClient,
    provider: str,
    operation: str,
    method: str,
    path: str,
    *,
    unavailable: Callable[[int], str | None] = server_error,
    carry_trace: bool = False,
    **request: Any,
) -> httpx.Response:
    """`unavailable` names the kind of an answer that refused nothing about the payment (the
    provider's own rules); `carry_trace` sends our `traceparent` (to our own sandbox bank only:
    a real provider's logs are not ours to fill)."""
    headers = dict(request.pop("headers", {}))
    started = time.perf_counter()
    with tracer.start_as_current_span(f"{provider} {operation}", kind=trace.SpanKind.CLIENT):
        if carry_trace:
            propagate.inject(headers)
        try:
            response = await http.request(method, path, headers=headers, **request)
        except httpx.HTTPError as error:
            PSP_ERRORS.labels(provider, operation, "unreachable").inc()
            raise ProviderUnavailable(f"{provider} unreachable: {type(error).__name__}") from error
        finally:
            PSP_SECONDS.labels(provider, operation).observe(time.perf_counter() - started)
    kind = unavailable(response.status_code)
    if kind is not None:
        PSP_ERRORS.labels(provider, operation, kind).inc()
        raise ProviderUnavailable(f"{provider} answered {response.status_code} ({kind})")
    return response
