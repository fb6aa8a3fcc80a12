"""Stripe behind `PaymentProvider`: PaymentIntents confirmed on creation, `capture_method=manual`
for two-stage, refunds, and webhooks verified from the raw body with `Stripe-Signature`.

Stripe's API takes form-encoded bodies (`metadata[order_id]=…`), answers JSON, and saves the
answer of every POST under its `Idempotency-Key` for a day: a retry under the same key gets the
first answer back (https://docs.stripe.com/api/idempotent_requests).
"""

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from activities.providers.calls import call
from activities.providers.protocol import (
    Acknowledgement,
    Capabilities,
    NewPayment,
    PaymentMethodRejected,
    ProviderPayment,
    ProviderRefund,
    ProviderUnavailable,
    RefundRefused,
    WebhookRefused,
    WebhookRequest,
)
from activities.providers.reading import order_id_or_none, storable_json
from activities.webhook_inbox import PaymentEvent
from kassa.errors import Conflict, Invalid, NotFound
from kassa.statuses import PaymentStatus
from kassa.webhook_signatures import SignatureError, verify

# The version the official `stripe` library of our tests speaks; pinned so that a change of the
# account's default version in Stripe's dashboard cannot change the shapes we read.
STRIPE_VERSION = "2026-10-28.endive"
# Stripe's own libraries refuse a signature older than this (replayed deliveries).
SIGNATURE_TOLERANCE_SECONDS = 300

_STATUSES = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "requires_capture": PaymentStatus.AUTHORIZED,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PROCESSING,
    "canceled": PaymentStatus.CANCELED,
    # We confirm on creation, so an intent back at this status is one whose confirmation failed
    # (declined, or 3-D Secure not passed): that attempt is over, a retry is a new intent.
    "requires_payment_method": PaymentStatus.FAILED,
    # Cannot follow a creation with confirm=true; kept open rather than called an outcome.
    "requires_confirmation": PaymentStatus.PROCESSING,
}
_EVENT_STATUSES = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
    "payment_intent.amount_capturable_updated": PaymentStatus.AUTHORIZED,
    "payment_intent.requires_action": PaymentStatus.REQUIRES_ACTION,
}
_REFUND_STATUSES = {
    "pending": "pending",
    "requires_action": "pending",  # the customer must give details (some non-card methods)
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}


class StripeProvider:
    name = "stripe"
    capabilities = Capabilities(
        two_stage=True,
        partial_capture=True,
        partial_refund=True,
        # Stripe takes many more; these are the ones whose minor unit is a hundredth, as our
        # integer kopecks are. A zero-decimal (JPY) or three-decimal (KWD) currency would need a
        # conversion this adapter does not make.
        currencies=frozenset({"RUB", "USD", "EUR"}),
    )

    def __init__(
        self,
        *,
        base_url: str = "https://api.stripe.com",
        secret_key: str,
        webhook_secret: str,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret_key}", "Stripe-Version": STRIPE_VERSION},
            timeout=timeout_seconds,
        )
        self._webhook_secret = webhook_secret
        self._clock = clock

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_payment(self, payment: NewPayment) -> ProviderPayment:
        """Idempotent on `payment.idempotency_key` (Stripe replays the first answer)."""
        if payment.currency.upper() not in self.capabilities.currencies:
            supported = ", ".join(sorted(self.capabilities.currencies))
            raise Invalid("currency_not_supported", f"Stripe is set up here for {supported}.")
        if payment.payment_method is None:
            raise PaymentMethodRejected(
                "payment_method_required", "Stripe needs a PaymentMethod id (pm_…) to pay with."
            )
        response = await self._post(
            "create_payment",
            "/v1/payment_intents",
            {
                "amount": str(payment.amount),
                "currency": payment.currency.lower(),
                "payment_method": payment.payment_method,
                "confirm": "true",
                "return_url": payment.return_url,
                "capture_method": "automatic" if payment.capture else "manual",
                "metadata[order_id]": str(payment.order_id),
                "description": payment.description,
            },
            payment.idempotency_key,
        )
        if response.is_success:
            return _payment(_json(response))
        error = _error(response)
        # A declined card: the intent exists, and its failure is the payment's outcome.
        if isinstance(error.get("payment_intent"), dict):
            failed = _payment(error["payment_intent"])
            if failed.decline_code is None and failed.status == PaymentStatus.FAILED:
                failed = _with_decline(failed, error)
            return failed
        code, message = _refusal(error, "payment_method_rejected", "Stripe refused the payment.")
        raise PaymentMethodRejected(code, message)

    async def get_payment(self, payment_id: str) -> ProviderPayment:
        response = await self._get("get_payment", f"/v1/payment_intents/{payment_id}")
        if response.is_success:
            return _payment(_json(response))
        code, message = _refusal(_error(response), "payment_not_found", "No such intent at Stripe.")
        raise NotFound(code, message)

    async def capture(
        self, payment_id: str, amount: int | None, idempotency_key: str
    ) -> ProviderPayment:
        """Idempotent on the key; a capture refused because the intent is captured already says
        so (succeeded) instead."""
        form = {} if amount is None else {"amount_to_capture": str(amount)}
        response = await self._post(
            "capture", f"/v1/payment_intents/{payment_id}/capture", form, idempotency_key
        )
        if response.is_success:
            return _payment(_json(response))
        return await self._settled_instead(payment_id, response, {PaymentStatus.SUCCEEDED})

    async def cancel(self, payment_id: str, idempotency_key: str) -> ProviderPayment:
        """Idempotent. Stripe refuses to cancel an intent that went through
        (`payment_intent_unexpected_state`): then its status (succeeded) is the answer."""
        response = await self._post(
            "cancel", f"/v1/payment_intents/{payment_id}/cancel", {}, idempotency_key
        )
        if response.is_success:
            return _payment(_json(response))
        return await self._settled_instead(
            payment_id, response, {PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED}
        )

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> ProviderRefund:
        """Idempotent on the key; more than is left (or a payment not captured) is a
        RefundRefused."""
        response = await self._post(
            "refund",
            "/v1/refunds",
            {"payment_intent": payment_id, "amount": str(amount)},
            idempotency_key,
        )
        if response.is_success:
            return _refund(_json(response))
        code, message = _refusal(_error(response), "refund_refused", "Stripe refused the refund.")
        raise RefundRefused(code, message)

    async def get_refund(self, refund_id: str) -> ProviderRefund:
        response = await self._get("get_refund", f"/v1/refunds/{refund_id}")
        if response.is_success:
            return _refund(_json(response))
        code, message = _refusal(_error(response), "refund_not_found", "Stripe has no such refund.")
        raise NotFound(code, message)

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        self._verify(request.body, request.headers.get("stripe-signature"))
        try:
            event = storable_json(request.body)
            event_id, event_type = event["id"], event["type"]
            data = event["data"]["object"]
            if not (isinstance(event_id, str) and isinstance(event_type, str)):
                raise TypeError("id and type must be strings")
            if not isinstance(data, dict):
                raise TypeError("data.object must be an object")
            intent_id = _intent_of(data)
        except (ValueError, KeyError, TypeError) as error:
            raise WebhookRefused("malformed_event", f"Not a Stripe event: {error}") from error
        status = _EVENT_STATUSES.get(event_type) if data.get("object") == "payment_intent" else None
        return PaymentEvent(
            id=event_id,
            type=event_type,
            intent_id=intent_id,
            status=status,
            decline_code=_decline_code(data) if status == PaymentStatus.FAILED else None,
            order_id=_order_id(data),
            payload=event,
        )

    def acknowledgement(self) -> Acknowledgement:
        return Acknowledgement(200, {"received": True})

    def _verify(self, body: bytes, header: str | None) -> None:
        """`Stripe-Signature: t=…,v1=…[,v1=…]`: any v1 may match (two while a secret is rolled),
        signed within the tolerance."""
        if not self._webhook_secret:
            raise WebhookRefused(
                "signature_unverifiable", "no Stripe webhook secret is set", retry=True
            )
        try:
            verify(
                self._webhook_secret,
                header,
                body,
                int(self._clock()),
                tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS,
            )
        except SignatureError as bad:
            raise WebhookRefused(
                bad.code, "The Stripe-Signature does not sign this body."
            ) from None

    async def _settled_instead(
        self, payment_id: str, refusal: httpx.Response, settled: set[PaymentStatus]
    ) -> ProviderPayment:
        """A refused capture or cancel: if the intent already stands where the call would have
        put it, that is the answer (a retry, or a race with the customer); else a Conflict."""
        error = _error(refusal)
        if refusal.status_code != 404:
            current = await self.get_payment(payment_id)
            if current.status in settled:
                return current
        code, message = _refusal(error, "payment_intent_unexpected_state", "Stripe refused it.")
        raise Conflict(code, message)

    async def _post(
        self, operation: str, path: str, form: Mapping[str, str], idempotency_key: str
    ) -> httpx.Response:
        return await self._call(
            operation, "POST", path, data=dict(form), headers={"Idempotency-Key": idempotency_key}
        )

    async def _get(self, operation: str, path: str) -> httpx.Response:
        return await self._call(operation, "GET", path)

    async def _call(self, operation: str, method: str, path: str, **request: Any) -> httpx.Response:
        return await call(
            self._http, self.name, operation, method, path, unavailable=_retryable, **request
        )


def _retryable(status_code: int) -> str | None:
    """The kind of an answer that refused nothing about the payment itself."""
    if status_code >= 500:
        return "server_error"
    if status_code == 429:
        return "rate_limited"
    if status_code == 409:  # the same key in flight in another request: retry later
        return "idempotency_in_use"
    if status_code in (401, 403):
        # Our key, not the customer's card: declining every payment would be wrong; retrying
        # works once the key is fixed.
        return "unauthorized"
    return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ProviderUnavailable(f"Stripe answered {response.status_code}, not JSON") from error
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"Stripe answered {response.status_code}, not an object")
    return body


def _error(response: httpx.Response) -> dict[str, Any]:
    error = _json(response).get("error")
    return error if isinstance(error, dict) else {}


def _refusal(error: Mapping[str, Any], default_code: str, default_message: str) -> tuple[str, str]:
    code = error.get("decline_code") or error.get("code") or default_code
    return str(code), str(error.get("message") or default_message)


def _payment(intent: Mapping[str, Any]) -> ProviderPayment:
    status = _STATUSES.get(str(intent.get("status")))
    if status is None:
        # The status only: an intent carries its client_secret, which goes nowhere.
        raise ProviderUnavailable(
            f"Stripe answered an unknown intent status {intent.get('status')!r}"
        )
    next_action = intent.get("next_action") or {}
    # `use_stripe_sdk` (Stripe.js on the page handles it) carries no URL: then there is none.
    redirect = (next_action.get("redirect_to_url") or {}).get("url")
    waiting = status == PaymentStatus.REQUIRES_ACTION
    # Once captured, what was taken: less than the hold after a partial capture.
    received = intent.get("amount_received") if status == PaymentStatus.SUCCEEDED else None
    return ProviderPayment(
        payment_id=str(intent["id"]),
        status=status,
        amount=int(received or intent["amount"]),
        currency=str(intent["currency"]).upper(),
        redirect_url=str(redirect) if waiting and redirect else None,
        decline_code=_decline_code(intent) if status == PaymentStatus.FAILED else None,
    )


def _with_decline(payment: ProviderPayment, error: Mapping[str, Any]) -> ProviderPayment:
    code = error.get("decline_code") or error.get("code")
    return ProviderPayment(
        payment.payment_id,
        payment.status,
        payment.amount,
        payment.currency,
        payment.redirect_url,
        payment.decline_code or (str(code) if code else None),
    )


def _decline_code(intent: Mapping[str, Any]) -> str | None:
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code")
    return str(code) if code else None


def _refund(refund: Mapping[str, Any]) -> ProviderRefund:
    return ProviderRefund(
        refund_id=str(refund["id"]),
        payment_id=str(refund["payment_intent"]),
        amount=int(refund["amount"]),
        status=_REFUND_STATUSES.get(str(refund.get("status")), "pending"),
    )


def _intent_of(data: Mapping[str, Any]) -> str:
    """The intent an event is about: the object itself, or the intent a charge or refund names."""
    if data.get("object") != "payment_intent" and isinstance(data.get("payment_intent"), str):
        return str(data["payment_intent"])
    intent_id = data["id"]
    if not isinstance(intent_id, str):
        raise TypeError("data.object.id must be a string")
    return intent_id


def _order_id(data: Mapping[str, Any]) -> uuid.UUID | None:
    metadata = data.get("metadata")
    return order_id_or_none(metadata.get("order_id") if isinstance(metadata, dict) else None)
