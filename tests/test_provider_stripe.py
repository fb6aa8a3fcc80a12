"""The Stripe adapter against what nobody here wrote: localstripe, started as a process (behind a
proxy that drops the parameters it refuses and records that they were sent); the official `stripe`
library's webhook signatures; and Stripe's documented answers for what localstripe cannot do
(tests/stripe_responses/). Nothing is mocked."""

import asyncio
import copy
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.providers.protocol import (
    NewPayment,
    PaymentMethodRejected,
    PaymentProvider,
    ProviderUnavailable,
    RefundRefused,
    WebhookRefused,
    WebhookRequest,
    payment_key,
)
from activities.providers.stripe import STRIPE_VERSION, StripeProvider
from kassa.statuses import PaymentStatus
from tests.servers import listening_socket, serving
from tests.stack import free_port
from tests.stripe_fake import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    Proxy,
    authenticate,
    configure_webhooks,
    localstripe_client,
    running_localstripe,
    running_proxy,
    three_d_secure_method,
)

RETURN_URL = "https://shop.example/checkout/return"
RESPONSES = Path(__file__).parent / "stripe_responses"


def new_payment(method: str | None, *, capture: bool = True, amount: int = 150_000) -> NewPayment:
    order_id = uuid.uuid4()
    return NewPayment(
        order_id=order_id,
        amount=amount,
        currency="RUB",
        idempotency_key=payment_key(order_id, 1, "create"),
        return_url=RETURN_URL,
        capture=capture,
        payment_method=method,
        description=f"Order {order_id}",
    )


# ---------------------------------------------------------------------------------------------
# localstripe, a proxy in front of it (tests/stripe_fake.py), and a receiver for its webhooks


@dataclass
class Inbox:
    """What localstripe delivered to the webhook receiver, as the gateway would hand it on."""

    received: list[WebhookRequest] = field(default_factory=list)

    async def wait_for(self, intent_id: str, event_type: str) -> WebhookRequest:
        async with asyncio.timeout(10):
            while True:
                for request in self.received:
                    event = json.loads(request.body)
                    if event["type"] == event_type and event["data"]["object"]["id"] == intent_id:
                        return request
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def localstripe() -> AsyncIterator[str]:
    async with running_localstripe() as url:
        yield url


@pytest.fixture(scope="module")
async def localstripe_api(localstripe: str) -> AsyncIterator[httpx.AsyncClient]:
    async with localstripe_client(localstripe) as http:
        yield http


@pytest.fixture(scope="module")
async def proxy(localstripe: str) -> AsyncIterator[Proxy]:
    async with running_proxy(localstripe) as running:
        yield running


@pytest.fixture(scope="module")
async def provider(proxy: Proxy) -> AsyncIterator[StripeProvider]:
    provider = StripeProvider(
        base_url=proxy.url, secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET
    )
    yield provider
    await provider.aclose()


@pytest.fixture(scope="module")
async def webhooks(localstripe_api: httpx.AsyncClient) -> AsyncIterator[Inbox]:
    inbox = Inbox()

    async def receive(request: Request) -> Response:
        peer = request.client.host if request.client else None
        inbox.received.append(WebhookRequest(await request.body(), dict(request.headers), peer))
        return JSONResponse({"received": True})

    app = Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"])])
    async with serving(app, listening_socket()) as url:
        await configure_webhooks(localstripe_api, "kassa", f"{url}/webhooks/stripe")
        yield inbox


# ---------------------------------------------------------------------------------------------
# Payments against localstripe


def test_the_adapter_is_a_payment_provider() -> None:
    # mypy checks the assignment against the protocol; the capabilities are what the issue asks.
    provider: type[PaymentProvider] = StripeProvider
    caps = provider.capabilities
    assert caps.two_stage and caps.partial_capture and caps.partial_refund
    assert caps.currencies == {"RUB", "USD", "EUR"}


async def test_a_frictionless_card_pays_and_the_request_is_real_stripes(
    provider: StripeProvider, proxy: Proxy
) -> None:
    payment = new_payment("pm_card_visa")
    paid = await provider.create_payment(payment)

    assert paid.payment_id.startswith("pi_")
    assert (paid.status, paid.amount, paid.currency) == (PaymentStatus.SUCCEEDED, 150_000, "RUB")
    assert paid.redirect_url is None and paid.decline_code is None
    assert await provider.get_payment(paid.payment_id) == paid

    sent = proxy.last("/v1/payment_intents")
    assert sent.form == {
        "amount": "150000",
        "currency": "rub",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "return_url": RETURN_URL,  # sent, and dropped by the proxy for localstripe
        "capture_method": "automatic",
        "metadata[order_id]": str(payment.order_id),
        "description": payment.description,
    }
    assert sent.headers["idempotency-key"] == payment.idempotency_key
    assert sent.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert sent.headers["stripe-version"] == STRIPE_VERSION
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_every_post_carries_an_idempotency_key(
    provider: StripeProvider, proxy: Proxy
) -> None:
    authorized = await provider.create_payment(new_payment("pm_card_visa", capture=False))
    await provider.capture(authorized.payment_id, None, "capture-key")
    await provider.refund(authorized.payment_id, 1_000, "refund-key")
    intent = f"/v1/payment_intents/{authorized.payment_id}"
    assert proxy.last(f"{intent}/capture").headers["idempotency-key"] == "capture-key"
    assert proxy.last("/v1/refunds").headers["idempotency-key"] == "refund-key"
    assert all("idempotency-key" in sent.headers for sent in proxy.sent if sent.method == "POST")


async def test_a_declined_card_is_a_failed_payment_with_its_code(provider: StripeProvider) -> None:
    # Stripe's 402 embeds the failed intent (localstripe's names the charge only: the proxy adds
    # the intent, as Stripe words it; its documented answer is covered below too).
    declined = await provider.create_payment(new_payment("pm_card_chargeCustomerFail"))

    assert declined.payment_id.startswith("pi_")
    assert (declined.status, declined.decline_code) == (PaymentStatus.FAILED, "card_declined")
    assert await provider.get_payment(declined.payment_id) == declined


async def test_an_unknown_payment_method_is_rejected(provider: StripeProvider) -> None:
    with pytest.raises(PaymentMethodRejected):
        await provider.create_payment(new_payment("pm_nothing_like_it"))


@pytest.mark.parametrize(
    ("passed", "status", "decline_code"),
    [
        (True, PaymentStatus.SUCCEEDED, None),
        (False, PaymentStatus.FAILED, "payment_intent_authentication_failure"),
    ],
)
async def test_three_d_secure(
    provider: StripeProvider,
    localstripe_api: httpx.AsyncClient,
    passed: bool,
    status: PaymentStatus,
    decline_code: str | None,
) -> None:
    waiting = await provider.create_payment(
        new_payment(await three_d_secure_method(localstripe_api))
    )
    # localstripe answers `use_stripe_sdk` (Stripe.js handles it), which has no URL.
    assert (waiting.status, waiting.redirect_url) == (PaymentStatus.REQUIRES_ACTION, None)

    await authenticate(localstripe_api, waiting.payment_id, passed)

    settled = await provider.get_payment(waiting.payment_id)
    assert (settled.status, settled.decline_code) == (status, decline_code)


async def test_an_authorization_is_captured_whole(provider: StripeProvider) -> None:
    authorized = await provider.create_payment(new_payment("pm_card_visa", capture=False))
    assert authorized.status == PaymentStatus.AUTHORIZED

    captured = await provider.capture(authorized.payment_id, None, "capture-whole")
    assert (captured.status, captured.amount) == (PaymentStatus.SUCCEEDED, 150_000)


async def test_an_authorization_is_captured_in_part(
    provider: StripeProvider, proxy: Proxy, localstripe_api: httpx.AsyncClient
) -> None:
    authorized = await provider.create_payment(new_payment("pm_card_visa", capture=False))
    assert proxy.last("/v1/payment_intents").form["capture_method"] == "manual"

    captured = await provider.capture(authorized.payment_id, 90_000, "capture-part")

    assert captured.status == PaymentStatus.SUCCEEDED
    sent = proxy.last(f"/v1/payment_intents/{authorized.payment_id}/capture")
    assert sent.form == {"amount_to_capture": "90000"}
    # localstripe keeps no amount_received: it releases the rest as a refund on the charge.
    intent = (await localstripe_api.get(f"/v1/payment_intents/{authorized.payment_id}")).json()
    assert intent["latest_charge"]["amount_refunded"] == 60_000


async def test_a_second_capture_says_it_is_captured(provider: StripeProvider) -> None:
    authorized = await provider.create_payment(new_payment("pm_card_visa", capture=False))
    await provider.capture(authorized.payment_id, None, "capture-once")
    again = await provider.capture(authorized.payment_id, None, "capture-twice")
    assert again.status == PaymentStatus.SUCCEEDED


async def test_an_authorization_is_voided(provider: StripeProvider) -> None:
    authorized = await provider.create_payment(new_payment("pm_card_visa", capture=False))
    voided = await provider.cancel(authorized.payment_id, "void")
    assert voided.status == PaymentStatus.CANCELED
    assert (await provider.cancel(authorized.payment_id, "void-again")).status == "canceled"


async def test_cancelling_a_payment_that_went_through_says_so(provider: StripeProvider) -> None:
    paid = await provider.create_payment(new_payment("pm_card_visa"))
    answer = await provider.cancel(paid.payment_id, "too-late")
    assert answer.status == PaymentStatus.SUCCEEDED


async def test_refunds_whole_and_in_part(provider: StripeProvider) -> None:
    whole = await provider.create_payment(new_payment("pm_card_visa", amount=50_000))
    refund = await provider.refund(whole.payment_id, 50_000, "refund-whole")
    assert refund.refund_id.startswith("re_")
    assert (refund.payment_id, refund.amount, refund.status) == (
        whole.payment_id,
        50_000,
        "succeeded",
    )
    assert await provider.get_refund(refund.refund_id) == refund

    part = await provider.create_payment(new_payment("pm_card_visa", amount=50_000))
    first = await provider.refund(part.payment_id, 20_000, "refund-part-1")
    second = await provider.refund(part.payment_id, 30_000, "refund-part-2")
    assert (first.amount, second.amount) == (20_000, 30_000)
    assert first.refund_id != second.refund_id


async def test_a_refund_of_a_failed_payment_is_refused(provider: StripeProvider) -> None:
    declined = await provider.create_payment(new_payment("pm_card_chargeCustomerFail"))
    with pytest.raises(RefundRefused):
        await provider.refund(declined.payment_id, 1_000, "refund-nothing")


# ---------------------------------------------------------------------------------------------
# Webhooks: localstripe's, and the official library's signatures


async def test_localstripes_signed_webhooks_are_verified_and_mapped(
    provider: StripeProvider, webhooks: Inbox
) -> None:
    payment, decline = new_payment("pm_card_visa"), new_payment("pm_card_chargeCustomerFail")
    paid = await provider.create_payment(payment)
    declined = await provider.create_payment(decline)

    # localstripe sends each a second after the fact.
    succeeded = await webhooks.wait_for(paid.payment_id, "payment_intent.succeeded")
    failed = await webhooks.wait_for(declined.payment_id, "payment_intent.payment_failed")

    event = await provider.parse_webhook(succeeded)
    assert event.id.startswith("evt_") and event.type == "payment_intent.succeeded"
    assert (event.intent_id, event.status, event.order_id) == (
        paid.payment_id,
        PaymentStatus.SUCCEEDED,
        payment.order_id,
    )
    assert event.decline_code is None and event.payload["id"] == event.id
    event = await provider.parse_webhook(failed)
    assert (event.intent_id, event.status, event.decline_code, event.order_id) == (
        declined.payment_id,
        PaymentStatus.FAILED,
        "card_declined",
        decline.order_id,
    )

    # The official library agrees that localstripe signed them, and neither takes a changed body.
    for request in (succeeded, failed):
        header = request.headers["stripe-signature"]
        assert stripe.Webhook.construct_event(request.body, header, WEBHOOK_SECRET).id
    tampered = replace(succeeded, body=succeeded.body.replace(b"succeeded", b"canceled"))
    with pytest.raises(WebhookRefused) as refused:
        await provider.parse_webhook(tampered)
    assert refused.value.code == "signature_mismatch"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered.body, tampered.headers["stripe-signature"], WEBHOOK_SECRET
        )


def event_body(event_type: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(8)}",
            "object": "event",
            "api_version": STRIPE_VERSION,
            "created": int(time.time()),
            "type": event_type,
            "data": {"object": data},
        }
    )


def intent_data(**fields: Any) -> dict[str, Any]:
    return {
        "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "payment_intent",
        "amount": 2000,
        "currency": "rub",
        "metadata": {"order_id": "3f0c4b8e-7d0a-4f0e-9f3e-5a6b7c8d9e0f"},
        "last_payment_error": None,
        **fields,
    }


def signed(body: str, header: str | None = None) -> WebhookRequest:
    """`body` as Stripe would deliver it, signed now by the official library (or `header`)."""
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    return WebhookRequest(body.encode(), {"stripe-signature": header}, "127.0.0.1")


@pytest.fixture(scope="module")
async def offline() -> AsyncIterator[Callable[..., StripeProvider]]:
    """Adapters for webhooks only (no API call), on a clock of the test's choosing."""
    made: list[StripeProvider] = []

    def make(clock: Callable[[], float] = time.time) -> StripeProvider:
        made.append(
            StripeProvider(
                base_url="http://127.0.0.1:9",
                secret_key=SECRET_KEY,
                webhook_secret=WEBHOOK_SECRET,
                clock=clock,
            )
        )
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def library_header(body: str, *, timestamp: int, secret: str = WEBHOOK_SECRET) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


def rolled_secret_header(body: str, now: int) -> str:
    """Two v1 signatures while the endpoint's secret is rolled: the old one first."""
    old = library_header(body, timestamp=now, secret="whsec_the_old_one").split(",")[1]
    return f"t={now},{old},{library_header(body, timestamp=now).split(',')[1]}"


BODY = event_body("payment_intent.succeeded", intent_data(status="succeeded"))
# Each header is made when its test runs (`now`): the library checks against its own clock.
Signer = Callable[[int], str]


@pytest.mark.parametrize(
    ("body", "header", "taken"),
    [
        pytest.param(BODY, lambda now: library_header(BODY, timestamp=now), True, id="fresh"),
        pytest.param(
            BODY, lambda now: library_header(BODY, timestamp=now - 200), True, id="within-300s"
        ),
        pytest.param(BODY, lambda now: rolled_secret_header(BODY, now), True, id="any-v1-matches"),
        pytest.param(
            BODY + " ", lambda now: library_header(BODY, timestamp=now), False, id="body-changed"
        ),
        pytest.param(
            BODY, lambda now: library_header(BODY, timestamp=now - 400), False, id="too-old"
        ),
        pytest.param(
            BODY,
            lambda now: library_header(BODY, timestamp=now, secret="whsec_other"),
            False,
            id="other-secret",
        ),
        pytest.param(
            BODY,
            lambda now: library_header(BODY, timestamp=now).replace("v1=", "v0="),
            False,
            id="no-v1",
        ),
        pytest.param(BODY, lambda now: "v1=" + "0" * 64, False, id="no-timestamp"),
        pytest.param(BODY, lambda now: "", False, id="no-header"),
    ],
)
async def test_our_signature_check_agrees_with_stripes_library(
    offline: Callable[..., StripeProvider], body: str, header: Signer, taken: bool
) -> None:
    signature = header(int(time.time()))

    def library_takes() -> bool:
        try:
            stripe.Webhook.construct_event(body, signature, WEBHOOK_SECRET)
        except stripe.SignatureVerificationError:
            return False
        return True

    async def refusal() -> str | None:
        try:
            await offline().parse_webhook(signed(body, signature))
        except WebhookRefused as refused:
            return refused.code
        return None

    # Taken by both, or refused by both (ours says why: signature_missing, _malformed, _mismatch).
    assert ((await refusal()) is None, library_takes()) == (taken, taken)


async def test_the_tolerance_is_300_seconds_on_the_adapters_clock(
    offline: Callable[..., StripeProvider],
) -> None:
    now = int(time.time())
    request = signed(BODY, library_header(BODY, timestamp=now))
    assert (await offline(clock=lambda: now + 300.0).parse_webhook(request)).id
    with pytest.raises(WebhookRefused):
        await offline(clock=lambda: now + 301.0).parse_webhook(request)


@pytest.mark.parametrize(
    ("event_type", "data", "status", "decline_code"),
    [
        ("payment_intent.succeeded", intent_data(), PaymentStatus.SUCCEEDED, None),
        (
            "payment_intent.payment_failed",
            intent_data(
                last_payment_error={"code": "card_declined", "decline_code": "expired_card"}
            ),
            PaymentStatus.FAILED,
            "expired_card",
        ),
        ("payment_intent.canceled", intent_data(), PaymentStatus.CANCELED, None),
        ("payment_intent.amount_capturable_updated", intent_data(), PaymentStatus.AUTHORIZED, None),
        ("payment_intent.requires_action", intent_data(), PaymentStatus.REQUIRES_ACTION, None),
        ("payment_intent.created", intent_data(), None, None),
        (
            "charge.succeeded",
            {"id": "ch_1", "object": "charge", "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa"},
            None,
            None,
        ),
    ],
)
async def test_events_in_our_terms(
    offline: Callable[..., StripeProvider],
    event_type: str,
    data: dict[str, Any],
    status: PaymentStatus | None,
    decline_code: str | None,
) -> None:
    event = await offline().parse_webhook(signed(event_body(event_type, data)))
    assert (event.type, event.intent_id) == (event_type, "pi_3MtwBwLkdIwHu7ix28a3tqPa")
    assert (event.status, event.decline_code) == (status, decline_code)
    expected_order = uuid.UUID(data["metadata"]["order_id"]) if "metadata" in data else None
    assert event.order_id == expected_order


async def test_an_order_id_that_is_not_ours_is_none(offline: Callable[..., StripeProvider]) -> None:
    body = event_body("payment_intent.succeeded", intent_data(metadata={"order_id": "A-17"}))
    assert (await offline().parse_webhook(signed(body))).order_id is None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"id": "evt_1", "type": "x", "data": {}}',
        '{"id": "evt_1", "type": "x", "data": {"object": {"id": "pi_1", "amount": 1e400}}}',
        '{"id": "evt_1", "type": "x", "data": {"object": {"id": "pi_1", "deep": '
        + "[" * 5000
        + "]" * 5000
        + "}}}",
    ],
    ids=["not json", "a list", "no object", "1e400", "nested too deeply"],
)
async def test_a_signed_body_that_is_no_event_is_malformed(
    offline: Callable[..., StripeProvider], body: str
) -> None:
    with pytest.raises(WebhookRefused) as refused:
        await offline().parse_webhook(signed(body))
    assert refused.value.code == "malformed_event"


async def test_the_acknowledgement(offline: Callable[..., StripeProvider]) -> None:
    answer = offline().acknowledgement()
    assert (answer.status_code, answer.body) == (200, {"received": True})


# ---------------------------------------------------------------------------------------------
# What localstripe cannot do: Stripe's documented answers, served as Stripe would


def recorded(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RESPONSES / name).read_text())
    return loaded


@dataclass
class RecordedStripe:
    """Stripe's documented answers (tests/stripe_responses/), filled in per request; the first
    answer under each Idempotency-Key is saved and replayed, as Stripe does."""

    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    saved: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    executed: int = 0
    replayed: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/payment_intents", self.idempotent(self.create), methods=["POST"]),
                Route("/v1/payment_intents/{id}", self.retrieve, methods=["GET"]),
                Route(
                    "/v1/payment_intents/{id}/cancel",
                    self.idempotent(self.cancel),
                    methods=["POST"],
                ),
                Route(
                    "/v1/payment_intents/{id}/capture",
                    self.idempotent(self.capture),
                    methods=["POST"],
                ),
                Route("/v1/refunds", self.idempotent(self.refund), methods=["POST"]),
            ]
        )

    def idempotent(self, handler: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            key = request.headers["idempotency-key"]
            if key in self.saved:
                self.replayed += 1
                status, body = self.saved[key]
                return JSONResponse(body, status, headers={"Idempotent-Replayed": "true"})
            self.executed += 1
            form = dict(parse_qsl((await request.body()).decode()))
            status, body = handler(request, form)
            self.saved[key] = (status, body)
            return JSONResponse(body, status)

        return endpoint

    def create(self, request: Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = recorded("payment_intent.json") | {
            "id": f"pi_{secrets.token_hex(12)}",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "capture_method": form["capture_method"],
            "payment_method": form["payment_method"],
            "metadata": {"order_id": form["metadata[order_id]"]},
            "description": form["description"],
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(12)}"
        self.intents[intent["id"]] = intent
        if form["payment_method"] == "pm_card_threeDSecure2Required":
            action = recorded("next_action_redirect_to_url.json")
            action["redirect_to_url"]["return_url"] = form["return_url"]
            intent.update(status="requires_action", next_action=action)
            return 200, intent
        if form["payment_method"] == "pm_card_visa_chargeDeclined":
            error = recorded("card_declined.json")
            intent.update(
                status="requires_payment_method",
                last_payment_error={k: v for k, v in error["error"].items() if v is not None},
            )
            error["error"]["payment_intent"] = intent
            return 402, error
        if form["capture_method"] == "manual":
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
        else:
            intent.update(status="succeeded", amount_received=intent["amount"])
        return 200, intent

    def capture(self, request: Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self.intents[request.path_params["id"]]
        taken = int(form.get("amount_to_capture", intent["amount_capturable"]))
        intent.update(status="succeeded", amount_capturable=0, amount_received=taken)
        return 200, intent

    async def retrieve(self, request: Request) -> Response:
        intent_id = request.path_params["id"]
        if intent_id == "pi_unavailable":
            return JSONResponse({"error": {"type": "api_error"}}, 500)
        return JSONResponse(self.intents[intent_id])

    def cancel(self, request: Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = self.intents[request.path_params["id"]]
        if intent["status"] == "succeeded":
            error = recorded("cancel_unexpected_state.json")
            error["error"]["payment_intent"] = copy.deepcopy(intent)
            return 400, error
        intent.update(status="canceled", cancellation_reason=None, next_action=None)
        return 200, intent

    def refund(self, request: Request, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent_id, amount = form["payment_intent"], int(form["amount"])
        left = self.intents[intent_id]["amount_received"] - self.refunded.get(intent_id, 0)
        if amount > left:
            return 400, recorded("refund_over_limit.json")
        self.refunded[intent_id] = self.refunded.get(intent_id, 0) + amount
        refund = recorded("refund.json") | {
            "id": f"re_{secrets.token_hex(12)}",
            "amount": amount,
            "currency": self.intents[intent_id]["currency"],
            "payment_intent": intent_id,
        }
        return 200, refund


@dataclass
class Recorded:
    stripe: RecordedStripe
    provider: StripeProvider


@pytest.fixture
async def recorded_stripe() -> AsyncIterator[Recorded]:
    server = RecordedStripe()
    async with serving(server.app(), listening_socket()) as url:
        provider = StripeProvider(
            base_url=url, secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET
        )
        yield Recorded(server, provider)
        await provider.aclose()


async def test_3ds_sends_the_customer_to_stripes_redirect_url(recorded_stripe: Recorded) -> None:
    waiting = await recorded_stripe.provider.create_payment(
        new_payment("pm_card_threeDSecure2Required")
    )
    assert waiting.status == PaymentStatus.REQUIRES_ACTION
    expected = recorded("next_action_redirect_to_url.json")["redirect_to_url"]["url"]
    assert waiting.redirect_url == expected
    intent = recorded_stripe.stripe.intents[waiting.payment_id]
    assert intent["next_action"]["redirect_to_url"]["return_url"] == RETURN_URL


async def test_a_decline_stripe_answers_with_the_intent_is_a_failed_payment(
    recorded_stripe: Recorded,
) -> None:
    declined = await recorded_stripe.provider.create_payment(
        new_payment("pm_card_visa_chargeDeclined")
    )
    assert declined.payment_id in recorded_stripe.stripe.intents
    assert (declined.status, declined.decline_code) == (PaymentStatus.FAILED, "generic_decline")


async def test_a_retried_create_gets_the_first_answer(recorded_stripe: Recorded) -> None:
    payment = new_payment("pm_card_visa")
    first = await recorded_stripe.provider.create_payment(payment)
    again = await recorded_stripe.provider.create_payment(payment)
    assert again == first
    assert (recorded_stripe.stripe.executed, recorded_stripe.stripe.replayed) == (1, 1)

    next_attempt = replace(payment, idempotency_key=payment_key(payment.order_id, 2, "create"))
    assert (await recorded_stripe.provider.create_payment(next_attempt)) != first


async def test_a_retried_refund_refunds_once_and_more_than_is_left_is_refused(
    recorded_stripe: Recorded,
) -> None:
    paid = await recorded_stripe.provider.create_payment(new_payment("pm_card_visa", amount=2000))
    first = await recorded_stripe.provider.refund(paid.payment_id, 1500, "refund:1")
    assert await recorded_stripe.provider.refund(paid.payment_id, 1500, "refund:1") == first

    with pytest.raises(RefundRefused) as refused:
        await recorded_stripe.provider.refund(paid.payment_id, 1000, "refund:2")
    assert refused.value.code == "refund_refused"  # Stripe sends no code for this one
    assert "greater than unrefunded amount" in refused.value.message
    assert (await recorded_stripe.provider.refund(paid.payment_id, 500, "refund:3")).amount == 500


async def test_a_partial_capture_is_the_amount_taken(recorded_stripe: Recorded) -> None:
    # Stripe keeps `amount` (the hold) and says what it took in `amount_received`.
    held = await recorded_stripe.provider.create_payment(new_payment("pm_card_visa", capture=False))
    assert (held.status, held.amount) == (PaymentStatus.AUTHORIZED, 150_000)
    taken = await recorded_stripe.provider.capture(held.payment_id, 90_000, "capture:1")
    assert (taken.status, taken.amount) == (PaymentStatus.SUCCEEDED, 90_000)


async def test_cancel_refused_as_unexpected_state_answers_succeeded(
    recorded_stripe: Recorded,
) -> None:
    paid = await recorded_stripe.provider.create_payment(new_payment("pm_card_visa"))
    answer = await recorded_stripe.provider.cancel(paid.payment_id, "cancel:1")
    assert (answer.status, answer.amount) == (PaymentStatus.SUCCEEDED, 150_000)


async def test_stripe_down_or_unreachable_is_unavailable(recorded_stripe: Recorded) -> None:
    with pytest.raises(ProviderUnavailable):
        await recorded_stripe.provider.get_payment("pi_unavailable")
    unreachable = StripeProvider(
        base_url=f"http://127.0.0.1:{free_port()}", secret_key=SECRET_KEY, webhook_secret="x"
    )
    with pytest.raises(ProviderUnavailable):
        await unreachable.create_payment(new_payment("pm_card_visa"))
    await unreachable.aclose()
