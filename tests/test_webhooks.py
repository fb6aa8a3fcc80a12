"""The acquirer's webhooks (design §6): only a fresh, correctly signed event is taken; it is stored
once by id, and a replay, a duplicate or a contradicting event changes nothing."""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode

from acquirer.faults import clear_faults, set_faults
from activities import webhook_inbox
from activities.webhook_inbox import Charge, PaymentEvent, PaymentNews, Receipt
from kassa.db import session_scope
from kassa.statuses import PaymentStatus
from kassa.tables import Cart, Order, Payment, WebhookEvent, utcnow
from kassa.webhook_signatures import sign
from tests.conftest import Customer, Kassa
from tests.flow import CARD, CARD_3DS, authenticate_3ds, order_reaches, pay_now
from workflows.money_back import late_payment_workflow_id


@dataclass
class PendingOrder:
    customer: Customer
    sku: str
    order_id: str
    intent_id: str
    payment_url: str


async def pending_3ds_order(kassa: Kassa) -> PendingOrder:
    sku = await kassa.product(on_hand=4)
    customer = await kassa.customer()
    async with customer.http() as http:
        response = await pay_now(http, await customer.cart_with((sku, 2)), CARD_3DS)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["status"] == "PENDING_PAYMENT" and answer["payment_url"]
    order = PendingOrder(
        customer, sku, answer["order_id"], answer["payment"]["intent_id"], answer["payment_url"]
    )
    # The acquirer announces the new intent too: once that has landed, what follows is ours alone.
    await processed_event(kassa, order.intent_id, "payment_intent.requires_action")
    return order


async def processed_event(kassa: Kassa, intent_id: str, type: str) -> WebhookEvent:
    deadline = time.monotonic() + 10
    while True:
        for event in await events_for(kassa, intent_id):
            if event.type == type and event.processed_at is not None:
                return event
        assert time.monotonic() < deadline, f"no {type} event for {intent_id} was processed"
        await asyncio.sleep(0.05)


def intent_event(order: PendingOrder, type: str, **intent: Any) -> dict[str, Any]:
    """An event as the acquirer words it, for the order's real intent."""
    obj = {
        "id": order.intent_id,
        "status": {
            "payment_intent.succeeded": "succeeded",
            "payment_intent.payment_failed": "failed",
        }[type],
        "amount": 300_000,
        "currency": "RUB",
        "merchant_reference": order.order_id,
        "next_action": None,
        "decline_code": None,
        "created": int(time.time()),
    } | intent
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "type": type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def body_of(event: dict[str, Any] | bytes) -> bytes:
    return event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()


async def deliver(
    kassa: Kassa, event: dict[str, Any] | bytes, signature: str | None = None, **headers: str
) -> httpx.Response:
    """POSTs the event as the acquirer would: signed now with our webhook secret, unless
    `signature` says otherwise."""
    assert kassa.settings.acquirer_webhook_secret
    body = body_of(event)
    if signature is None:
        signature = sign(kassa.settings.acquirer_webhook_secret, body, int(time.time()))
    async with kassa.http() as http:
        return await http.post(
            "/webhooks/sandbox",
            content=body,
            headers={"Content-Type": "application/json", "Acquirer-Signature": signature} | headers,
        )


def assert_problem(response: httpx.Response, code: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code and response.json()["status"] == 400


async def events_for(kassa: Kassa, intent_id: str) -> list[WebhookEvent]:
    async with session_scope(kassa.engine) as session:
        query = (
            select(WebhookEvent)
            .where(WebhookEvent.intent_id == intent_id)
            .order_by(col(WebhookEvent.received_at))
        )
        return list(await session.exec(query))


async def stored(kassa: Kassa, event_id: str) -> WebhookEvent | None:
    async with session_scope(kassa.engine) as session:
        return await session.get(WebhookEvent, event_id)


async def payment(kassa: Kassa, intent_id: str) -> tuple[str, str | None]:
    async with session_scope(kassa.engine) as session:
        row = await session.get_one(Payment, intent_id)
        return row.status, row.decline_code


async def signals_received(kassa: Kassa, order_id: str) -> int:
    async with session_scope(kassa.engine) as session:
        workflow_id = (await session.get_one(Order, uuid.UUID(order_id))).workflow_id
    history = await kassa.temporal.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        for event in history.events
    )


@dataclass
class Snapshot:
    order: dict[str, Any]
    stock: tuple[int, int]
    payment: tuple[str, str | None]
    webhook_events: list[str]
    signals: int


async def snapshot(kassa: Kassa, order: PendingOrder) -> Snapshot:
    async with order.customer.http() as http:
        order_view = (await http.get(f"/orders/{order.order_id}")).json()
    stock = await kassa.stock(order.sku)
    return Snapshot(
        order_view,
        (stock.on_hand, stock.reserved),
        await payment(kassa, order.intent_id),
        [event.id for event in await events_for(kassa, order.intent_id)],
        await signals_received(kassa, order.order_id),
    )


async def test_unsigned_forged_or_stale_events_are_refused_and_stored_nowhere(kassa: Kassa) -> None:
    order = await pending_3ds_order(kassa)
    before = await snapshot(kassa, order)
    assert before.order["status"] == "PENDING_PAYMENT" and before.payment == (
        "requires_action",
        None,
    )
    assert before.stock == (4, 2) and len(before.webhook_events) == 1 and before.signals == 0

    # The forged word that would pay the order without the customer passing 3-D Secure.
    forged = intent_event(order, "payment_intent.succeeded")
    body, now = body_of(forged), int(time.time())
    secret = kassa.settings.acquirer_webhook_secret
    assert secret
    refusals: dict[str, list[str | None]] = {
        "signature_missing": [None, ""],
        "signature_malformed": [
            "nonsense",
            "t=now,v1=abc",
            f"t={now}",
            "v1=" + "0" * 64,
            f"t=-{now},v1=abc",
        ],
        "signature_mismatch": [
            sign("a-secret-that-is-not-ours", body, now),
            f"t={now},v1=" + "0" * 64,
            sign(secret, body + b" ", now),  # the body changed after signing
            sign(secret, body, now).replace(f"t={now}", f"t={now + 1}"),  # the timestamp changed
            sign(secret, body_of(forged | {"id": "evt_other"}), now),
        ],
        "signature_expired": [sign(secret, body, now - 301), sign(secret, body, now - 86_400)],
    }
    for code, signatures in refusals.items():
        for signature in signatures:
            async with kassa.http() as http:
                headers = {"Content-Type": "application/json"}
                if signature is not None:
                    headers["Acquirer-Signature"] = signature
                response = await http.post("/webhooks/sandbox", content=body, headers=headers)
            assert_problem(response, code)

    assert await stored(kassa, forged["id"]) is None
    await asyncio.sleep(0.3)  # a signal, had one gone out, would have moved the order by now
    assert await snapshot(kassa, order) == before

    async with order.customer.http() as http:
        assert (await http.post(f"/orders/{order.order_id}/cancel")).status_code == 200
        await order_reaches(http, order.order_id, "CANCELLED")
    assert (await kassa.stock(order.sku)).reserved == 0


async def test_replayed_repeated_and_contradicting_events_change_nothing(kassa: Kassa) -> None:
    order = await pending_3ds_order(kassa)
    await authenticate_3ds(order.payment_url, approve=True)
    async with order.customer.http() as http:
        await order_reaches(http, order.order_id, "PAID")
    # The acquirer's own event (the order can be PAID a moment before the event's processing
    # commits).
    original = await processed_event(kassa, order.intent_id, "payment_intent.succeeded")
    before = await snapshot(kassa, order)
    assert (
        before.order["status"] == "PAID"
        and before.payment == ("succeeded", None)
        and before.stock == (2, 0)
    )
    assert [e["status"] for e in before.order["events"]] == ["CREATED", "PENDING_PAYMENT", "PAID"]

    # A replay of the acquirer's event, freshly signed: known by its id, nothing happens twice.
    for _ in range(2):
        replay = await deliver(kassa, original.payload)
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"received": True, "duplicate": True}

    # The same word under a new event id, and then a contradicting one: stored, but the first
    # settled word on an intent stands.
    succeeded_again = intent_event(order, "payment_intent.succeeded")
    failed = intent_event(order, "payment_intent.payment_failed", decline_code="card_declined")
    answers = [await deliver(kassa, event) for event in (succeeded_again, failed, failed)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert answers[-1].json() == {"received": True, "duplicate": True}

    after = await snapshot(kassa, order)
    assert after.webhook_events == [*before.webhook_events, succeeded_again["id"], failed["id"]]
    assert (after.order, after.stock, after.payment, after.signals) == (
        before.order,
        before.stock,
        before.payment,
        before.signals,
    )


async def test_late_success_for_a_declined_intent_changes_nothing(kassa: Kassa) -> None:
    order = await pending_3ds_order(kassa)
    await authenticate_3ds(order.payment_url, approve=False)
    await processed_event(kassa, order.intent_id, "payment_intent.payment_failed")
    before = await snapshot(kassa, order)
    assert before.order["status"] == "PENDING_PAYMENT" and before.payment[0] == "failed"
    # A late success for the declined intent contradicts the recorded outcome: it moves nothing.
    late = await deliver(kassa, intent_event(order, "payment_intent.succeeded"))
    assert late.status_code == 200, late.text
    after = await snapshot(kassa, order)
    assert (after.order, after.stock, after.payment) == (before.order, before.stock, before.payment)
    async with order.customer.http() as http:
        assert (await http.post(f"/orders/{order.order_id}/cancel")).status_code == 200
        await order_reaches(http, order.order_id, "CANCELLED")


def _malformed() -> list[Any]:
    well_formed = {
        "id": "evt_x",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_x"}},
    }
    long_id = "evt_" + "a" * 61
    cases = {
        "not json": b"payment succeeded",
        "truncated": b'{"id": "evt_x", "type": "payment_intent.succeeded"',
        "a list": b"[]",
        "a string": b'"evt_x"',
        "no type": {"id": "evt_x", "data": well_formed["data"]},
        "no id": {"type": "payment_intent.succeeded", "data": well_formed["data"]},
        "no data": {"id": "evt_x", "type": "payment_intent.succeeded"},
        "data not an object": well_formed | {"data": []},
        "object not an object": well_formed | {"data": {"object": "pi_x"}},
        "no intent id": well_formed | {"data": {"object": {"status": "succeeded"}}},
        "event id a number": well_formed | {"id": 12345},
        "intent id a number": well_formed | {"data": {"object": {"id": 12345}}},
        "intent id a list": well_formed | {"data": {"object": {"id": ["pi_x"]}}},
        "event id too long": well_formed | {"id": long_id},
        "type too long": well_formed | {"type": "payment_intent." + "x" * 60},
        "intent id too long": well_formed | {"data": {"object": {"id": "pi_" + "x" * 62}}},
        "decline code a number": well_formed
        | {"data": {"object": {"id": "pi_x", "decline_code": 51}}},
        "nul in the id": well_formed | {"id": "evt_\u0000"},
        "lone surrogate in the id": (
            b'{"id": "evt_\\ud800", "type": "payment_intent.succeeded",'
            b' "data": {"object": {"id": "pi_x"}}}'
        ),
        "lone surrogate elsewhere": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "note": "\\udc00"}}}'
        ),
        "NaN amount": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "amount": NaN}}}'
        ),
        # Python reads these as floats; PostgreSQL's JSONB has no infinity.
        "Infinity amount": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "amount": Infinity}}}'
        ),
        "-Infinity amount": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "amount": -Infinity}}}'
        ),
        "1e400 amount": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "amount": 1e400}}}'
        ),
        "-1e400 elsewhere": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x"}}, "n": [-1e400]}'
        ),
        "nested too deeply": (
            b'{"id": "evt_x", "type": "t", "data": {"object": {"id": "pi_x", "deep": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}}}"
        ),
    }
    return [pytest.param(body, id=name) for name, body in cases.items()]


@pytest.mark.parametrize("event", _malformed())
async def test_malformed_but_signed_event_is_400_and_not_stored(
    kassa: Kassa, event: dict[str, Any] | bytes
) -> None:
    # Unique ids, so that "nothing stored" can be read back.
    mark = uuid.uuid4().hex[:12]
    body = (
        body_of(event)
        .replace(b"evt_x", f"evt_{mark}".encode())
        .replace(b"pi_x", f"pi_{mark}".encode())
    )
    assert_problem(await deliver(kassa, body), "malformed_event")
    assert (
        await stored(kassa, f"evt_{mark}") is None and await events_for(kassa, f"pi_{mark}") == []
    )


async def test_unknown_but_well_formed_event_is_taken_once(kassa: Kassa) -> None:
    event: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "type": "payment_intent.created",
        "data": {"object": {"id": "pi_nobody"}},
    }
    first, second = await deliver(kassa, event), await deliver(kassa, event)
    assert first.status_code == 200 and first.json() == {"received": True}
    assert second.status_code == 200 and second.json() == {"received": True, "duplicate": True}
    kept = await stored(kassa, event["id"])
    assert kept is not None and kept.payload == event and kept.processed_at is not None


async def late_payment_started(kassa: Kassa, intent_id: str) -> bool:
    try:
        await kassa.temporal.get_workflow_handle(late_payment_workflow_id(intent_id)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_a_frictionless_payment_is_not_signalled_twice(kassa: Kassa) -> None:
    """The bank's webhook for a payment that went through at once arrives milliseconds after the
    workflow's own call told it so. Signalling it anyway made the workflow's last task fail
    (a new event during it) and its last steps run twice; a first delivery agreeing with the
    record is taken as known. A redelivery of it is signalled still: the handler that moved the
    record may have crashed before signalling."""
    sku = await kassa.product(on_hand=1)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    # The webhook a moment after the intent's answer, as it comes from a bank: delivered at
    # once, it can beat the activity's own record on a loaded machine, and is then news.
    await set_faults(kassa.settings.acquirer_base_url, webhooks={"delay_seconds": 1})
    try:
        async with customer.http() as http:
            response = await pay_now(http, cart, CARD)
        assert response.status_code == 201 and response.json()["status"] == "PAID", response.text
        order_id, intent_id = response.json()["order_id"], response.json()["payment"]["intent_id"]
        event = await processed_event(kassa, intent_id, "payment_intent.succeeded")
    finally:
        await clear_faults(kassa.settings.acquirer_base_url)
    async with session_scope(kassa.engine) as session:
        workflow_id = (await session.get_one(Order, uuid.UUID(order_id))).workflow_id
    history = await kassa.temporal.get_workflow_handle(workflow_id).fetch_history()
    types = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED not in types
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    # Signalled after the run completed, it would have started a late payment (NOT_FOUND).
    assert not await late_payment_started(kassa, intent_id)

    # As if the first delivery had crashed after moving the record: stored, not processed.
    async with session_scope(kassa.engine) as session:
        (await session.get_one(WebhookEvent, event.id)).processed_at = None
    redelivered = await deliver(kassa, event.payload)
    assert redelivered.status_code == 200 and redelivered.json() == {"received": True}, (
        redelivered.text
    )
    # Signalled: the run has ended, so it is a late payment, which finds it the order's own.
    assert await late_payment_started(kassa, intent_id)


async def test_the_inbox_decides_news_known_stale_ignored_and_duplicate(kassa: Kassa) -> None:
    """The inbox's decision for each kind of event, on the real database, in one transaction never
    committed: no workflow hears of it, and no success is left for reconciliation to find."""
    customer = await kassa.customer()
    cart_id, order_id, intent_id = uuid.uuid4(), uuid.uuid4(), f"pi_{uuid.uuid4().hex[:24]}"

    def event(status: str | None, **fields: Any) -> PaymentEvent:
        word = {"succeeded": "payment_intent.succeeded", "failed": "payment_intent.payment_failed"}
        event_id = f"evt_{uuid.uuid4().hex[:24]}"
        defaults: dict[str, Any] = {
            "id": event_id,
            "type": word.get(status or "", "payment_intent.created"),
            "intent_id": intent_id,
            "status": status,
            "decline_code": None,
            "order_id": order_id,
            "payload": {"id": event_id},
        }
        return PaymentEvent(**defaults | fields)

    async def processed(session: AsyncSession, event: PaymentEvent) -> bool:
        return (
            await session.get_one(WebhookEvent, event.id, populate_existing=True)
        ).processed_at is not None

    async with AsyncSession(kassa.engine) as session:
        session.add(Cart(id=cart_id, user_id=customer.user.id, status="checked_out"))
        await session.flush()
        session.add(
            Order(
                id=order_id,
                user_id=customer.user.id,
                cart_id=cart_id,
                cart_version=1,
                workflow_id="checkout-inbox-test",
                status="PENDING_PAYMENT",
                subtotal=300_000,
                vat=50_000,
                total=300_000,
                currency="RUB",
            )
        )
        await session.flush()
        session.add(
            Payment(
                intent_id=intent_id,
                order_id=order_id,
                attempt=1,
                status="requires_action",
                amount=300_000,
                currency="RUB",
                created_at=utcnow(),
            )
        )
        await session.flush()
        session.expunge_all()  # what the inbox reads, it reads from the database

        # The bank's word moves our record: news for the order's run, the success on record with it.
        succeeded = event("succeeded")
        news = PaymentNews(
            order_id,
            "checkout-inbox-test",
            intent_id,
            PaymentStatus.SUCCEEDED,
            None,
            Charge(order_id, intent_id, 300_000, "RUB"),
        )
        assert await webhook_inbox.receive(session, succeeded) == Receipt("news", news)
        assert not await processed(session, succeeded)
        # Delivered again before it was handed on (the handler crashed): news still.
        assert await webhook_inbox.receive(session, succeeded) == Receipt("news", news)
        await webhook_inbox.mark_processed(session, succeeded.id)
        assert await webhook_inbox.receive(session, succeeded) == Receipt("duplicate")

        # The same word under a new id, first delivered: the run has it already.
        known = event("succeeded")
        assert await webhook_inbox.receive(session, known) == Receipt("known")
        # A contradicting word, and a word that is not about the payment's outcome.
        failed, created = event("failed", decline_code="card_declined"), event(None)
        assert await webhook_inbox.receive(session, failed) == Receipt("stale")
        assert await webhook_inbox.receive(session, created) == Receipt("ignored")
        assert all([await processed(session, e) for e in (known, failed, created)])
        assert (
            await session.get_one(Payment, intent_id, populate_existing=True)
        ).status == "succeeded"

        # An intent not recorded yet: news, with no success on record to settle.
        unrecorded = event(
            "failed", intent_id=f"pi_{uuid.uuid4().hex[:24]}", decline_code="card_declined"
        )
        assert await webhook_inbox.receive(session, unrecorded) == Receipt(
            "news",
            PaymentNews(
                order_id,
                "checkout-inbox-test",
                unrecorded.intent_id,
                PaymentStatus.FAILED,
                "card_declined",
                None,
            ),
        )
        # News for an order we do not have: taken, and nobody to tell.
        stray = event("succeeded", intent_id=f"pi_{uuid.uuid4().hex[:24]}", order_id=uuid.uuid4())
        assert await webhook_inbox.receive(session, stray) == Receipt("unknown_order")
        assert await processed(session, stray)
        await session.rollback()
