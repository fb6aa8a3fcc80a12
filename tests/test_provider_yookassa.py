"""The YooKassa adapter against the double (tests/yookassa_double.py) over loopback HTTP, the
double against the official SDK's own client, and notifications from YooKassa's networks and
from elsewhere (source addresses on 127.0.0.0/8 stand in for both)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yookassa  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from yookassa.domain.common.security_helper import SecurityHelper  # type: ignore[import-untyped]
from yookassa.domain.exceptions import (  # type: ignore[import-untyped]
    BadRequestError,
    UnauthorizedError,
)

from activities.providers.protocol import (
    NewPayment,
    PaymentMethodRejected,
    ProviderUnavailable,
    RefundRefused,
    WebhookRefused,
    WebhookRequest,
)
from activities.providers.yookassa import (
    YOOKASSA_NETWORKS,
    YooKassaProvider,
    from_yookassa,
    to_yookassa,
)
from activities.webhook_inbox import PaymentEvent
from kassa.statuses import PaymentStatus
from tests.servers import listening_socket, serving
from tests.yookassa_double import YooKassaDouble

SHOP, SECRET = "100500", "test_secret_key"
YOOKASSA_HERE = "127.0.0.2"  # plays YooKassa's notification network
ELSEWHERE = "127.0.0.3"


@dataclass
class Stand:
    double: YooKassaDouble
    url: str
    provider: YooKassaProvider
    events: list[PaymentEvent]  # what the webhook endpoint took
    http: httpx.AsyncClient  # the customer's browser

    async def pays(self, payment_id: str) -> None:
        response = await self.http.post(f"{self.url}/_double/payments/{payment_id}/succeed")
        assert response.status_code == 200, response.text

    async def declines(self, payment_id: str, reason: str) -> None:
        response = await self.http.post(
            f"{self.url}/_double/payments/{payment_id}/decline", params={"reason": reason}
        )
        assert response.status_code == 200, response.text


@dataclass
class Endpoint:
    """Who takes the notifications: each test's own provider, and what it took."""

    provider: YooKassaProvider | None = None
    events: list[PaymentEvent] | None = None


def webhook_endpoint(endpoint: Endpoint) -> FastAPI:
    """`POST /webhooks/yookassa` as the gateway answers it: the peer is the socket's."""
    app = FastAPI()

    @app.post("/webhooks/yookassa")
    async def hook(request: Request) -> JSONResponse:
        assert endpoint.provider is not None and endpoint.events is not None
        arrived = WebhookRequest(
            await request.body(),
            {name.lower(): value for name, value in request.headers.items()},
            request.client.host if request.client else None,
        )
        try:
            event = await endpoint.provider.parse_webhook(arrived)
        except WebhookRefused as refused:
            return JSONResponse({"code": refused.code}, 503 if refused.retry else 400)
        endpoint.events.append(event)
        ack = endpoint.provider.acknowledgement()
        return JSONResponse(ack.body, ack.status_code)

    return app


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[tuple[YooKassaDouble, str, Endpoint]]:
    """The double and the webhook endpoint, served once for the module (a server's shutdown
    costs a few hundred milliseconds); each test starts from a clean double."""
    double = YooKassaDouble(SHOP, SECRET)
    endpoint = Endpoint()
    async with (
        serving(double.app(), listening_socket()) as url,
        serving(webhook_endpoint(endpoint), listening_socket()) as hooks,
    ):
        double.notify_url = f"{hooks}/webhooks/yookassa"
        yield double, url, endpoint


@pytest.fixture
async def stand(servers: tuple[YooKassaDouble, str, Endpoint]) -> AsyncIterator[Stand]:
    double, url, endpoint = servers
    double.reset(notify_source=YOOKASSA_HERE)
    endpoint.provider = YooKassaProvider(
        SHOP, SECRET, base_url=url, trusted_networks=["127.0.0.2/32"]
    )
    endpoint.events = []
    async with httpx.AsyncClient() as browser:
        yield Stand(double, url, endpoint.provider, endpoint.events, browser)
        await double.delivered()
    await endpoint.provider.aclose()
    assert double.dishonest == []


def new_payment(
    amount: int = 150_000,
    *,
    capture: bool = True,
    token: str | None = None,
    key: str | None = None,
    order_id: uuid.UUID | None = None,
) -> NewPayment:
    order = order_id or uuid.uuid4()
    return NewPayment(
        order_id=order,
        amount=amount,
        currency="RUB",
        idempotency_key=key or f"{order}:1:create",
        return_url="https://shop.example/orders/return",
        capture=capture,
        payment_method=token,
        description=f"Заказ {order}",
    )


async def test_redirect_flow_customer_pays_on_yookassas_page(stand: Stand) -> None:
    order = uuid.uuid4()
    created = await stand.provider.create_payment(new_payment(order_id=order))
    assert created.status == PaymentStatus.REQUIRES_ACTION
    assert created.redirect_url == f"{stand.url}/_double/pay/{created.payment_id}"
    assert (await stand.http.get(created.redirect_url)).status_code == 200

    await stand.pays(created.payment_id)
    paid = await stand.provider.get_payment(created.payment_id)
    assert (paid.status, paid.amount, paid.currency, paid.redirect_url) == (
        PaymentStatus.SUCCEEDED,
        150_000,
        "RUB",
        None,
    )
    method, path, headers, body = stand.double.requests[0]
    assert (method, path) == ("POST", "/v3/payments")
    assert headers["idempotence-key"] == f"{order}:1:create"
    assert body == {
        "amount": {"value": "1500.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": "https://shop.example/orders/return"},
        "metadata": {"order_id": str(order)},
        "description": f"Заказ {order}",
    }


async def test_a_decline_is_failed_with_yookassas_reason(stand: Stand) -> None:
    created = await stand.provider.create_payment(new_payment())
    await stand.declines(created.payment_id, "insufficient_funds")
    declined = await stand.provider.get_payment(created.payment_id)
    assert (declined.status, declined.decline_code) == (PaymentStatus.FAILED, "insufficient_funds")

    by_token = await stand.provider.create_payment(new_payment(token="double:decline:card_expired"))
    assert (by_token.status, by_token.decline_code) == (PaymentStatus.FAILED, "card_expired")


async def test_a_token_the_provider_refuses_is_a_rejected_payment_method(stand: Stand) -> None:
    with pytest.raises(PaymentMethodRejected) as rejected:
        await stand.provider.create_payment(new_payment(token="tok_not_yookassas"))
    assert rejected.value.code == "invalid_request"


async def test_two_stage_full_capture(stand: Stand) -> None:
    held = await stand.provider.create_payment(
        new_payment(capture=False, token="double:frictionless")
    )
    assert (held.status, held.amount) == (PaymentStatus.AUTHORIZED, 150_000)
    taken = await stand.provider.capture(held.payment_id, None, "o:1:capture")
    assert (taken.status, taken.amount) == (PaymentStatus.SUCCEEDED, 150_000)
    # Repeated under the key, and again under another: the payment as it stands.
    assert await stand.provider.capture(held.payment_id, None, "o:1:capture") == taken
    assert await stand.provider.capture(held.payment_id, None, "o:2:capture") == taken


async def test_two_stage_partial_capture_after_the_page(stand: Stand) -> None:
    held = await stand.provider.create_payment(new_payment(10_000, capture=False))
    assert held.status == PaymentStatus.REQUIRES_ACTION
    await stand.pays(held.payment_id)
    assert (await stand.provider.get_payment(held.payment_id)).status == PaymentStatus.AUTHORIZED

    taken = await stand.provider.capture(held.payment_id, 6_000, "o:1:capture")
    assert (taken.status, taken.amount) == (PaymentStatus.SUCCEEDED, 6_000)
    _, _, _, body = stand.double.requests[-1]
    assert body == {"amount": {"value": "60.00", "currency": "RUB"}}
    with pytest.raises(RefundRefused):
        await stand.provider.refund(held.payment_id, 6_001, "o:1:refund:1")


async def test_authorized_then_cancelled_is_a_void(stand: Stand) -> None:
    held = await stand.provider.create_payment(
        new_payment(capture=False, token="double:frictionless")
    )
    voided = await stand.provider.cancel(held.payment_id, "o:1:cancel")
    assert (voided.status, voided.decline_code) == (PaymentStatus.CANCELED, None)
    assert await stand.provider.cancel(held.payment_id, "o:1:cancel") == voided
    assert await stand.provider.cancel(held.payment_id, "o:2:cancel") == voided


async def test_cancel_after_success_says_succeeded(stand: Stand) -> None:
    paid = await stand.provider.create_payment(new_payment(token="double:frictionless"))
    assert paid.status == PaymentStatus.SUCCEEDED
    assert (await stand.provider.cancel(paid.payment_id, "o:1:cancel")).status == (
        PaymentStatus.SUCCEEDED
    )


async def test_cancel_of_a_payment_on_the_page_answers_as_it_stands(stand: Stand) -> None:
    # YooKassa cancels only what waits for capture; a pending payment expires by itself.
    waiting = await stand.provider.create_payment(new_payment())
    still = await stand.provider.cancel(waiting.payment_id, "o:1:cancel")
    assert still.status == PaymentStatus.REQUIRES_ACTION


async def test_refunds_partial_then_the_rest_and_no_more(stand: Stand) -> None:
    paid = await stand.provider.create_payment(new_payment(10_000, token="double:frictionless"))
    first = await stand.provider.refund(paid.payment_id, 2_500, "o:1:refund:1")
    assert (first.payment_id, first.amount, first.status) == (paid.payment_id, 2_500, "succeeded")
    # A retried refund is the same refund, not a second one.
    assert await stand.provider.refund(paid.payment_id, 2_500, "o:1:refund:1") == first
    assert await stand.provider.get_refund(first.refund_id) == first

    with pytest.raises(RefundRefused) as refused:
        await stand.provider.refund(paid.payment_id, 7_501, "o:1:refund:2")
    assert refused.value.code == "invalid_request"
    rest = await stand.provider.refund(paid.payment_id, 7_500, "o:1:refund:3")
    assert rest.amount == 7_500
    with pytest.raises(RefundRefused):
        await stand.provider.refund(paid.payment_id, 1, "o:1:refund:4")


async def test_full_refund(stand: Stand) -> None:
    paid = await stand.provider.create_payment(new_payment(token="double:frictionless"))
    back = await stand.provider.refund(paid.payment_id, 150_000, "o:1:refund:1")
    assert (back.amount, back.status) == (150_000, "succeeded")


async def test_an_idempotent_replay_returns_the_same_payment(stand: Stand) -> None:
    payment = new_payment()
    first = await stand.provider.create_payment(payment)
    assert await stand.provider.create_payment(payment) == first
    assert len(stand.double.payments) == 1
    # The same key for another request: YooKassa's 400.
    other = NewPayment(**{**payment.__dict__, "amount": payment.amount + 1})
    with pytest.raises(PaymentMethodRejected):
        await stand.provider.create_payment(other)


@pytest.mark.parametrize(
    ("kopecks", "value"),
    [
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (29, "0.29"),  # float("0.29") * 100 == 28.999999999999996
        (113, "1.13"),
        (123_456_789, "1234567.89"),
        (10**20 + 1, "1000000000000000000.01"),  # past a float's 53 bits
    ],
)
def test_money_crosses_exactly(kopecks: int, value: str) -> None:
    assert to_yookassa(kopecks, "RUB") == {"value": value, "currency": "RUB"}
    assert from_yookassa(value) == kopecks


@pytest.mark.parametrize("value", ["1.001", "0.005", "1e3", "NaN", "-1.00", "1.", ".5", "01.00"])
def test_an_amount_not_in_kopecks_is_refused_not_rounded(value: str) -> None:
    with pytest.raises(ValueError, match="not an amount of kopecks"):
        from_yookassa(value)


@pytest.mark.parametrize(("kopecks", "value"), [(1, "0.01"), (123_456_789, "1234567.89")])
async def test_money_edges_through_the_api(stand: Stand, kopecks: int, value: str) -> None:
    paid = await stand.provider.create_payment(new_payment(kopecks, token="double:frictionless"))
    assert paid.amount == kopecks
    _, _, _, body = stand.double.requests[-1]
    assert body["amount"] == {"value": value, "currency": "RUB"}
    raw = await stand.http.get(f"{stand.url}/v3/payments/{paid.payment_id}", auth=(SHOP, SECRET))
    assert raw.json()["amount"]["value"] == value
    back = await stand.provider.refund(paid.payment_id, kopecks, "o:1:refund:1")
    assert back.amount == kopecks


async def test_notifications_from_yookassas_network_are_taken(stand: Stand) -> None:
    order = uuid.uuid4()
    held = await stand.provider.create_payment(new_payment(capture=False, order_id=order))
    await stand.pays(held.payment_id)
    await stand.double.delivered()
    await stand.provider.capture(held.payment_id, None, "o:1:capture")
    await stand.double.delivered()
    refund = await stand.provider.refund(held.payment_id, 500, "o:1:refund:1")
    await stand.double.delivered()

    assert [answer for _, answer in stand.double.deliveries] == [200, 200, 200]
    authorized, succeeded, refunded = stand.events
    assert (authorized.id, authorized.status) == (
        f"payment.waiting_for_capture:{held.payment_id}",
        PaymentStatus.AUTHORIZED,
    )
    assert (succeeded.id, succeeded.type, succeeded.status, succeeded.order_id) == (
        f"payment.succeeded:{held.payment_id}",
        "payment.succeeded",
        PaymentStatus.SUCCEEDED,
        order,
    )
    assert (refunded.id, refunded.intent_id, refunded.status, refunded.order_id) == (
        f"refund.succeeded:{refund.refund_id}",
        held.payment_id,
        None,
        order,
    )
    assert succeeded.payload["notification"]["event"] == "payment.succeeded"

    # The waiting_for_capture notification redelivered after the capture: the state it is built
    # from is the capture's, under the capture's id (a duplicate of that event, not news).
    body = stand.double.notification("payment.waiting_for_capture", authorized.payload["fetched"])
    late = await stand.provider.parse_webhook(
        WebhookRequest(httpx.Request("POST", "/", json=body).read(), {}, YOOKASSA_HERE)
    )
    assert (late.id, late.status) == (succeeded.id, PaymentStatus.SUCCEEDED)


async def test_a_decline_notification_is_a_failed_event(stand: Stand) -> None:
    created = await stand.provider.create_payment(new_payment())
    await stand.declines(created.payment_id, "3d_secure_failed")
    await stand.double.delivered()
    (event,) = stand.events
    assert (event.status, event.decline_code) == (PaymentStatus.FAILED, "3d_secure_failed")


async def test_notifications_from_elsewhere_are_refused(stand: Stand) -> None:
    stand.double.notify_source = ELSEWHERE
    created = await stand.provider.create_payment(new_payment())
    await stand.pays(created.payment_id)
    await stand.double.delivered()
    assert stand.double.deliveries == [("payment.succeeded", 400)]
    assert stand.events == []

    fetched = stand.double.payment_json(stand.double.payments[created.payment_id])
    body = httpx.Request(
        "POST", "/", json=stand.double.notification("payment.succeeded", fetched)
    ).read()
    for peer in (ELSEWHERE, "8.8.8.8", None, "not an address"):
        with pytest.raises(WebhookRefused) as refused:
            await stand.provider.parse_webhook(WebhookRequest(body, {}, peer))
        assert (refused.value.code, refused.value.retry) == ("untrusted_source", False)


async def test_the_event_is_the_apis_word_not_the_notifications(stand: Stand) -> None:
    stand.double.notifying = False
    waiting = await stand.provider.create_payment(new_payment())
    declined = await stand.provider.create_payment(new_payment(token="double:decline:call_issuer"))
    for payment_id, status, event_id in (
        (waiting.payment_id, None, f"payment.pending:{waiting.payment_id}"),
        (declined.payment_id, PaymentStatus.FAILED, f"payment.canceled:{declined.payment_id}"),
    ):
        raw = await stand.http.get(f"{stand.url}/v3/payments/{payment_id}", auth=(SHOP, SECRET))
        lie = {**raw.json(), "status": "succeeded", "paid": True}
        body = stand.double.notification("payment.succeeded", lie)
        event = await stand.provider.parse_webhook(
            WebhookRequest(httpx.Request("POST", "/", json=body).read(), {}, YOOKASSA_HERE)
        )
        assert (event.id, event.status, event.type) == (event_id, status, "payment.succeeded")
        assert event.payload["fetched"]["status"] != "succeeded"


async def test_notifications_are_refused_for_a_retry_when_the_api_is_down(stand: Stand) -> None:
    closed = listening_socket()  # bound, never listening: connections are refused
    down = YooKassaProvider(
        SHOP,
        SECRET,
        base_url=f"http://127.0.0.1:{closed.getsockname()[1]}",
        trusted_networks=["127.0.0.2/32"],
    )
    body = {"type": "notification", "event": "payment.succeeded", "object": {"id": "x" * 36}}
    try:
        with pytest.raises(WebhookRefused) as refused:
            await down.parse_webhook(
                WebhookRequest(httpx.Request("POST", "/", json=body).read(), {}, YOOKASSA_HERE)
            )
        assert (refused.value.code, refused.value.retry) == ("verification_unavailable", True)
        with pytest.raises(ProviderUnavailable):
            await down.create_payment(new_payment())
    finally:
        await down.aclose()
        closed.close()


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"type": "notification"}', b'{"type": "x", "event": "payment.succeeded"}'],
)
async def test_a_malformed_notification_is_refused(stand: Stand, body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        await stand.provider.parse_webhook(WebhookRequest(body, {}, YOOKASSA_HERE))
    assert refused.value.code == "malformed_event"


async def test_yookassas_own_networks_by_default(stand: Stand) -> None:
    assert list(YOOKASSA_NETWORKS) == SecurityHelper.YOOKASSA_NETWORKS
    default = YooKassaProvider(SHOP, SECRET, base_url=stand.url)
    paid = await stand.provider.create_payment(new_payment(token="double:frictionless"))
    body = stand.double.notification(
        "payment.succeeded",
        (
            await stand.http.get(f"{stand.url}/v3/payments/{paid.payment_id}", auth=(SHOP, SECRET))
        ).json(),
    )
    raw = httpx.Request("POST", "/", json=body).read()
    try:
        for peer in ("77.75.153.5", "185.71.77.31", "::ffff:77.75.156.11", "2a02:5180:0:1509::7"):
            assert SecurityHelper().is_ip_trusted(peer.removeprefix("::ffff:"))
            event = await default.parse_webhook(WebhookRequest(raw, {}, peer))
            assert event.status == PaymentStatus.SUCCEEDED
        for peer in ("77.75.153.128", "185.71.76.32", "127.0.0.1"):
            assert not SecurityHelper().is_ip_trusted(peer)
            with pytest.raises(WebhookRefused):
                await default.parse_webhook(WebhookRequest(raw, {}, peer))
    finally:
        await default.aclose()


async def test_the_double_refuses_what_the_sdk_refuses(stand: Stand) -> None:
    auth = (SHOP, SECRET)
    good = {
        "amount": {"value": "10.00", "currency": "RUB"},
        "confirmation": {"type": "redirect", "return_url": "https://shop.example/"},
    }
    for bad in (
        {**good, "descriptoin": "a misspelled field"},
        {**good, "amount": {"value": "10.5", "currency": "RUB"}},
        {**good, "amount": {"value": "0.00", "currency": "RUB"}},
        {**good, "payment_token": "t", "payment_method_id": "m"},
        {**good, "description": "x" * 129},
    ):
        response = await stand.http.post(
            f"{stand.url}/v3/payments",
            json=bad,
            auth=auth,
            headers={"Idempotence-Key": "k" + str(bad)[:40]},
        )
        assert (response.status_code, response.json()["code"]) == (400, "invalid_request"), bad
    no_key = await stand.http.post(f"{stand.url}/v3/payments", json=good, auth=auth)
    assert no_key.status_code == 400
    wrong = await stand.http.get(f"{stand.url}/v3/payments/x", auth=(SHOP, "wrong"))
    assert wrong.status_code == 401


async def test_the_sdks_own_client_against_the_double(stand: Stand) -> None:
    """yookassa.Payment and yookassa.Refund (requests, in a thread) send their requests to the
    double and read its answers with their own models."""
    stand.double.notifying = False
    yookassa.Configuration.configure(SHOP, SECRET, api_url=f"{stand.url}/v3")
    try:
        created = await asyncio.to_thread(
            yookassa.Payment.create,
            {
                "amount": {"value": "100.00", "currency": "RUB"},
                "capture": False,
                "confirmation": {"type": "redirect", "return_url": "https://shop.example/"},
                "description": "SDK",
            },
            "sdk:1:create",
        )
        assert created.status == "pending"
        assert created.confirmation.confirmation_url.startswith(f"{stand.url}/_double/pay/")
        await stand.pays(created.id)
        found = await asyncio.to_thread(yookassa.Payment.find_one, created.id)
        assert found.status == "waiting_for_capture"
        captured = await asyncio.to_thread(
            yookassa.Payment.capture,
            created.id,
            {"amount": {"value": "60.00", "currency": "RUB"}},
            "sdk:1:capture",
        )
        assert (captured.status, str(captured.amount.value)) == ("succeeded", "60.00")
        refund: Any = await asyncio.to_thread(
            yookassa.Refund.create,
            {"payment_id": created.id, "amount": {"value": "10.00", "currency": "RUB"}},
            "sdk:1:refund",
        )
        assert (await asyncio.to_thread(yookassa.Refund.find_one, refund.id)).status == "succeeded"
        with pytest.raises(BadRequestError):
            await asyncio.to_thread(
                yookassa.Refund.create,
                {"payment_id": created.id, "amount": {"value": "50.01", "currency": "RUB"}},
                "sdk:1:refund:2",
            )

        other = await asyncio.to_thread(
            yookassa.Payment.create,
            {
                "amount": {"value": "1.00", "currency": "RUB"},
                "payment_token": "double:frictionless",
                "capture": False,
            },
            "sdk:2:create",
        )
        canceled = await asyncio.to_thread(yookassa.Payment.cancel, other.id, "sdk:2:cancel")
        assert (canceled.status, canceled.cancellation_details.party) == ("canceled", "merchant")

        yookassa.Configuration.configure(SHOP, "wrong", api_url=f"{stand.url}/v3")
        with pytest.raises(UnauthorizedError):
            await asyncio.to_thread(yookassa.Payment.find_one, created.id)
    finally:
        yookassa.Configuration.configure(None, None)
