"""The sandbox bank (acquirer/), behind the provider interface: Kassa's own PSP for `make run` and
the tests, with its faults. One-stage only: a payment is captured when it succeeds."""

import time
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from activities.providers.calls import call
from activities.providers.protocol import (
    Acknowledgement,
    Capabilities,
    NewPayment,
    PaymentMethodRejected,
    ProviderPayment,
    ProviderRefund,
    RefundRefused,
    WebhookRefused,
    WebhookRequest,
)
from activities.providers.reading import order_id_or_none, storable_json
from activities.webhook_inbox import PaymentEvent
from kassa.errors import Conflict, NotFound
from kassa.statuses import PaymentStatus
from kassa.webhook_signatures import SignatureError, verify

STATUS_OF_EVENT = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}

# What we read of an event, checked to fit our columns; the event is stored as it came.
Identifier = Annotated[str, Field(min_length=1, max_length=64)]


class _Intent(BaseModel):
    id: Identifier
    merchant_reference: str | None = None
    decline_code: Identifier | None = None


class _EventData(BaseModel):
    object: _Intent


class _Event(BaseModel):
    id: Identifier
    type: Identifier
    data: _EventData


class SandboxProvider:
    name = "sandbox"
    capabilities = Capabilities(
        two_stage=False, partial_capture=False, partial_refund=True, currencies=frozenset({"RUB"})
    )

    def __init__(
        self, base_url: str, api_key: str, webhook_secret: str, timeout_seconds: float = 10.0
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_seconds,
        )
        self._webhook_secret = webhook_secret

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_payment(self, payment: NewPayment) -> ProviderPayment:
        body = {
            "amount": payment.amount,
            "currency": payment.currency,
            "payment_method": payment.payment_method,
            "merchant_reference": str(payment.order_id),
            "return_url": payment.return_url,
        }
        response = await self._call(
            "create_payment",
            "POST",
            "/v1/payment_intents",
            json=body,
            headers={"Idempotency-Key": payment.idempotency_key},
        )
        if response.status_code >= 400:
            error = response.json().get("error", {})
            raise PaymentMethodRejected(
                error.get("code", "payment_method_rejected"),
                error.get("message", "The payment method was rejected."),
            )
        return _payment(response.json())

    async def get_payment(self, payment_id: str) -> ProviderPayment:
        response = await self._call("get_payment", "GET", f"/v1/payment_intents/{payment_id}")
        return _payment(
            _known(response, "payment_not_found", "The sandbox bank has no such payment.")
        )

    async def capture(
        self, payment_id: str, amount: int | None, idempotency_key: str
    ) -> ProviderPayment:
        """One-stage: a payment that succeeded is captured already; nothing else can be."""
        payment = await self.get_payment(payment_id)
        if payment.status != PaymentStatus.SUCCEEDED or amount not in (None, payment.amount):
            raise Conflict("capture_unsupported", "The sandbox bank captures when it charges.")
        return payment

    async def cancel(self, payment_id: str, idempotency_key: str) -> ProviderPayment:
        # The sandbox's cancel is idempotent by itself: the key is not sent.
        response = await self._call("cancel", "POST", f"/v1/payment_intents/{payment_id}/cancel")
        if response.status_code == 409 and "intent" in response.json():
            return _payment(response.json()["intent"])
        return _payment(
            _known(response, "payment_not_found", "The sandbox bank has no such payment.")
        )

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> ProviderRefund:
        response = await self._call(
            "refund",
            "POST",
            "/v1/refunds",
            json={"payment_intent": payment_id, "amount": amount},
            headers={"Idempotency-Key": idempotency_key},
        )
        if response.status_code >= 400:
            error = response.json().get("error", {})
            raise RefundRefused(
                error.get("code", "refund_refused"),
                error.get("message", "The acquirer refused the refund."),
            )
        return _refund(response.json())

    async def get_refund(self, refund_id: str) -> ProviderRefund:
        response = await self._call("get_refund", "GET", f"/v1/refunds/{refund_id}")
        return _refund(_known(response, "refund_not_found", "The sandbox bank has no such refund."))

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        try:
            verify(
                self._webhook_secret,
                request.headers.get("acquirer-signature"),
                request.body,
                int(time.time()),
            )
        except SignatureError as bad:
            raise WebhookRefused(
                bad.code, "The webhook signature is missing, wrong or too old."
            ) from None
        try:
            payload = storable_json(request.body)
            event = _Event.model_validate(payload)
        except (ValueError, RecursionError, ValidationError):
            raise WebhookRefused(
                "malformed_event", "The event is not the acquirer's event format."
            ) from None
        intent = event.data.object
        return PaymentEvent(
            id=event.id,
            type=event.type,
            intent_id=intent.id,
            status=STATUS_OF_EVENT.get(event.type),
            decline_code=intent.decline_code,
            order_id=order_id_or_none(intent.merchant_reference),
            payload=payload,
        )

    def acknowledgement(self) -> Acknowledgement:
        return Acknowledgement(200, {"received": True})

    async def _call(self, operation: str, method: str, path: str, **request: Any) -> httpx.Response:
        return await call(
            self._http, self.name, operation, method, path, carry_trace=True, **request
        )


def _payment(body: dict[str, Any]) -> ProviderPayment:
    next_action = body.get("next_action") or {}
    return ProviderPayment(
        payment_id=body["id"],
        status=body["status"],  # the sandbox speaks our words
        amount=body["amount"],
        currency=body["currency"],
        redirect_url=next_action.get("url"),
        decline_code=body.get("decline_code"),
    )


def _known(response: httpx.Response, code: str, message: str) -> Any:
    """The answer's body; NotFound when the bank does not know what was asked for. Any other
    refusal is a request of ours it cannot take: a bug, raised as it is."""
    if response.status_code == 404:
        raise NotFound(code, message)
    response.raise_for_status()
    return response.json()


def _refund(body: dict[str, Any]) -> ProviderRefund:
    return ProviderRefund(body["id"], body["payment_intent"], body["amount"], body["status"])
