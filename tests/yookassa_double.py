"""A test double of YooKassa's API v3: payments (redirect, two-stage, capture, cancel), refunds,
Idempotence-Key replay, Basic auth, and notifications from a chosen source address. There is no
third-party fake of YooKassa, so this one is kept honest by the official SDK (`yookassa`), in
the double itself, on every exchange:

- What it is sent: `POST /v3/payments` must build the SDK's `PaymentRequest` and pass its
  `validate()` (amount > 0, not both payment_token and payment_method_id, description ≤ 128...),
  `POST /v3/payments/{id}/capture` its `CapturePaymentRequest`, `POST /v3/refunds` its
  `RefundRequest` (payment_id of 36 characters, amount > 0). The SDK's models take keys they do
  not know silently, as plain attributes, so the model must also give the body back
  (`dict(model)` equal to the body): a misspelled field, an amount not written "123.45", a
  metadata that is no dict fail it. A refusal is YooKassa's 400 `invalid_request`.
  `POST /v3/payments/{id}/cancel` has no model (the SDK's `Payment.cancel` sends no body): the
  double takes no body or `{}`.
- What it answers: every payment must give itself back through the SDK's `PaymentResponse`,
  every refund through `RefundResponse` (an invented cancellation reason, read by the SDK's
  `CancellationDetails` as `unknown`, fails it), every error body must be one the SDK's
  `ErrorFactory` knows the code of.
- What it notifies: every notification must be read by `WebhookNotificationFactory` into the
  class its event calls for (`RefundWebhookNotification` for refund.succeeded, else
  `WebhookNotification` holding a `PaymentResponse`), its object given back whole.

A check that fails on the double's own answer is a bug of the double: it is answered 500 and kept
in `dishonest`, which the tests expect empty. The SDK's own client (`yookassa.Payment`,
`yookassa.Refund`, pointed at the double through `Configuration.configure(api_url=...)`) is run
against it too, in tests/test_provider_yookassa.py.

The customer's part, on YooKassa's page: `GET /_double/pay/{id}` (the confirmation_url), and
`POST /_double/payments/{id}/succeed` or `/decline?reason=...` as the customer's bank would
answer. YooKassa's own part: `expire_authorization` lets go of a hold nobody captured in time
(`canceled`, party `yoo_money`, reason `expired_on_capture`); a payment id put in
`expire_before_capture` has its hold run out just as its capture arrives, so the capture is
refused as YooKassa refuses one of a canceled payment (400 `invalid_request`).

Tokens (`payment_token`): `double:frictionless` pays at once, `double:3ds` asks for the page,
`double:decline:{reason}` is declined; any other is refused (400).
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from yookassa.domain.errors.error import ErrorFactory  # type: ignore[import-untyped]
from yookassa.domain.notification import (  # type: ignore[import-untyped]
    RefundWebhookNotification,
    WebhookNotification,
    WebhookNotificationFactory,
)
from yookassa.domain.request import (  # type: ignore[import-untyped]
    CapturePaymentRequest,
    PaymentRequest,
    RefundRequest,
)
from yookassa.domain.response import PaymentResponse, RefundResponse  # type: ignore[import-untyped]

IDEMPOTENCE_KEY_MAX_LENGTH = 64  # YooKassa's limit
TOKEN_PREFIX = "double:"


class Refusal(Exception):
    def __init__(self, status: int, code: str, description: str, parameter: str | None = None):
        super().__init__(description)
        self.status, self.code, self.description, self.parameter = (
            status,
            code,
            description,
            parameter,
        )


@dataclass
class Payment:
    id: str
    status: str  # pending | waiting_for_capture | succeeded | canceled
    amount: int  # kopecks: authorized, then what was captured
    currency: str
    capture: bool
    metadata: dict[str, Any]
    description: str | None
    return_url: str | None
    confirmation_url: str | None
    created_at: str
    refunded: int = 0
    paid: bool = False
    captured_at: str | None = None
    cancellation: tuple[str, str] | None = None  # (party, reason)


@dataclass
class Refund:
    id: str
    payment_id: str
    amount: int
    currency: str
    created_at: str


@dataclass
class YooKassaDouble:
    account_id: str
    secret_key: str
    # Where and from which local address notifications go (None, or not `notifying`: none).
    notify_url: str | None = None
    notify_source: str = "127.0.0.1"
    notifying: bool = True
    announce: bool = False  # print every notification's answer (the command line's double)
    payments: dict[str, Payment] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    deliveries: list[tuple[str, int | str]] = field(default_factory=list)  # (event, answer)
    # Every notification YooKassa had to send, delivered or not (not `notifying`: lost).
    notified: list[dict[str, Any]] = field(default_factory=list)
    dishonest: list[str] = field(default_factory=list)
    # Payments whose authorization runs out just as their capture comes (a test's switch).
    expire_before_capture: set[str] = field(default_factory=set)
    _replies: dict[str, tuple[str, Any, int, Any]] = field(default_factory=dict)
    _sending: set[asyncio.Task[httpx.Response | None]] = field(default_factory=set)

    def app(self) -> FastAPI:
        return _app(self)

    def reset(self, notify_source: str = "127.0.0.1") -> None:
        """A clean double, served where it was: no payments, refunds, keys or records."""
        for kept in (
            self.payments,
            self.refunds,
            self.requests,
            self.deliveries,
            self.notified,
            self.dishonest,
            self.expire_before_capture,
            self._replies,
        ):
            kept.clear()
        self.notify_source, self.notifying = notify_source, True

    async def delivered(self) -> None:
        """Every notification sent so far has been answered."""
        while self._sending:
            await asyncio.gather(*self._sending)

    def notification(self, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A notification as YooKassa sends it, read back through the SDK's factory."""
        body = {"type": "notification", "event": event, "object": obj}
        parsed = WebhookNotificationFactory().create(json.loads(json.dumps(body)))
        expected = RefundWebhookNotification if event.startswith("refund.") else WebhookNotification
        if type(parsed) is not expected or _sdk_dict(parsed.object) != obj:
            self._dishonest(f"notification {event} not read back by WebhookNotificationFactory")
        return body

    def payment_json(self, payment: Payment) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": payment.id,
            "status": payment.status,
            "amount": _amount(payment.amount, payment.currency),
            "recipient": {"account_id": self.account_id, "gateway_id": "100500"},
            "created_at": payment.created_at,
            "paid": payment.paid,
            "refundable": payment.status == "succeeded" and payment.refunded < payment.amount,
            "test": True,
            "metadata": payment.metadata,
        }
        if payment.description:
            body["description"] = payment.description
        if payment.confirmation_url:
            body["confirmation"] = {
                "type": "redirect",
                "return_url": payment.return_url,
                "confirmation_url": payment.confirmation_url,
            }
        if payment.paid:
            body["payment_method"] = {"type": "bank_card", "id": payment.id, "saved": False}
        if payment.status == "waiting_for_capture":
            body["expires_at"] = _iso(datetime.now(UTC) + timedelta(days=7))
        if payment.captured_at:
            body["captured_at"] = payment.captured_at
        if payment.refunded:
            body["refunded_amount"] = _amount(payment.refunded, payment.currency)
        if payment.cancellation:
            party, reason = payment.cancellation
            body["cancellation_details"] = {"party": party, "reason": reason}
        if _sdk_dict(PaymentResponse(json.loads(json.dumps(body)))) != body:
            self._dishonest(f"payment {payment.id} not read back by PaymentResponse")
        return body

    def refund_json(self, refund: Refund) -> dict[str, Any]:
        body = {
            "id": refund.id,
            "payment_id": refund.payment_id,
            "status": "succeeded",
            "created_at": refund.created_at,
            "amount": _amount(refund.amount, refund.currency),
        }
        if _sdk_dict(RefundResponse(json.loads(json.dumps(body)))) != body:
            self._dishonest(f"refund {refund.id} not read back by RefundResponse")
        return body

    def customer_pays(self, payment: Payment) -> None:
        """The customer's bank says yes: the money is held, or taken at once."""
        if payment.status != "pending":
            raise Refusal(409, "invalid_request", f"payment is {payment.status}")
        payment.paid = True
        if payment.capture:
            payment.status, payment.captured_at = "succeeded", _iso(datetime.now(UTC))
        else:
            payment.status = "waiting_for_capture"
        self._notify(f"payment.{payment.status}", self.payment_json(payment))

    def customer_declined(self, payment: Payment, reason: str, party: str) -> None:
        if payment.status != "pending":
            raise Refusal(409, "invalid_request", f"payment is {payment.status}")
        payment.status, payment.cancellation = "canceled", (party, reason)
        self._notify("payment.canceled", self.payment_json(payment))

    def expire_authorization(self, payment: Payment) -> None:
        """YooKassa lets go of a hold not captured in time: the payment is canceled by YooKassa
        itself (`yoo_money`, `expired_on_capture`), and the shop is told."""
        if payment.status != "waiting_for_capture":
            raise Refusal(409, "invalid_request", f"payment is {payment.status}")
        payment.status, payment.cancellation = "canceled", ("yoo_money", "expired_on_capture")
        self._notify("payment.canceled", self.payment_json(payment))

    async def redeliver(self, event: str, object_id: str) -> httpx.Response | None:
        """YooKassa sends a notification again, the body as it was first sent (its answer was
        lost or late): the last `event` of the object, delivered now; the shop's answer (None if
        none came)."""
        body = next(
            sent
            for sent in reversed(self.notified)
            if (sent["event"], sent["object"]["id"]) == (event, object_id)
        )
        return await self._send(event, body)

    def _notify(self, event: str, obj: dict[str, Any]) -> None:
        body = self.notification(event, obj)
        self.notified.append(body)
        if self.notify_url is None or not self.notifying:
            return
        task = asyncio.create_task(self._send(event, body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, event: str, body: dict[str, Any]) -> httpx.Response | None:
        obj = body["object"]
        # From `notify_source`: any 127.0.0.0/8 address is this machine's, so a test can play
        # YooKassa's network (and a foreign one) over loopback.
        transport = httpx.AsyncHTTPTransport(local_address=self.notify_source)
        assert self.notify_url is not None
        response: httpx.Response | None = None
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            try:
                response = await client.post(self.notify_url, json=body)
                self.deliveries.append((event, response.status_code))
            except httpx.HTTPError as error:
                self.deliveries.append((event, type(error).__name__))
            if self.announce:
                print(f"notified {event} {obj['id']}: {self.deliveries[-1][1]}", flush=True)
        return response

    def _dishonest(self, what: str) -> None:
        self.dishonest.append(what)
        raise Refusal(500, "internal_server_error", f"the double is not honest: {what}")


def _app(double: YooKassaDouble) -> FastAPI:
    app = FastAPI()
    expected_auth = "Basic " + base64.b64encode(
        f"{double.account_id}:{double.secret_key}".encode()
    ).decode("ascii")

    @app.exception_handler(Refusal)
    async def refused(request: Request, refusal: Refusal) -> JSONResponse:
        return _error(refusal)

    async def api_call(request: Request) -> tuple[str | None, Any]:
        """Checks the caller; the key and body of a POST."""
        if request.headers.get("authorization") != expected_auth:
            raise Refusal(401, "invalid_credentials", "Basic auth shopId:secret_key is wrong")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            raise Refusal(400, "invalid_request", "the body is not JSON") from None
        double.requests.append((request.method, request.url.path, dict(request.headers), body))
        if request.method != "POST":
            return None, body
        key = request.headers.get("idempotence-key")
        if not key or len(key) > IDEMPOTENCE_KEY_MAX_LENGTH:
            raise Refusal(400, "invalid_request", "Idempotence-Key missing or too long")
        return key, body

    async def once(request: Request, operation: Any) -> JSONResponse:
        """YooKassa's idempotence: the same key and request answer the first answer again; the
        same key with another request is refused."""
        key, body = await api_call(request)
        assert key is not None
        seen = double._replies.get(key)
        if seen is not None:
            path, seen_body, status, answer = seen
            if (path, seen_body) != (request.url.path, body):
                raise Refusal(
                    400,
                    "invalid_request",
                    "Idempotence key duplicated with another request",
                    "Idempotence-Key",
                )
            return JSONResponse(answer, status)
        try:
            status, answer = 200, operation(body, str(request.base_url).rstrip("/"))
        except Refusal as refusal:
            if refusal.status >= 500:
                raise
            status, answer = refusal.status, _error_body(refusal)
        double._replies[key] = (request.url.path, body, status, answer)
        return JSONResponse(answer, status)

    def payment_of(payment_id: str) -> Payment:
        payment = double.payments.get(payment_id)
        if payment is None:
            raise Refusal(404, "not_found", f"payment {payment_id} not found")
        return payment

    @app.post("/v3/payments")
    async def create_payment(request: Request) -> JSONResponse:
        def create(body: Any, base_url: str) -> dict[str, Any]:
            sdk = _sdk_request(PaymentRequest, body)
            confirmation = body.get("confirmation") or {}
            payment_id = str(uuid.uuid4())
            payment = Payment(
                id=payment_id,
                status="pending",
                amount=_kopecks(sdk.amount.value),
                currency=_currency(sdk.amount.currency),
                capture=body.get("capture", False),  # YooKassa holds unless told to take
                metadata=body.get("metadata") or {},
                description=body.get("description"),
                return_url=confirmation.get("return_url"),
                confirmation_url=None,
                created_at=_iso(datetime.now(UTC)),
            )
            if confirmation.get("type") not in (None, "redirect"):
                raise Refusal(400, "invalid_request", "the double knows redirect only")
            token = body.get("payment_token")
            if token is None or token == TOKEN_PREFIX + "3ds":
                if payment.return_url is None:
                    raise Refusal(
                        400, "invalid_request", "confirmation is required", "confirmation"
                    )
                payment.confirmation_url = f"{base_url}/_double/pay/{payment_id}"
            elif not token.startswith(TOKEN_PREFIX + "decline:") and token != (
                TOKEN_PREFIX + "frictionless"
            ):
                raise Refusal(400, "invalid_request", "Invalid payment_token", "payment_token")
            double.payments[payment_id] = payment
            if token == TOKEN_PREFIX + "frictionless":
                double.customer_pays(payment)
            elif token and token.startswith(TOKEN_PREFIX + "decline:"):
                reason = token.removeprefix(TOKEN_PREFIX + "decline:")
                double.customer_declined(payment, reason, "payment_network")
            return double.payment_json(payment)

        return await once(request, create)

    @app.get("/v3/payments/{payment_id}")
    async def get_payment(payment_id: str, request: Request) -> JSONResponse:
        await api_call(request)
        return JSONResponse(double.payment_json(payment_of(payment_id)))

    @app.post("/v3/payments/{payment_id}/capture")
    async def capture(payment_id: str, request: Request) -> JSONResponse:
        def take(body: Any, base_url: str) -> dict[str, Any]:
            sdk = _sdk_request(CapturePaymentRequest, body or {})
            payment = payment_of(payment_id)
            if payment_id in double.expire_before_capture:
                double.expire_before_capture.discard(payment_id)
                double.expire_authorization(payment)
            if payment.status != "waiting_for_capture":
                raise Refusal(
                    400, "invalid_request", f"Payment is {payment.status}: cannot be captured"
                )
            amount = _kopecks(sdk.amount.value) if sdk.amount else payment.amount
            if amount > payment.amount or (sdk.amount and sdk.amount.currency != payment.currency):
                raise Refusal(400, "invalid_request", "More than was authorized", "amount")
            # The rest of the hold goes back to the card: the payment is what was taken.
            payment.amount, payment.status = amount, "succeeded"
            payment.captured_at = _iso(datetime.now(UTC))
            answer = double.payment_json(payment)
            double._notify("payment.succeeded", answer)
            return answer

        return await once(request, take)

    @app.post("/v3/payments/{payment_id}/cancel")
    async def cancel(payment_id: str, request: Request) -> JSONResponse:
        def void(body: Any, base_url: str) -> dict[str, Any]:
            if body not in (None, {}):
                raise Refusal(400, "invalid_request", "cancel takes no parameters")
            payment = payment_of(payment_id)
            # YooKassa's API reference: only a payment waiting_for_capture can be canceled.
            if payment.status != "waiting_for_capture":
                raise Refusal(
                    400, "invalid_request", f"Payment is {payment.status}: cannot be canceled"
                )
            payment.status = "canceled"
            payment.cancellation = ("merchant", "canceled_by_merchant")
            answer = double.payment_json(payment)
            double._notify("payment.canceled", answer)
            return answer

        return await once(request, void)

    @app.post("/v3/refunds")
    async def refund(request: Request) -> JSONResponse:
        def give_back(body: Any, base_url: str) -> dict[str, Any]:
            sdk = _sdk_request(RefundRequest, body)
            payment = payment_of(sdk.payment_id)
            amount = _kopecks(sdk.amount.value)
            if payment.status != "succeeded":
                raise Refusal(400, "invalid_request", f"Payment is {payment.status}", "payment_id")
            if sdk.amount.currency != payment.currency:
                raise Refusal(400, "invalid_request", "Another currency", "amount")
            if amount > payment.amount - payment.refunded:
                raise Refusal(
                    400, "invalid_request", "Refund amount exceeds what is left", "amount"
                )
            payment.refunded += amount
            made = Refund(
                str(uuid.uuid4()), payment.id, amount, payment.currency, _iso(datetime.now(UTC))
            )
            double.refunds[made.id] = made
            answer = double.refund_json(made)
            double._notify("refund.succeeded", answer)
            return answer

        return await once(request, give_back)

    @app.get("/v3/refunds/{refund_id}")
    async def get_refund(refund_id: str, request: Request) -> JSONResponse:
        await api_call(request)
        made = double.refunds.get(refund_id)
        if made is None:
            raise Refusal(404, "not_found", f"refund {refund_id} not found")
        return JSONResponse(double.refund_json(made))

    @app.get("/_double/pay/{payment_id}")
    async def page(payment_id: str) -> HTMLResponse:
        payment = payment_of(payment_id)
        value = _amount(payment.amount, payment.currency)["value"]
        return HTMLResponse(
            f"<h1>YooKassa (double): {value} {payment.currency}</h1>"
            f'<form method="post" action="/_double/payments/{payment_id}/succeed">'
            "<button>Pay</button></form>"
            f'<form method="post" action="/_double/payments/{payment_id}/decline">'
            "<button>Decline</button></form>"
        )

    @app.post("/_double/payments/{payment_id}/succeed")
    async def succeed(payment_id: str) -> JSONResponse:
        payment = payment_of(payment_id)
        double.customer_pays(payment)
        return JSONResponse(double.payment_json(payment))

    @app.post("/_double/payments/{payment_id}/decline")
    async def decline(
        payment_id: str, reason: str = "general_decline", party: str = "payment_network"
    ) -> JSONResponse:
        payment = payment_of(payment_id)
        double.customer_declined(payment, reason, party)
        return JSONResponse(double.payment_json(payment))

    return app


def _sdk_request(model: Any, body: Any) -> Any:
    """The SDK's request model of `body`, validated, and giving the body back whole."""
    if not isinstance(body, dict):
        raise Refusal(400, "invalid_request", "the body is not a JSON object")
    try:
        built = model(body)
        built.validate()
    except (TypeError, ValueError, AttributeError) as refused:
        raise Refusal(400, "invalid_request", f"{model.__name__}: {refused}") from None
    # The SDK's own client sends the empty lists its models start with (transfers, statements).
    if _sdk_dict(built) != _pruned(body):
        raise Refusal(
            400,
            "invalid_request",
            f"{model.__name__} does not give the body back: {_sdk_dict(built)} != {body}",
        )
    return built


def _sdk_dict(model: Any) -> Any:
    """An SDK object as JSON, without what the SDK adds itself (None, empty lists)."""
    return _pruned(dict(model))


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _error_body(refusal: Refusal) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "id": secrets.token_hex(16),
        "code": refusal.code,
        "description": refusal.description,
    }
    if refusal.parameter:
        body["parameter"] = refusal.parameter
    # The SDK's client turns an error body into its exception through ErrorFactory.
    assert ErrorFactory().create(body).code == refusal.code, body
    return body


def _error(refusal: Refusal) -> JSONResponse:
    return JSONResponse(_error_body(refusal), refusal.status)


def _amount(kopecks: int, currency: str) -> dict[str, str]:
    return {"value": str(Decimal(kopecks).scaleb(-2)), "currency": currency}


def _kopecks(value: Decimal) -> int:
    return int(value.scaleb(2))


def _currency(currency: str) -> str:
    if currency != "RUB":
        raise Refusal(400, "invalid_request", f"the double's shop takes RUB, not {currency}")
    return currency


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def main() -> None:
    """The double as a server, for `make run` with KASSA_PSP=yookassa (README, "Payment
    providers"). Its shopId and secret come from KASSA_PSP_ACCOUNT_ID and KASSA_PSP_SECRET_KEY,
    or are made up here and printed."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.yookassa_double", description=main.__doc__
    )
    parser.add_argument("--port", type=int, default=8430, help="served on 127.0.0.1:PORT")
    parser.add_argument(
        "--notify",
        metavar="URL",
        default="http://127.0.0.1:8000/webhooks/yookassa",
        help="where notifications go (Kassa's /webhooks/yookassa); '' sends none",
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="ADDRESS",
        default="127.0.0.2",
        help="the loopback address notifications come from (YooKassa's network, for Kassa)",
    )
    args = parser.parse_args()
    account_id = os.environ.get("KASSA_PSP_ACCOUNT_ID") or str(secrets.randbelow(900_000) + 100_000)
    given_secret = os.environ.get("KASSA_PSP_SECRET_KEY")
    secret_key = given_secret or f"test_{secrets.token_urlsafe(24)}"
    double = YooKassaDouble(
        account_id,
        secret_key,
        notify_url=args.notify or None,
        notify_source=args.source,
        announce=True,
    )
    print("# Kassa's settings for this double (e.g. before `make run`):")
    print("export KASSA_PSP=yookassa")
    print(f"export KASSA_PSP_URL=http://127.0.0.1:{args.port}")
    print(f"export KASSA_PSP_ACCOUNT_ID={account_id}")
    if given_secret:
        print("# KASSA_PSP_SECRET_KEY: the one in this environment")
    else:
        print(f"export KASSA_PSP_SECRET_KEY={secret_key}")
    print(f"export KASSA_PSP_TRUSTED_NETWORKS={args.source}/32")
    print(f"# notifications: to {args.notify or 'nowhere'}, from {args.source}", flush=True)
    # uvicorn stops on Ctrl-C (or SIGTERM) after the requests in flight.
    uvicorn.run(double.app(), host="127.0.0.1", port=args.port, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
