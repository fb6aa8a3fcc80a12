"""YooKassa (API v3, https://yookassa.ru/developers/api) behind the provider interface.

- Basic auth `shopId:secret_key`; every POST carries an `Idempotence-Key` (YooKassa answers a
  repeated key with the first answer, and refuses the key with another body).
- Money: our kopecks ↔ YooKassa's `{"value": "123.45", "currency": "RUB"}`, through `Decimal`
  and never a float; an amount with more than two decimals is not read (it would be rounded).
- Two-stage: `capture: false` leaves the payment `waiting_for_capture` (our AUTHORIZED) until
  `/capture` (all or part of it) or `/cancel`.
- Notifications carry no signature: they are taken only from YooKassa's networks, and only for
  what the API says when asked again (`parse_webhook`).
"""

import hashlib
import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.providers.calls import call, server_error
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
from kassa.errors import Conflict, NotFound
from kassa.metrics import PSP_ERRORS
from kassa.statuses import PaymentStatus

# Where YooKassa sends notifications from: the list of the official SDK
# (yookassa 3.13.0, yookassa/domain/common/security_helper.py, `SecurityHelper.YOOKASSA_NETWORKS`),
# the same as YooKassa's docs (https://yookassa.ru/developers/using-api/webhooks, "IP addresses").
# Copied rather than imported, so the worker does not need the SDK; tests/test_provider_yookassa.py
# fails if the two lists part.
YOOKASSA_NETWORKS = (
    "77.75.153.0/25",
    "77.75.156.11",
    "77.75.156.35",
    "77.75.154.128/25",
    "185.71.76.0/27",
    "185.71.77.0/27",
    "2a02:5180:0:1509::/64",
    "2a02:5180:0:2655::/64",
    "2a02:5180:0:1533::/64",
    "2a02:5180:0:2669::/64",
)

# YooKassa's limit on Idempotence-Key. A longer key (an admin's refund key, `admin-` and up to
# 100 characters) is sent as its SHA-256 in hex, 64 characters: the same on every retry.
IDEMPOTENCE_KEY_MAX_LENGTH = 64
DESCRIPTION_MAX_LENGTH = 128  # YooKassa's limit (the SDK's PaymentRequest refuses longer)
# A decimal string with at most two decimals: what YooKassa sends for RUB. Anything else (more
# decimals, an exponent, NaN, a sign) is refused rather than rounded.
_VALUE = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")
_KOPECKS_PER_RUBLE = 2  # decimal places

# The four notifications Kassa subscribes to (YooKassa's names; the SDK's
# `WebhookNotificationEventType`).
PAYMENT_EVENTS = frozenset({"payment.waiting_for_capture", "payment.succeeded", "payment.canceled"})
REFUND_EVENTS = frozenset({"refund.succeeded"})

# What we read of YooKassa's objects, checked to fit our columns (no NUL, which PostgreSQL text
# cannot hold). YooKassa's ids are 36 characters.
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]


class _Answer(BaseModel):
    """Keeps what it does not read, so the answer can be stored as it came
    (`model_dump(exclude_unset=True)`)."""

    model_config = ConfigDict(extra="allow")


class _Amount(_Answer):
    value: str
    currency: str


class _Confirmation(_Answer):
    type: str
    confirmation_url: str | None = None


class _Cancellation(_Answer):
    party: str
    reason: Identifier


class _Payment(_Answer):
    id: Identifier
    status: Literal["pending", "waiting_for_capture", "succeeded", "canceled"]
    amount: _Amount
    confirmation: _Confirmation | None = None
    cancellation_details: _Cancellation | None = None
    metadata: dict[str, str] | None = None


class _Refund(_Answer):
    id: Identifier
    payment_id: Identifier
    status: Literal["pending", "succeeded", "canceled"]
    amount: _Amount


class _Object(BaseModel):
    id: Identifier


class _Notification(BaseModel):
    type: Literal["notification"]
    event: Identifier
    object: _Object


class _Error(BaseModel):
    code: str = "error"
    description: str = "YooKassa refused the request."


def to_yookassa(amount: int, currency: str) -> dict[str, str]:
    """Kopecks as YooKassa's amount: 12345 → {"value": "123.45", ...}, exactly."""
    return {"value": str(Decimal(amount).scaleb(-_KOPECKS_PER_RUBLE)), "currency": currency}


def from_yookassa(value: str) -> int:
    """YooKassa's decimal string as kopecks: "123.45" → 12345. More than two decimals (or any other
    spelling than digits, a point and up to two digits) is a ValueError, never rounded."""
    if not _VALUE.fullmatch(value):
        raise ValueError(f"not an amount of kopecks: {value!r}")
    return int(Decimal(value).scaleb(_KOPECKS_PER_RUBLE))


class YooKassaProvider:
    name = "yookassa"
    capabilities = Capabilities(
        two_stage=True,
        partial_capture=True,
        partial_refund=True,
        # YooKassa settles a shop in rubles. Its API names other currencies (the SDK's `Currency`:
        # USD, EUR, BYN, CNY, KZT, UAH, UZS, TRY, INR, MDL, AZN, AMD) for the payment methods and
        # contracts that allow them; a shop's contract says which, so only RUB is claimed.
        currencies=frozenset({"RUB"}),
        payment_method_required=False,  # with no token, the customer pays on YooKassa's page
    )

    def __init__(
        self,
        account_id: str,
        secret_key: str,
        base_url: str = "https://api.yookassa.ru",
        trusted_networks: list[str] | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, auth=httpx.BasicAuth(account_id, secret_key), timeout=timeout_seconds
        )
        self._trusted = [
            ipaddress.ip_network(network)
            for network in (YOOKASSA_NETWORKS if trusted_networks is None else trusted_networks)
        ]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_payment(self, payment: NewPayment) -> ProviderPayment:
        body: dict[str, Any] = {
            "amount": to_yookassa(payment.amount, payment.currency),
            "capture": payment.capture,
            # Always a redirect: with no token the customer pays on YooKassa's page; with one, the
            # page is where 3-D Secure happens if the bank asks for it.
            "confirmation": {"type": "redirect", "return_url": payment.return_url},
            "metadata": {"order_id": str(payment.order_id)},
        }
        if payment.description:
            body["description"] = payment.description[:DESCRIPTION_MAX_LENGTH]
        if payment.payment_method:
            # A one-time token from YooKassa's Checkout.js or mobile SDK is `payment_token`;
            # `payment_method_id` is a method saved for recurring payments, which Kassa does not
            # keep (the SDK's PaymentRequest refuses both at once).
            body["payment_token"] = payment.payment_method
        response = await self._post("create_payment", "/v3/payments", body, payment.idempotency_key)
        if response.status_code >= 400:
            error = _error(response)
            raise PaymentMethodRejected(error.code, error.description)
        return _our_payment(_read(_Payment, response))

    async def get_payment(self, payment_id: str) -> ProviderPayment:
        return _our_payment(await self._fetch_payment(payment_id))

    async def capture(
        self, payment_id: str, amount: int | None, idempotency_key: str
    ) -> ProviderPayment:
        """A capture YooKassa refuses because the payment is taken already (another key, or the
        first answer lost) answers with the payment as it stands."""
        body: dict[str, Any] = {}
        if amount is not None:
            current = await self._fetch_payment(payment_id)
            body["amount"] = to_yookassa(amount, current.amount.currency)
        response = await self._post(
            "capture", f"/v3/payments/{payment_id}/capture", body, idempotency_key
        )
        if response.status_code == 404:
            raise NotFound("payment_not_found", f"YooKassa has no payment {payment_id}.")
        if response.status_code >= 400:
            now = _our_payment(await self._fetch_payment(payment_id))
            if now.status == PaymentStatus.SUCCEEDED:
                return now
            raise Conflict("capture_refused", _error(response).description)
        return _our_payment(_read(_Payment, response))

    async def cancel(self, payment_id: str, idempotency_key: str) -> ProviderPayment:
        """YooKassa cancels only a payment `waiting_for_capture` (its API reference, "Cancel a
        payment"). Any other is answered as it stands: succeeded meanwhile, canceled already, or
        still pending, which YooKassa itself cancels once the customer's time runs out
        (`expired_on_confirmation`)."""
        response = await self._post(
            "cancel", f"/v3/payments/{payment_id}/cancel", {}, idempotency_key
        )
        if response.status_code == 404:
            raise NotFound("payment_not_found", f"YooKassa has no payment {payment_id}.")
        if response.status_code >= 400:
            return await self.get_payment(payment_id)
        return _our_payment(_read(_Payment, response))

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> ProviderRefund:
        payment = await self._fetch_payment(payment_id)
        body = {"payment_id": payment_id, "amount": to_yookassa(amount, payment.amount.currency)}
        response = await self._post("refund", "/v3/refunds", body, idempotency_key)
        if response.status_code >= 400:
            error = _error(response)
            raise RefundRefused(error.code, error.description)
        return _our_refund(_read(_Refund, response))

    async def get_refund(self, refund_id: str) -> ProviderRefund:
        return _our_refund(await self._fetch_refund(refund_id))

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """Taken only from `trusted_networks`, and built from the API's answer when asked again,
        never from the notification's body: an address can be borrowed through a proxy, the
        API's answer cannot.

        The event id: YooKassa's notifications have none. `"payment.{status}:{id}"` of the state
        fetched names one state of one payment, and a payment is in each state once (statuses
        only move forward): a redelivery gets the same id, every new state a new one. For a
        truthful notification it is `"{event}:{object.id}"`; taken from the fetched state rather
        than the body, a notification that came early or lied cannot use up the id of the state
        it named before the payment reaches it."""
        if not self._trusted_peer(request.peer):
            raise WebhookRefused(
                "untrusted_source", "Notifications are taken from YooKassa's networks only."
            )
        try:
            payload = storable_json(request.body)
            notification = _Notification.model_validate(payload)
        except (ValueError, RecursionError, ValidationError):
            raise WebhookRefused(
                "malformed_event", "The notification is not YooKassa's format."
            ) from None
        event = notification.event
        if event not in PAYMENT_EVENTS | REFUND_EVENTS:
            raise WebhookRefused("unsupported_event", f"Kassa does not take {event} events.")
        status: PaymentStatus | None
        try:
            if event in REFUND_EVENTS:
                refund = await self._fetch_refund(notification.object.id)
                payment = await self._fetch_payment(refund.payment_id)
                event_id = f"refund.{refund.status}:{refund.id}"
                status = None  # a refund moves no payment: stored, told to no workflow
                fetched: dict[str, Any] = refund.model_dump(exclude_unset=True)
            else:
                payment = await self._fetch_payment(notification.object.id)
                event_id = f"payment.{payment.status}:{payment.id}"
                status = _event_status(_our_payment(payment))
                fetched = payment.model_dump(exclude_unset=True)
        except NotFound:
            raise WebhookRefused(
                "unknown_object", "YooKassa does not know what the notification names."
            ) from None
        except ProviderUnavailable:
            # Fail closed: unverified, nothing is taken; a 5xx makes YooKassa send it again.
            raise WebhookRefused(
                "verification_unavailable",
                "YooKassa's API could not confirm the notification; send it again.",
                retry=True,
            ) from None
        ours = _our_payment(payment)
        return PaymentEvent(
            id=event_id,
            type=event,
            intent_id=payment.id,
            status=status,
            decline_code=ours.decline_code,
            order_id=order_id_or_none((payment.metadata or {}).get("order_id")),
            payload={"notification": payload, "fetched": fetched},
        )

    def acknowledgement(self) -> Acknowledgement:
        return Acknowledgement(200, {})

    def _trusted_peer(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self._trusted)

    async def _fetch_payment(self, payment_id: str) -> _Payment:
        response = await self._call("get_payment", "GET", f"/v3/payments/{payment_id}")
        _expect_found(response, f"YooKassa has no payment {payment_id}.")
        return _read(_Payment, response)

    async def _fetch_refund(self, refund_id: str) -> _Refund:
        response = await self._call("get_refund", "GET", f"/v3/refunds/{refund_id}")
        _expect_found(response, f"YooKassa has no refund {refund_id}.")
        return _read(_Refund, response)

    async def _post(
        self, operation: str, path: str, body: dict[str, Any], idempotency_key: str
    ) -> httpx.Response:
        return await self._call(
            operation, "POST", path, json=body, headers={"Idempotence-Key": _key(idempotency_key)}
        )

    async def _call(self, operation: str, method: str, path: str, **request: Any) -> httpx.Response:
        return await call(
            self._http, self.name, operation, method, path, unavailable=_retryable, **request
        )


def _retryable(status_code: int) -> str | None:
    """Safe to repeat under the same key: 5xx, 429 (too many requests), or 202 (YooKassa still
    processing the same key)."""
    if status_code == 202:
        return "processing"
    if status_code == 429:
        return "rate_limited"
    return server_error(status_code)


def _key(idempotency_key: str) -> str:
    if len(idempotency_key) <= IDEMPOTENCE_KEY_MAX_LENGTH:
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def _our_payment(payment: _Payment) -> ProviderPayment:
    amount = _kopecks(payment.amount)
    redirect_url = payment.confirmation.confirmation_url if payment.confirmation else None
    decline_code = None
    if payment.status == "pending":
        # Waiting for the customer on YooKassa's page (or 3-D Secure); without a page to send
        # them to, YooKassa is deciding by itself.
        status = PaymentStatus.REQUIRES_ACTION if redirect_url else PaymentStatus.PROCESSING
    elif payment.status == "waiting_for_capture":
        status = PaymentStatus.AUTHORIZED
    elif payment.status == "succeeded":
        status = PaymentStatus.SUCCEEDED
    else:
        # YooKassa says `canceled` for every payment that did not go through. Only the merchant's
        # own cancel (party `merchant`: our /cancel, or the shop's dashboard) is our CANCELED, a
        # void. Any other party (`payment_network`: the bank declined, 3-D Secure failed;
        # `yoo_money`: antifraud, the customer's time or the hold ran out) is a FAILED payment,
        # with YooKassa's reason (`insufficient_funds`, `card_expired`...) as the decline code,
        # so the checkout offers another card.
        details = payment.cancellation_details
        if details is not None and details.party == "merchant":
            status = PaymentStatus.CANCELED
        else:
            status = PaymentStatus.FAILED
            decline_code = details.reason if details else "unknown"
    return ProviderPayment(
        payment_id=payment.id,
        status=status,
        amount=amount,
        currency=payment.amount.currency,
        redirect_url=redirect_url if status == PaymentStatus.REQUIRES_ACTION else None,
        decline_code=decline_code,
    )


def _event_status(payment: ProviderPayment) -> PaymentStatus | None:
    """An outcome for the order's workflow: settled, or held for capture; None while the
    customer is still paying."""
    status = PaymentStatus(payment.status)
    return None if status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING) else status


def _our_refund(refund: _Refund) -> ProviderRefund:
    # YooKassa's `canceled` refund is one it could not make (cancellation_details says why: the
    # shop's balance, the bank): a merchant cannot cancel a refund, so it is our `failed`.
    status = "failed" if refund.status == "canceled" else refund.status
    return ProviderRefund(refund.id, refund.payment_id, _kopecks(refund.amount), status)


def _kopecks(amount: _Amount) -> int:
    try:
        return from_yookassa(amount.value)
    except ValueError as error:
        PSP_ERRORS.labels("yookassa", "read_amount", "bad_answer").inc()
        raise ProviderUnavailable(f"YooKassa answered an amount we cannot read: {error}") from None


_Model = TypeVar("_Model", bound=BaseModel)


def _read(model: type[_Model], response: httpx.Response) -> _Model:
    """An answer we cannot read is treated as none: the call is repeated under its key."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise ProviderUnavailable(
            f"YooKassa answered {response.status_code} with a body we cannot read:"
            f" {error.error_count()} errors"
        ) from None


def _error(response: httpx.Response) -> _Error:
    try:
        return _Error.model_validate_json(response.content)
    except ValidationError:
        return _Error(code=f"http_{response.status_code}")


def _expect_found(response: httpx.Response, message: str) -> None:
    if response.status_code == 404:
        raise NotFound("not_found", message)
    if response.status_code >= 400:
        raise ProviderUnavailable(
            f"YooKassa answered {response.status_code}: {_error(response).description}"
        )
