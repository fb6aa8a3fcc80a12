"""Payments: the acquirer's API as the gateway and the worker use it, and our record of each
attempt."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import propagate, trace
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import Conflict, Invalid
from kassa.metrics import ACQUIRER_ERRORS, ACQUIRER_SECONDS
from kassa.statuses import OPEN_PAYMENTS, SETTLED_PAYMENTS, PaymentStatus
from kassa.tables import Payment, utcnow
from kassa.tracing import tracer


@dataclass(frozen=True)
class IntentState:
    intent_id: str
    # The acquirer's word, one of PaymentStatus's; a plain string because CheckoutWorkflow also
    # keeps an attempt the acquirer did not answer as an IntentState, marked with its own
    # UNANSWERED_ATTEMPT, which is no payment status (and reaches the gateway in CheckoutState).
    status: str
    payment_url: str | None = None
    decline_code: str | None = None

    @classmethod
    def from_acquirer(cls, body: dict[str, Any]) -> "IntentState":
        next_action = body.get("next_action") or {}
        return cls(body["id"], body["status"], next_action.get("url"), body.get("decline_code"))


@dataclass(frozen=True)
class RefundState:
    refund_id: str
    intent_id: str
    amount: int


class AcquirerUnavailable(Exception):
    """The acquirer did not answer or answered 5xx: safe to retry with the same idempotency key."""


class PaymentMethodRejected(Invalid):
    pass


class AcquirerClient:
    def __init__(self, base_url: str, api_key: str, timeout_seconds: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, timed and traced under `operation`; the trace goes on in `traceparent`."""
        headers = dict(kwargs.pop("headers", {}))
        started = time.perf_counter()
        with tracer.start_as_current_span(f"acquirer {operation}", kind=trace.SpanKind.CLIENT):
            propagate.inject(headers)
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as error:
                ACQUIRER_ERRORS.labels(operation, "unreachable").inc()
                raise AcquirerUnavailable(
                    f"acquirer unreachable: {type(error).__name__}"
                ) from error
            finally:
                ACQUIRER_SECONDS.labels(operation).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            ACQUIRER_ERRORS.labels(operation, "server_error").inc()
            raise AcquirerUnavailable(f"acquirer answered {response.status_code}")
        return response

    async def create_intent(
        self,
        idempotency_key: str,
        amount: int,
        currency: str,
        token: str,
        merchant_reference: str,
        return_url: str | None,
    ) -> IntentState:
        """Idempotent on `idempotency_key`: a retry returns the intent of the first call."""
        body = {
            "amount": amount,
            "currency": currency,
            "payment_method": token,
            "merchant_reference": merchant_reference,
            "return_url": return_url,
        }
        response = await self._call(
            "create_intent",
            "POST",
            "/v1/payment_intents",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        if response.status_code >= 400:
            error = response.json().get("error", {})
            raise PaymentMethodRejected(
                error.get("code", "payment_method_rejected"),
                error.get("message", "The payment method was rejected."),
            )
        return IntentState.from_acquirer(response.json())

    async def get_intent(self, intent_id: str) -> IntentState:
        response = await self._call("get_intent", "GET", f"/v1/payment_intents/{intent_id}")
        response.raise_for_status()
        return IntentState.from_acquirer(response.json())

    async def cancel_intent(self, intent_id: str) -> IntentState:
        """Idempotent. If the payment already went through, says so (status succeeded) instead of
        cancelling."""
        response = await self._call(
            "cancel_intent", "POST", f"/v1/payment_intents/{intent_id}/cancel"
        )
        if response.status_code == 409 and "intent" in response.json():
            return IntentState.from_acquirer(response.json()["intent"])
        response.raise_for_status()
        return IntentState.from_acquirer(response.json())

    async def refund(self, idempotency_key: str, intent_id: str, amount: int) -> RefundState:
        """Idempotent on `idempotency_key`. The acquirer refuses more than was charged
        (Conflict)."""
        response = await self._call(
            "refund",
            "POST",
            "/v1/refunds",
            json={"payment_intent": intent_id, "amount": amount},
            headers={"Idempotency-Key": idempotency_key},
        )
        if response.status_code >= 400:
            error = response.json().get("error", {})
            raise Conflict(
                error.get("code", "refund_refused"),
                error.get("message", "The acquirer refused the refund."),
            )
        body = response.json()
        return RefundState(body["id"], body["payment_intent"], body["amount"])


async def record_attempt(
    session: AsyncSession,
    order_id: uuid.UUID,
    attempt: int,
    amount: int,
    currency: str,
    intent: IntentState,
) -> None:
    """Idempotent: a retried attempt (same intent) is recorded once."""
    await session.exec(
        insert(Payment)
        .values(
            intent_id=intent.intent_id,
            order_id=order_id,
            attempt=attempt,
            status=intent.status,
            amount=amount,
            currency=currency,
            payment_url=intent.payment_url,
            decline_code=intent.decline_code,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )


async def advance(
    session: AsyncSession, intent_id: str, status: str, decline_code: str | None = None
) -> bool:
    """Record a newer status of an intent (the acquirer's word, `IntentState.status`); True if it
    moved. Forward only: a stale, repeated or unknown status changes nothing."""
    if status not in SETTLED_PAYMENTS:
        return False
    moved = await session.exec(
        update(Payment)
        .where(col(Payment.intent_id) == intent_id, col(Payment.status).in_(OPEN_PAYMENTS))
        .values(status=status, decline_code=decline_code, updated_at=utcnow())
        .returning(col(Payment.intent_id))
    )
    return moved.scalar_one_or_none() is not None


async def succeeded(session: AsyncSession, order_id: uuid.UUID) -> list[Payment]:
    """The order's payments that went through, in attempt order."""
    query = (
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED)
        .order_by(col(Payment.attempt))
    )
    return list(await session.exec(query))
