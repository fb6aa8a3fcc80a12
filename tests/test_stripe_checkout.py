"""Pay Now end to end with `KASSA_PSP=stripe`: a whole Kassa (gateway, worker on its own task
queue) whose provider is localstripe, behind the proxy that drops what it refuses
(tests/stripe_fake.py), and whose webhooks localstripe signs and sends to `/webhooks/stripe`.
The customer and the admin speak only HTTP to the gateway; nothing is mocked.

Stripe is two-stage: Pay Now only authorizes (`capture_method=manual`, `requires_capture`), and the
checkout captures once the stock is committed. localstripe sends no event for an authorization,
and `payment_intent.succeeded` (a second later) for the capture: by then Kassa has recorded it,
so it is `known`, never signalled.

The webhook paths of README's "What happens when a webhook is late, duplicated or lost", with
Stripe: localstripe's own event delivered again (a duplicate), older statuses arriving after the
capture (stale), and a hold whose event never came, found by reconciliation and voided."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from prometheus_client import REGISTRY
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities import payments
from activities.inventory import set_on_hand
from activities.payments import IntentState
from kassa.db import session_scope
from kassa.statuses import PaymentStatus
from kassa.tables import Order, Payment, WebhookEvent
from kassa.webhook_signatures import sign
from tests.conftest import Kassa, kassa_stack, ledger_balances
from tests.flow import order_reaches, pay_now
from tests.late_payments import reconcile
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
from workflows.checkout import checkout_workflow_id
from workflows.money_back import LatePaymentResult, LatePaymentWorkflow, late_payment_workflow_id

VISA = {"type": "card", "token": "pm_card_visa"}
DECLINED = {"type": "card", "token": "pm_card_chargeCustomerFail"}


@dataclass
class StripeKassa:
    kassa: Kassa
    proxy: Proxy
    localstripe: httpx.AsyncClient  # straight to localstripe, in the customer's or Stripe's place

    def intents_sent(self, order_id: str) -> list[dict[str, str]]:
        """The PaymentIntents Kassa asked Stripe to make for the order, as they were sent."""
        return [
            sent.form
            for sent in self.proxy.sent
            if (sent.method, sent.path) == ("POST", "/v1/payment_intents")
            and sent.form.get("metadata[order_id]") == order_id
        ]

    async def intent(self, intent_id: str) -> dict[str, Any]:
        found = await self.localstripe.get(f"/v1/payment_intents/{intent_id}")
        assert found.status_code == 200, found.text
        intent: dict[str, Any] = found.json()
        return intent


@pytest.fixture(scope="module")
async def stripe_kassa(
    data_dir: Path, database_url: str, dev_server: WorkflowEnvironment
) -> AsyncIterator[StripeKassa]:
    async with (
        running_localstripe() as localstripe,
        running_proxy(localstripe) as proxy,
        localstripe_client(localstripe) as localstripe_api,
        kassa_stack(
            data_dir,
            database_url,
            dev_server,
            psp="stripe",
            psp_url=proxy.url,
            psp_secret_key=SECRET_KEY,
            psp_webhook_secret=WEBHOOK_SECRET,
        ) as kassa,
    ):
        assert kassa.settings.webhook_url.endswith("/webhooks/stripe")
        await configure_webhooks(localstripe_api, "kassa", kassa.settings.webhook_url)
        yield StripeKassa(kassa, proxy, localstripe_api)


# The ledger's entries of a two-stage payment: the hold (memo), then the money.
MONEY_KINDS = ("authorization", "capture", "void", "charge", "refund")


def webhook_outcomes(outcome: str) -> float:
    """Webhooks taken with this outcome so far (the gateway runs in this process: its metrics are
    ours to read)."""
    return REGISTRY.get_sample_value("kassa_webhook_events_total", {"outcome": outcome}) or 0.0


def assert_return_url_sent(stripe_kassa: StripeKassa, order_id: str, payments: int) -> None:
    """Every payment of the order was asked for as real Stripe needs it (the proxy dropped
    `return_url` for localstripe, after recording it), and for an authorization only."""
    sent = stripe_kassa.intents_sent(order_id)
    assert len(sent) == payments
    for form in sent:
        assert form["return_url"] == stripe_kassa.kassa.settings.return_url
        assert form["confirm"] == "true"
        assert form["capture_method"] == "manual"
        assert form["description"] == f"Order {order_id}"  # dropped for localstripe too


async def ledger_of(kassa: Kassa, order_id: str) -> list[dict[str, Any]]:
    async with (await kassa.account("admin")).http() as admin:
        ledger: list[dict[str, Any]] = (
            await admin.get("/admin/ledger", params={"order_id": order_id})
        ).json()
        return ledger


async def stored_events(kassa: Kassa, intent_id: str) -> list[WebhookEvent]:
    async with session_scope(kassa.engine) as session:
        return list(
            (
                await session.exec(
                    select(WebhookEvent).where(col(WebhookEvent.intent_id) == intent_id)
                )
            ).all()
        )


async def capture_event(kassa: Kassa, intent_id: str) -> WebhookEvent:
    """localstripe's `payment_intent.succeeded` for the capture (sent a second after it), once
    Kassa has taken it: verified (else refused, never stored), stored under its id, processed."""
    async with asyncio.timeout(5):
        while True:
            events = await stored_events(kassa, intent_id)
            succeeded = [e for e in events if e.type == "payment_intent.succeeded"]
            if succeeded and succeeded[0].processed_at is not None:
                assert len(succeeded) == 1 and succeeded[0].id.startswith("evt_")
                return succeeded[0]
            await asyncio.sleep(0.1)


async def assert_captured(
    stripe_kassa: StripeKassa, order_id: str, intent_id: str, amount: int, refunded: bool = False
) -> None:
    """Two-stage, end to end: Kassa authorized the intent, then captured it, whole, once (under
    `{intent}:capture`); Stripe has the money; the ledger has the authorization, its capture and
    the charge (and the refund), each balanced, the memo of the hold closed; localstripe's event
    for the capture came and was already known."""
    kassa = stripe_kassa.kassa
    intent = await stripe_kassa.intent(intent_id)
    assert (intent["status"], intent["capture_method"]) == ("succeeded", "manual")
    assert (intent["amount"], intent["metadata"]) == (amount, {"order_id": order_id})
    assert intent["latest_charge"]["captured"] is True
    assert intent["latest_charge"]["amount_refunded"] == (amount if refunded else 0)
    captures = [
        sent
        for sent in stripe_kassa.proxy.sent
        if (sent.method, sent.path) == ("POST", f"/v1/payment_intents/{intent_id}/capture")
    ]
    assert len(captures) == 1
    assert captures[0].form == {}  # all of it
    assert captures[0].headers["idempotency-key"] == f"{intent_id}:capture"

    # (The order's loyalty points are on the ledger too; not Stripe's business.)
    ledger = [t for t in await ledger_of(kassa, order_id) if t["kind"] in MONEY_KINDS]
    kinds = ["authorization", "capture", "charge"] + (["refund"] if refunded else [])
    assert [t["kind"] for t in ledger] == kinds
    assert all(t["reference"] == intent_id for t in ledger[:3])
    totals: dict[str, int] = {}
    for transaction in ledger:
        assert sum(p["amount"] for p in transaction["postings"]) == 0
        for posting in transaction["postings"]:
            totals[posting["account"]] = totals.get(posting["account"], 0) + posting["amount"]
    held = [p for p in ledger[0]["postings"] if p["account"] == "card_authorizations"]
    assert [p["amount"] for p in held] == [amount]
    # The hold is closed by its capture; the money is the acquirer's to pay us (or given back).
    assert totals["card_authorizations"] == totals["authorized_for_orders"] == 0
    assert totals["acquirer_receivable"] == (0 if refunded else amount)
    await ledger_balances(kassa)

    async with session_scope(kassa.engine) as session:
        payment = await session.get_one(Payment, intent_id)
    assert (payment.status, payment.amount) == ("succeeded", amount)
    event = await capture_event(kassa, intent_id)
    assert event.payload["data"]["object"]["metadata"] == {"order_id": order_id}
    assert event.payload["data"]["object"]["status"] == "succeeded"


async def paid_order(stripe_kassa: StripeKassa, price: int) -> tuple[str, str]:
    """A customer's Pay Now with pm_card_visa, PAID: the order and its intent."""
    kassa = stripe_kassa.kassa
    customer = await kassa.customer()
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=price), 1))
    async with customer.http() as http:
        answer = await pay_now(http, cart, VISA)
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "PAID"
    return answer.json()["order_id"], answer.json()["payment"]["intent_id"]


async def signals_of(kassa: Kassa, cart: dict[str, Any]) -> list[str]:
    """The signals the cart's checkout run received, in its history."""
    handle = kassa.temporal.get_workflow_handle(
        checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
    )
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def test_a_frictionless_card_is_authorized_then_captured(stripe_kassa: StripeKassa) -> None:
    kassa = stripe_kassa.kassa
    sku = await kassa.product(on_hand=5, price=129_900)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with customer.http() as http:
        response = await pay_now(http, cart, VISA)
        assert response.status_code == 201, response.text
        answer = response.json()
        # Pay Now answers once the money is taken: authorized, stock committed, captured.
        assert answer["status"] == "PAID" and answer["payment"]["status"] == "succeeded"
        assert answer["payment_url"] is None
        intent_id = answer["payment"]["intent_id"]
        assert intent_id.startswith("pi_")
        order = await order_reaches(http, answer["order_id"], "PAID")
        assert [e["status"] for e in order["events"]] == ["CREATED", "PENDING_PAYMENT", "PAID"]
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)

    # Stripe has the money, for this order, and the ledger has it from hold to charge.
    await assert_captured(stripe_kassa, answer["order_id"], intent_id, 259_800)
    charge = next(t for t in await ledger_of(kassa, answer["order_id"]) if t["kind"] == "charge")
    receivable = [p["amount"] for p in charge["postings"] if p["account"] == "acquirer_receivable"]
    assert receivable == [259_800]
    assert await signals_of(kassa, cart) == []  # the capture's event was known: not signalled
    assert_return_url_sent(stripe_kassa, answer["order_id"], payments=1)


async def test_a_declined_card_then_another_pays(stripe_kassa: StripeKassa) -> None:
    kassa = stripe_kassa.kassa
    sku = await kassa.product(on_hand=3, price=50_000)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        declined = await pay_now(http, cart, DECLINED)
        assert declined.status_code == 402, declined.text
        problem = declined.json()
        assert problem["code"] == "payment_declined" and problem["retry_allowed"] is True
        assert problem["payment"]["decline_code"] == "card_declined"
        failed_intent = problem["payment"]["intent_id"]
        order_id = problem["order_id"]
        assert (await http.get(f"/orders/{order_id}")).json()["status"] == "PENDING_PAYMENT"
        assert (await stripe_kassa.intent(failed_intent))["status"] == "requires_payment_method"

        retried = await http.post(f"/orders/{order_id}/pay", json={"payment_method": VISA})
        assert retried.status_code == 200, retried.text
        order = await order_reaches(http, order_id, "PAID")
        assert order["payment"]["attempt"] == 2
        intent_id = order["payment"]["intent_id"]
    assert intent_id != failed_intent
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    # The declined intent held nothing: the ledger has only the second one's hold and capture.
    await assert_captured(stripe_kassa, order_id, intent_id, 50_000)
    assert_return_url_sent(stripe_kassa, order_id, payments=2)


async def test_3ds_authorization_found_by_the_status_poll_then_captured(
    stripe_kassa: StripeKassa,
) -> None:
    """localstripe sends no event for `requires_capture`: after 3-D Secure the run's status poll
    (5 s after Pay Now) finds the authorization, commits the stock and captures."""
    kassa = stripe_kassa.kassa
    sku = await kassa.product(on_hand=3, price=70_000)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    method = {"type": "card", "token": await three_d_secure_method(stripe_kassa.localstripe)}
    known_before = webhook_outcomes("known")
    async with customer.http() as http:
        started = time.monotonic()
        response = await pay_now(http, cart, method)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["status"] == "PENDING_PAYMENT"
        assert answer["payment"]["status"] == "requires_action"
        # localstripe answers `use_stripe_sdk`, with no URL (real Stripe, given the return_url,
        # answers `redirect_to_url`: tests/test_provider_stripe.py covers it).
        assert answer["payment_url"] is None
        intent_id = answer["payment"]["intent_id"]
        assert (await kassa.stock(sku)).reserved == 1

        await authenticate(stripe_kassa.localstripe, intent_id, success=True)
        assert (await stripe_kassa.intent(intent_id))["status"] == "requires_capture"
        order = await order_reaches(http, answer["order_id"], "PAID")
        assert time.monotonic() - started >= 4.5  # the poll's, not an event's doing
        assert order["payment"]["status"] == "succeeded"
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)

    # The poll asked Stripe, and then the capture went: nothing told the run in between.
    asked = [
        i
        for i, sent in enumerate(stripe_kassa.proxy.sent)
        if sent.path == f"/v1/payment_intents/{intent_id}"
    ]
    captured = next(
        i
        for i, sent in enumerate(stripe_kassa.proxy.sent)
        if sent.path == f"/v1/payment_intents/{intent_id}/capture"
    )
    assert asked and asked[0] < captured
    await assert_captured(stripe_kassa, answer["order_id"], intent_id, 70_000)

    # The only event was the capture's: verified, stored, and `known` (Kassa had recorded the
    # capture a second before), so never signalled to the run.
    assert [e.type for e in await stored_events(kassa, intent_id)] == ["payment_intent.succeeded"]
    assert webhook_outcomes("known") >= known_before + 1
    assert await signals_of(kassa, cart) == []
    assert_return_url_sent(stripe_kassa, answer["order_id"], payments=1)


async def test_an_admin_refund_reaches_stripe(stripe_kassa: StripeKassa) -> None:
    kassa = stripe_kassa.kassa
    order_id, intent_id = await paid_order(stripe_kassa, price=80_000)
    async with (await kassa.account("admin")).http() as admin:
        refunded = await admin.post(
            f"/admin/orders/{order_id}/refund",
            json={},
            headers={"Idempotency-Key": f"stripe-refund-{uuid.uuid4().hex}"},
        )
        assert refunded.status_code == 200, refunded.text
        done = refunded.json()
        assert (done["amount"], done["order_status"]) == (80_000, "REFUNDED")
        order = (await admin.get(f"/admin/orders/{order_id}")).json()
        assert order["status"] == "REFUNDED"
    assert done["refund_id"].startswith("re_")

    # localstripe has the refund, of this intent, whole.
    listed = await stripe_kassa.localstripe.get("/v1/refunds", params={"payment_intent": intent_id})
    assert listed.status_code == 200, listed.text
    refunds = listed.json()["data"]
    assert [(r["id"], r["amount"], r["status"]) for r in refunds] == [
        (done["refund_id"], 80_000, "succeeded")
    ]
    sent = stripe_kassa.proxy.last("/v1/refunds")
    assert sent.form == {"payment_intent": intent_id, "amount": "80000"}
    assert sent.headers["idempotency-key"]

    # Authorized, captured, charged, refunded: the refund is of the captured money.
    await assert_captured(stripe_kassa, order_id, intent_id, 80_000, refunded=True)
    refund = next(t for t in await ledger_of(kassa, order_id) if t["kind"] == "refund")
    assert refund["reference"] == done["refund_id"]
    assert_return_url_sent(stripe_kassa, order_id, payments=1)


def localstripe_body(event: dict[str, Any]) -> bytes:
    """An event's body as localstripe words it (tests/stripe_fake.py's webhooks)."""
    return json.dumps(event, indent=2, sort_keys=True).encode()


async def deliver(kassa: Kassa, body: bytes) -> httpx.Response:
    """POSTs `body` to `/webhooks/stripe` as Stripe would: `Stripe-Signature: t=…,v1=…`, signed
    now with the endpoint secret the stack uses. Stripe's own library takes the signature."""
    secret = kassa.settings.psp_webhook_secret
    assert secret
    header = sign(secret, body, int(time.time()))
    assert stripe.Webhook.construct_event(body, header, secret).id == json.loads(body)["id"]
    async with kassa.http() as http:
        return await http.post(
            "/webhooks/stripe",
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
        )


def later_event(delivered: WebhookEvent, type: str, **intent: Any) -> dict[str, Any]:
    """Another event about the intent of a delivered one, in localstripe's words: a new id, now,
    `type`, the intent as it was with `intent` over it."""
    obj = delivered.payload["data"]["object"] | intent
    return delivered.payload | {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "type": type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


@dataclass
class MoneyState:
    order: dict[str, Any]  # the admin's dossier: timeline, payments, refunds, ledger, run
    payment_written_at: datetime  # our record of the intent, last written
    signals: int  # to the order's checkout run
    late_payment: bool  # a LatePaymentWorkflow for the intent (news after the run ended)
    stripe_calls: int  # Kassa's, about the intent
    intent: dict[str, Any]  # at localstripe


async def money_state(stripe_kassa: StripeKassa, order_id: str, intent_id: str) -> MoneyState:
    kassa = stripe_kassa.kassa
    async with (await kassa.account("admin")).http() as admin:
        dossier = await admin.get(f"/admin/orders/{order_id}")
        assert dossier.status_code == 200, dossier.text
    async with session_scope(kassa.engine) as session:
        workflow_id = (await session.get_one(Order, uuid.UUID(order_id))).workflow_id
        written_at = (await session.get_one(Payment, intent_id)).updated_at
    history = kassa.temporal.get_workflow_handle(workflow_id).fetch_history_events()
    signals = [
        event
        async for event in history
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    try:
        await kassa.temporal.get_workflow_handle(late_payment_workflow_id(intent_id)).describe()
        late_payment = True
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        late_payment = False
    calls = [sent for sent in stripe_kassa.proxy.sent if intent_id in sent.path + str(sent.form)]
    return MoneyState(
        dossier.json(),
        written_at,
        len(signals),
        late_payment,
        len(calls),
        await stripe_kassa.intent(intent_id),
    )


async def test_a_duplicated_webhook_changes_nothing(stripe_kassa: StripeKassa) -> None:
    """localstripe's own event for the capture, delivered again (signed anew, as Stripe signs a
    retry): known by its id, `{"duplicate": true}`, and nothing moves."""
    kassa = stripe_kassa.kassa
    order_id, intent_id = await paid_order(stripe_kassa, price=45_000)
    delivered = await capture_event(kassa, intent_id)
    before = await money_state(stripe_kassa, order_id, intent_id)
    assert before.order["status"] == "PAID" and before.signals == 0 and not before.late_payment
    duplicates = webhook_outcomes("duplicate")

    for _ in range(2):
        answer = await deliver(kassa, localstripe_body(delivered.payload))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": True, "duplicate": True}

    assert webhook_outcomes("duplicate") == duplicates + 2
    assert await money_state(stripe_kassa, order_id, intent_id) == before
    events = await stored_events(kassa, intent_id)
    assert [(e.id, e.processed_at) for e in events] == [(delivered.id, delivered.processed_at)]
    await assert_captured(stripe_kassa, order_id, intent_id, 45_000)


@pytest.mark.parametrize("value", ["1e400", "-1e400", "Infinity", "NaN"])
async def test_a_signed_event_postgresql_cannot_store_is_malformed(
    stripe_kassa: StripeKassa, value: str
) -> None:
    """Signed with the endpoint secret, and Stripe's library takes it: a stored Infinity would be
    a 500 on every retry, so it is refused and nothing is stored."""
    kassa = stripe_kassa.kassa
    mark = uuid.uuid4().hex[:12]
    body = (
        f'{{"id": "evt_{mark}", "object": "event", "type": "payment_intent.succeeded",'
        f' "data": {{"object": {{"id": "pi_{mark}", "object": "payment_intent",'
        f' "amount_received": {value}}}}}}}'
    ).encode()
    malformed = webhook_outcomes("malformed_event")
    refused = await deliver(kassa, body)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "malformed_event"
    assert webhook_outcomes("malformed_event") == malformed + 1
    assert await stored_events(kassa, f"pi_{mark}") == []


async def test_reordered_stale_webhooks_are_stored_and_change_nothing(
    stripe_kassa: StripeKassa,
) -> None:
    """Older words about an intent that has moved on (captured): its authorization's event arriving
    after the capture's, and a failure. Correctly signed, each is stored and processed, counted
    `stale`, and changes nothing; the first settled word stands."""
    kassa = stripe_kassa.kassa
    order_id, intent_id = await paid_order(stripe_kassa, price=55_000)
    delivered = await capture_event(kassa, intent_id)
    before = await money_state(stripe_kassa, order_id, intent_id)
    stale = webhook_outcomes("stale")

    held = later_event(
        delivered,
        "payment_intent.amount_capturable_updated",
        status="requires_capture",
        amount_capturable=55_000,
        amount_received=0,
    )
    failed = later_event(
        delivered,
        "payment_intent.payment_failed",
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
        },
    )
    for event in (held, failed):
        answer = await deliver(kassa, localstripe_body(event))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": True}

    assert webhook_outcomes("stale") == stale + 2
    assert await money_state(stripe_kassa, order_id, intent_id) == before
    stored = {e.id: e for e in await stored_events(kassa, intent_id)}
    assert set(stored) == {delivered.id, held["id"], failed["id"]}
    for event in (held, failed):
        assert stored[event["id"]].payload == event and stored[event["id"]].processed_at
    async with session_scope(kassa.engine) as session:
        payment = await session.get_one(Payment, intent_id)
    assert (payment.status, payment.decline_code) == ("succeeded", None)
    await assert_captured(stripe_kassa, order_id, intent_id, 55_000)


async def test_a_hold_whose_webhook_was_lost_is_voided_by_reconciliation(
    stripe_kassa: StripeKassa,
) -> None:
    """The customer cancels the order while in 3-D Secure: Kassa cancels its intent at Stripe, and
    localstripe then refuses to authenticate it (as Stripe would). Money is held for the order all
    the same: an attempt Kassa recorded as authorized but whose answer the run never got, and whose
    event never came (localstripe sends none for a hold; Stripe's
    `payment_intent.amount_capturable_updated` was lost). Reconciliation finds it; the order's
    stock was sold meanwhile, so it lets go of it at Stripe (a void: not captured, not refunded);
    the order stays CANCELLED. (With its stock still there, the hold would be captured and the
    order completed: tests/test_yookassa_checkout.py.)"""
    kassa = stripe_kassa.kassa
    sku = await kassa.product(on_hand=3, price=60_000)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    method = {"type": "card", "token": await three_d_secure_method(stripe_kassa.localstripe)}
    async with customer.http() as http:
        response = await pay_now(http, cart, method)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["payment"]["status"] == "requires_action"
        order_id, first_intent = answer["order_id"], answer["payment"]["intent_id"]
        cancelled = await http.post(f"/orders/{order_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        ended = await order_reaches(http, order_id, "CANCELLED")
    async with asyncio.timeout(5):
        while True:  # the run cancels its intent at Stripe as it ends
            intent = await stripe_kassa.intent(first_intent)
            if intent["status"] == "canceled":
                break
            await asyncio.sleep(0.05)
    refused = await stripe_kassa.localstripe.post(
        f"/v1/payment_intents/{first_intent}/_authenticate",
        data={"client_secret": intent["client_secret"], "success": "true"},
    )
    assert refused.status_code == 400, refused.text
    assert (await kassa.stock(sku)).reserved == 0

    # A second attempt's hold at Stripe, for this order, recorded as the checkout's activity
    # records an authorization (the payment and the hold's memo on the ledger).
    async with session_scope(kassa.engine) as session:
        amount = (await session.get_one(Payment, first_intent)).amount
    created = await stripe_kassa.localstripe.post(
        "/v1/payment_intents",
        data={
            "amount": str(amount),
            "currency": "rub",
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "capture_method": "manual",
            "metadata[order_id]": order_id,
        },
    )
    assert created.status_code == 200, created.text
    late_intent = created.json()["id"]
    assert created.json()["status"] == "requires_capture"
    async with session_scope(kassa.engine) as session:
        await payments.record_attempt(
            session,
            uuid.UUID(order_id),
            2,
            amount,
            "RUB",
            IntentState(late_intent, PaymentStatus.AUTHORIZED),
        )
        await set_on_hand(session, sku, 0)

    await reconcile(kassa)
    late: WorkflowHandle[LatePaymentWorkflow, LatePaymentResult] = (
        kassa.temporal.get_workflow_handle_for(
            LatePaymentWorkflow.run, late_payment_workflow_id(late_intent)
        )
    )
    async with asyncio.timeout(10):
        assert await late.result() == LatePaymentResult("voided")

    # Voided at Stripe under its own key; nothing captured, nothing refunded.
    voided = await stripe_kassa.intent(late_intent)
    assert voided["status"] == "canceled"
    assert voided["latest_charge"]["captured"] is False
    assert voided["latest_charge"]["amount_refunded"] == 0
    calls = [sent for sent in stripe_kassa.proxy.sent if late_intent in sent.path + str(sent.form)]
    assert [(c.method, c.path) for c in calls] == [
        ("POST", f"/v1/payment_intents/{late_intent}/cancel")
    ]
    assert calls[0].headers["idempotency-key"] == f"{late_intent}:void"
    refunds = await stripe_kassa.localstripe.get(
        "/v1/refunds", params={"payment_intent": late_intent}
    )
    assert refunds.status_code == 200 and refunds.json()["data"] == [], refunds.text

    # The order stays as the customer left it; the hold and its void on the memo, no charge.
    async with customer.http() as http:
        order = (await http.get(f"/orders/{order_id}")).json()
    assert (order["status"], order["events"]) == ("CANCELLED", ended["events"])
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (0, 0)
    async with session_scope(kassa.engine) as session:
        assert (await session.get_one(Payment, late_intent)).status == "canceled"
        assert (await session.get_one(Payment, first_intent)).status == "canceled"
    ledger = [t for t in await ledger_of(kassa, order_id) if t["kind"] in MONEY_KINDS]
    assert [(t["kind"], t["reference"]) for t in ledger] == [
        ("authorization", late_intent),
        ("void", late_intent),
    ]
    totals: dict[str, int] = {}
    for posting in (p for t in ledger for p in t["postings"]):
        totals[posting["account"]] = totals.get(posting["account"], 0) + posting["amount"]
    assert set(totals.values()) == {0}
    await ledger_balances(kassa)
    assert await stored_events(kassa, late_intent) == []  # found by reconciliation alone
