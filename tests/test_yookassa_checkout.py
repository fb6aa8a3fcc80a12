"""Pay Now end to end with `KASSA_PSP=yookassa`: the gateway, a worker and the checkout workflow
against the YooKassa double (tests/yookassa_double.py) over loopback HTTP, nothing mocked. The
customer pays on the double's page (its confirmation_url); the double's notifications reach
`POST /webhooks/yookassa` from 127.0.0.2, which plays YooKassa's network, or from 127.0.0.3,
which plays anyone else's.

YooKassa is two-stage: Pay Now asks for `capture: false`, the customer's payment on the page is
an authorization (`payment.waiting_for_capture`), and the workflow captures it once the stock is
committed. The ledger shows it: `authorization`, `capture` and `charge` (or `void`), its memo
accounts back at zero once the hold is taken or let go."""

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.inventory import set_on_hand
from activities.ledger import CARD_HOLDS, HELD_FOR_ORDERS
from kassa.db import session_scope
from kassa.tables import Order, Payment, WebhookEvent
from tests.conftest import Customer, Kassa, kassa_stack, ledger_balances
from tests.flow import cart_reopened, order_reaches, pay_now
from tests.late_payments import reconcile
from tests.servers import listening_socket, serving
from tests.yookassa_double import YooKassaDouble
from workflows.checkout import CheckoutResult, CheckoutWorkflow
from workflows.money_back import LatePaymentResult, LatePaymentWorkflow, late_payment_workflow_id

SHOP, SECRET = "100500", "test_secret_key"
YOOKASSA_HERE = "127.0.0.2"  # plays YooKassa's notification network
ELSEWHERE = "127.0.0.3"
# No token: the customer pays on YooKassa's page.
ON_YOOKASSAS_PAGE = {"type": "card"}


@dataclass
class Stand:
    kassa: Kassa
    double: YooKassaDouble
    url: str  # the double's


@pytest.fixture(scope="module")
async def stand(
    data_dir: Path, database_url: str, dev_server: WorkflowEnvironment
) -> AsyncIterator[Stand]:
    double = YooKassaDouble(SHOP, SECRET, notify_source=YOOKASSA_HERE)
    async with (
        serving(double.app(), listening_socket()) as url,
        kassa_stack(
            data_dir,
            database_url,
            dev_server,
            psp="yookassa",
            psp_url=url,
            psp_account_id=SHOP,
            psp_secret_key=SECRET,
            psp_trusted_networks=["127.0.0.2/32"],
        ) as kassa,
    ):
        double.notify_url = kassa.settings.webhook_url
        assert double.notify_url.endswith("/webhooks/yookassa")
        yield Stand(kassa, double, url)
        await double.delivered()
    assert double.dishonest == []


@pytest.fixture
async def yk(stand: Stand) -> AsyncIterator[Stand]:
    """Each test's notifications come from YooKassa's network, and are sent, unless it says
    otherwise."""
    stand.double.notify_source, stand.double.notifying = YOOKASSA_HERE, True
    yield stand
    stand.double.notifying = True
    await stand.double.delivered()
    assert stand.double.dishonest == []


@dataclass
class Pending:
    customer: Customer
    cart: dict[str, Any]
    sku: str
    order_id: str
    intent_id: str
    payment_url: str


async def pending_order(yk: Stand, price: int = 150_000) -> Pending:
    """Pay Now with no token: the order waits while the customer is on YooKassa's page."""
    sku = await yk.kassa.product(on_hand=3, price=price)
    customer = await yk.kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        response = await pay_now(http, cart, ON_YOOKASSAS_PAGE)
    assert response.status_code == 201, response.text
    answer = response.json()
    intent_id = answer["payment"]["intent_id"]
    assert (answer["status"], answer["payment"]["status"], answer["attempts"]) == (
        "PENDING_PAYMENT",
        "requires_action",
        1,
    )
    assert answer["payment_url"] == f"{yk.url}/_double/pay/{intent_id}"
    assert yk.double.payments[intent_id].status == "pending"
    return Pending(customer, cart, sku, answer["order_id"], intent_id, answer["payment_url"])


async def on_the_page(payment_url: str, button: str, **params: str) -> None:
    """The customer opens YooKassa's page and presses a button: the page's own form, posted."""
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(payment_url)
        assert page.status_code == 200 and "<button>Pay</button>" in page.text, page.text
        action = f"/_double/payments/{payment_url.rsplit('/', 1)[1]}/{button}"
        assert f'action="{action}"' in page.text
        pressed = await browser.post(str(httpx.URL(payment_url).join(action)), params=params)
        assert pressed.status_code == 200, pressed.text


async def webhook_counts(kassa: Kassa) -> dict[str, float]:
    """`kassa_webhook_events_total` by outcome, as the gateway's /metrics says."""
    async with kassa.http() as http:
        text = (await http.get("/metrics")).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "kassa_webhook_events"
        for sample in family.samples
        if sample.name == "kassa_webhook_events_total"
    }


def moved(before: dict[str, float], after: dict[str, float], outcome: str) -> float:
    return after.get(outcome, 0) - before.get(outcome, 0)


async def stored(kassa: Kassa, event_id: str) -> WebhookEvent | None:
    async with session_scope(kassa.engine) as session:
        return await session.get(WebhookEvent, event_id)


async def events_for(kassa: Kassa, intent_id: str) -> list[str]:
    async with session_scope(kassa.engine) as session:
        rows = await session.exec(select(WebhookEvent).where(WebhookEvent.intent_id == intent_id))
        return [row.id for row in rows]


async def run_of(kassa: Kassa, order_id: str) -> WorkflowHandle[CheckoutWorkflow, CheckoutResult]:
    async with session_scope(kassa.engine) as session:
        workflow_id = (await session.get_one(Order, uuid.UUID(order_id))).workflow_id
    return kassa.temporal.get_workflow_handle_for(CheckoutWorkflow.run, workflow_id)


async def signals(kassa: Kassa, order_id: str) -> int:
    history = await (await run_of(kassa, order_id)).fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )


async def started(handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        await handle.describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def late_payment_settled(kassa: Kassa, intent_id: str) -> LatePaymentResult:
    """The late payment's own workflow (started by the notification's handler), once it ends."""
    handle: WorkflowHandle[LatePaymentWorkflow, LatePaymentResult] = (
        kassa.temporal.get_workflow_handle_for(
            LatePaymentWorkflow.run, late_payment_workflow_id(intent_id)
        )
    )
    deadline = time.monotonic() + 10
    while not await started(handle):
        assert time.monotonic() < deadline, f"no late payment workflow for {intent_id}"
        await asyncio.sleep(0.05)
    return await handle.result()


# The ledger's kinds about the order's money (loyalty points have theirs too).
MONEY_KINDS = ("authorization", "capture", "void", "charge", "refund")


async def admin_ledger(kassa: Kassa, order_id: str) -> list[dict[str, Any]]:
    """The order's ledger transactions of its money, oldest first, as the admin API shows them."""
    async with (await kassa.account("admin")).http() as admin:
        response = await admin.get("/admin/ledger", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return [t for t in response.json() if t["kind"] in MONEY_KINDS]


def kinds(transactions: list[dict[str, Any]]) -> list[str]:
    return [t["kind"] for t in transactions]


def memo_of(transactions: list[dict[str, Any]]) -> dict[str, int]:
    """What the order's ledger leaves on the memo accounts of card holds: zero once every
    authorization was captured or voided."""
    left = {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    for transaction in transactions:
        for posting in transaction["postings"]:
            if posting["account"] in left:
                left[posting["account"]] += posting["amount"]
    return left


def moved_by(transaction: dict[str, Any]) -> int:
    return sum(p["amount"] for p in transaction["postings"] if p["amount"] > 0)


def captures_of(double: YooKassaDouble, intent_id: str) -> list[tuple[str, Any]]:
    """The Idempotence-Key and body of every capture of the payment the double was asked for."""
    return [
        (headers["idempotence-key"], body)
        for method, path, headers, body in double.requests
        if (method, path) == ("POST", f"/v3/payments/{intent_id}/capture")
    ]


async def delivered_for(double: YooKassaDouble, intent_id: str, kassa: Kassa) -> list[str]:
    """Once every notification is answered: the events Kassa stored of the payment."""
    await double.delivered()
    return sorted(await events_for(kassa, intent_id))


async def sold_and_booked(yk: Stand, order: Pending) -> None:
    """The order's unit sold (2 left, none held), its money held, captured and charged on the
    ledger, the memo of holds back to nothing, and the books balanced."""
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "capture", "charge"]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    await ledger_balances(yk.kassa)


async def test_pay_now_on_yookassas_page_pays_the_order(yk: Stand) -> None:
    before = await webhook_counts(yk.kassa)
    order = await pending_order(yk, price=129_900)
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (3, 1)
    # What Kassa asked YooKassa for: a redirect back to the gateway, a hold (no capture), no token.
    headers, body = next(
        (headers, body)
        for method, path, headers, body in yk.double.requests
        if (method, path) == ("POST", "/v3/payments")
        and body["metadata"]["order_id"] == order.order_id
    )
    assert headers["idempotence-key"] == f"{order.order_id}:1:create"
    assert body == {
        "amount": {"value": "1299.00", "currency": "RUB"},
        "capture": False,
        "confirmation": {"type": "redirect", "return_url": f"{yk.kassa.api_url}/checkout/return"},
        "metadata": {"order_id": order.order_id},
        "description": f"Order {order.order_id}",
    }

    # The customer pays on the page: YooKassa holds the money and says so.
    await on_the_page(order.payment_url, "succeed")
    async with order.customer.http() as http:
        paid = await order_reaches(http, order.order_id, "PAID", within=10)
    assert [e["status"] for e in paid["events"]] == ["CREATED", "PENDING_PAYMENT", "PAID"]
    assert (paid["payment"]["status"], paid["payment"]["intent_id"]) == (
        "succeeded",
        order.intent_id,
    )
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    # The stock committed, the workflow captured the hold: once, under the key derived from the
    # payment, all of it (no amount: YooKassa takes what it holds). YooKassa has the money.
    assert captures_of(yk.double, order.intent_id) == [(f"{order.intent_id}:capture", {})]
    at_yookassa = yk.double.payments[order.intent_id]
    assert (at_yookassa.status, at_yookassa.amount, at_yookassa.paid) == (
        "succeeded",
        129_900,
        True,
    )
    assert at_yookassa.captured_at is not None
    async with session_scope(yk.kassa.engine) as session:
        assert (await session.get_one(Payment, order.intent_id)).status == "succeeded"
    # On the ledger: the hold, its capture, the charge; the memo of holds is back at zero.
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "capture", "charge"]
    assert [moved_by(t) for t in ledger] == [129_900] * 3
    assert {t["reference"] for t in ledger} == {order.intent_id}
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}

    # Both notifications (the hold, then the capture) were taken for what YooKassa's API said
    # when asked again, and stored.
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    event = await stored(yk.kassa, f"payment.waiting_for_capture:{order.intent_id}")
    assert event is not None and event.processed_at is not None
    assert event.type == "payment.waiting_for_capture" and event.intent_id == order.intent_id
    assert event.payload["notification"]["object"]["id"] == order.intent_id
    assert event.payload["fetched"]["status"] == "waiting_for_capture"
    event = await stored(yk.kassa, f"payment.succeeded:{order.intent_id}")
    assert event is not None and event.processed_at is not None
    assert event.payload["fetched"]["status"] == "succeeded"
    assert ("GET", f"/v3/payments/{order.intent_id}") in [
        (m, p) for m, p, _, _ in yk.double.requests
    ]
    assert moved(before, await webhook_counts(yk.kassa), "signalled") >= 1
    # The hold's notification is what told the run; the capture's is the run's own doing (told
    # too only if it overtook the capture's answer, which the run then ignores).
    assert 1 <= await signals(yk.kassa, order.order_id) <= 2
    await ledger_balances(yk.kassa)


async def test_a_decline_on_the_page_then_another_payment_pays(yk: Stand) -> None:
    order = await pending_order(yk)
    await on_the_page(order.payment_url, "decline", reason="insufficient_funds")
    await yk.double.delivered()
    assert yk.double.deliveries[-1] == ("payment.canceled", 200)
    # Once the run has the decline, it waits for another method (the hold still running).
    run = await run_of(yk.kassa, order.order_id)
    deadline = time.monotonic() + 10
    while (payment := (await run.query(CheckoutWorkflow.status)).payment) is None or (
        payment.status != "failed"
    ):
        assert time.monotonic() < deadline, f"the run still has {payment}"
        await asyncio.sleep(0.05)
    assert payment.decline_code == "insufficient_funds"

    async with order.customer.http() as http:
        declined = (await http.get(f"/orders/{order.order_id}")).json()
        assert declined["status"] == "PENDING_PAYMENT"
        assert (declined["payment"]["status"], declined["payment"]["decline_code"]) == (
            "failed",
            "insufficient_funds",
        )
        again = await http.post(
            f"/orders/{order.order_id}/pay", json={"payment_method": ON_YOOKASSAS_PAGE}
        )
        assert again.status_code == 200, again.text
        second = again.json()
        intent_id = second["payment"]["intent_id"]
        assert intent_id != order.intent_id and second["attempts"] == 2
        assert second["payment_url"] == f"{yk.url}/_double/pay/{intent_id}"
        _, _, headers, _ = yk.double.requests[-1]
        assert headers["idempotence-key"] == f"{order.order_id}:2:create"

        await on_the_page(second["payment_url"], "succeed")
        paid = await order_reaches(http, order.order_id, "PAID", within=10)
    assert (paid["payment"]["attempt"], paid["payment"]["intent_id"]) == (2, intent_id)
    assert yk.double.payments[order.intent_id].status == "canceled"
    assert yk.double.payments[intent_id].status == "succeeded"
    # Only the second payment was held, and captured; the declined one was never captured.
    assert captures_of(yk.double, order.intent_id) == []
    assert captures_of(yk.double, intent_id) == [(f"{intent_id}:capture", {})]
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert [(t["kind"], t["reference"]) for t in ledger] == [
        ("authorization", intent_id),
        ("capture", intent_id),
        ("charge", intent_id),
    ]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    await ledger_balances(yk.kassa)


async def test_a_notification_from_elsewhere_is_refused_and_changes_nothing(yk: Stand) -> None:
    order = await pending_order(yk)
    before = await webhook_counts(yk.kassa)
    yk.double.notify_source = ELSEWHERE
    await on_the_page(order.payment_url, "succeed")
    await yk.double.delivered()
    assert yk.double.deliveries[-1] == ("payment.waiting_for_capture", 400)
    after = await webhook_counts(yk.kassa)
    assert moved(before, after, "untrusted_source") == 1
    assert moved(before, after, "signalled") == 0
    # Refused before anything was read or stored: no event, no signal to the run. (The run's own
    # status check, 5 s after the payment began, would find the payment; the signal is the
    # notification's doing only.)
    assert await events_for(yk.kassa, order.intent_id) == []
    assert await signals(yk.kassa, order.order_id) == 0

    # YooKassa sends it again until it is taken: from its own network it is.
    yk.double.notify_source = YOOKASSA_HERE
    body = yk.double.notification(
        "payment.waiting_for_capture", yk.double.payment_json(yk.double.payments[order.intent_id])
    )
    transport = httpx.AsyncHTTPTransport(local_address=YOOKASSA_HERE)
    async with httpx.AsyncClient(transport=transport) as yookassa:
        taken = await yookassa.post(yk.kassa.settings.webhook_url, json=body)
    assert taken.status_code == 200, taken.text
    async with order.customer.http() as http:
        await order_reaches(http, order.order_id, "PAID", within=10)
    assert yk.double.payments[order.intent_id].status == "succeeded"
    # The hold's notification, taken the second time; the capture's, from YooKassa's network.
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    assert kinds(await admin_ledger(yk.kassa, order.order_id)) == [
        "authorization",
        "capture",
        "charge",
    ]


@pytest.mark.parametrize("number", ["1e400", "-1e400", "Infinity", "NaN"])
async def test_a_notification_with_a_number_postgresql_cannot_store_is_malformed(
    yk: Stand, number: str
) -> None:
    """From YooKassa's network, naming a real payment: refused before anything is fetched or
    stored (a stored Infinity would be a 500 on every retry)."""
    order = await pending_order(yk)
    before = await webhook_counts(yk.kassa)
    notification = yk.double.notification(
        "payment.waiting_for_capture", yk.double.payment_json(yk.double.payments[order.intent_id])
    )
    body = json.dumps(notification)[:-1].encode() + f', "amount_hint": {number}}}'.encode()
    transport = httpx.AsyncHTTPTransport(local_address=YOOKASSA_HERE)
    async with httpx.AsyncClient(transport=transport) as yookassa:
        refused = await yookassa.post(
            yk.kassa.settings.webhook_url,
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "malformed_event"
    assert moved(before, await webhook_counts(yk.kassa), "malformed_event") == 1
    assert await events_for(yk.kassa, order.intent_id) == []
    async with order.customer.http() as http:
        assert (await http.post(f"/orders/{order.order_id}/cancel")).status_code == 200


async def test_an_admin_refund_reaches_yookassa(yk: Stand) -> None:
    order = await pending_order(yk, price=80_000)
    await on_the_page(order.payment_url, "succeed")
    async with order.customer.http() as http:
        await order_reaches(http, order.order_id, "PAID", within=10)
    # Refundable only once captured: YooKassa refunds no hold.
    assert yk.double.payments[order.intent_id].status == "succeeded"

    async with (await yk.kassa.account("admin")).http() as admin:
        # The longest key the API takes: YooKassa's Idempotence-Key holds 64 characters.
        long_key = "k" * 100
        part = await admin.post(
            f"/admin/orders/{order.order_id}/refund",
            json={"amount": 30_000},
            headers={"Idempotency-Key": long_key},
        )
        assert part.status_code == 200, part.text
        assert (part.json()["amount"], part.json()["order_status"]) == (30_000, "PAID")
        rest = await admin.post(
            f"/admin/orders/{order.order_id}/refund",
            json={},
            headers={"Idempotency-Key": "yookassa-refund-rest"},
        )
        assert rest.status_code == 200, rest.text
        assert (rest.json()["amount"], rest.json()["order_status"]) == (50_000, "REFUNDED")
        again = await admin.post(
            f"/admin/orders/{order.order_id}/refund",
            json={},
            headers={"Idempotency-Key": "yookassa-refund-rest"},
        )
        assert again.json() == rest.json()

    # YooKassa made exactly these two refunds of the payment, and says so.
    made = {r.id: r.amount for r in yk.double.refunds.values() if r.payment_id == order.intent_id}
    assert made == {part.json()["refund_id"]: 30_000, rest.json()["refund_id"]: 50_000}
    assert yk.double.payments[order.intent_id].refunded == 80_000
    async with httpx.AsyncClient(base_url=yk.url, auth=(SHOP, SECRET)) as api:
        payment = (await api.get(f"/v3/payments/{order.intent_id}")).json()
        assert payment["refunded_amount"] == {"value": "800.00", "currency": "RUB"}
        assert payment["refundable"] is False
        refund = (await api.get(f"/v3/refunds/{rest.json()['refund_id']}")).json()
        assert (refund["status"], refund["amount"]["value"]) == ("succeeded", "500.00")
    # Each under a key of its own, derived from the admin's: a longer one than YooKassa takes
    # (64 characters) as its SHA-256.
    keys = [h["idempotence-key"] for _, path, h, _ in yk.double.requests if path == "/v3/refunds"]
    assert keys[-2:] == [
        hashlib.sha256(f"admin-{long_key}".encode()).hexdigest(),
        "admin-yookassa-refund-rest",
    ]

    # The refund notifications were taken (stored, moving no payment).
    await yk.double.delivered()
    for refund_id in made:
        event = await stored(yk.kassa, f"refund.succeeded:{refund_id}")
        assert event is not None and event.processed_at is not None
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "capture", "charge", "refund", "refund"]
    assert [moved_by(t) for t in ledger] == [80_000, 80_000, 80_000, 30_000, 50_000]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    async with session_scope(yk.kassa.engine) as session:
        assert (await session.get_one(Payment, order.intent_id)).status == "succeeded"
    async with order.customer.http() as http:
        assert (await http.get(f"/orders/{order.order_id}")).json()["status"] == "REFUNDED"
    await ledger_balances(yk.kassa)


async def _cancelled_while_on_the_page(yk: Stand) -> Pending:
    """YooKassa cancels only a payment waiting for capture: the order's cancel cannot void one
    still on its page, and the adapter answers it as it stands. The order ends all the same."""
    order = await pending_order(yk)
    async with order.customer.http() as http:
        cancelled = await http.post(f"/orders/{order.order_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        view = await order_reaches(http, order.order_id, "CANCELLED", within=10)
    assert view["payment"]["status"] == "requires_action"
    cancels = [
        headers["idempotence-key"]
        for m, p, headers, _ in yk.double.requests
        if (m, p) == ("POST", f"/v3/payments/{order.intent_id}/cancel")
    ]
    assert cancels == [f"{order.intent_id}:cancel"]
    assert yk.double.payments[order.intent_id].status == "pending"
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)
    return order


async def test_a_later_hold_completes_the_cancelled_order_when_its_stock_is_there(
    yk: Stand,
) -> None:
    """The customer pays on the page after all: a late payment, only held (authorized). The
    order's stock is still there, so it is held again, the money captured, and the order
    completed (PAID, late_payment), as a late success completes it."""
    order = await _cancelled_while_on_the_page(yk)
    await on_the_page(order.payment_url, "succeed")
    assert await late_payment_settled(yk.kassa, order.intent_id) == LatePaymentResult("completed")
    assert captures_of(yk.double, order.intent_id) == [(f"{order.intent_id}:capture", {})]
    assert yk.double.payments[order.intent_id].status == "succeeded"
    async with order.customer.http() as http:
        paid = (await http.get(f"/orders/{order.order_id}")).json()
    assert (paid["status"], paid["reason"]) == ("PAID", "late_payment")
    await sold_and_booked(yk, order)


async def test_a_later_hold_is_voided_when_the_cancelled_orders_stock_is_gone(
    yk: Stand,
) -> None:
    """The same late hold, its order's stock sold meanwhile: let go at YooKassa (a void: nothing
    taken, nothing to refund), and the order stays CANCELLED."""
    order = await _cancelled_while_on_the_page(yk)
    async with session_scope(yk.kassa.engine) as session:
        await set_on_hand(session, order.sku, 0)
    await on_the_page(order.payment_url, "succeed")
    assert await late_payment_settled(yk.kassa, order.intent_id) == LatePaymentResult("voided")
    # Voided at YooKassa by the shop: the hold is gone, nothing was captured.
    at_yookassa = yk.double.payments[order.intent_id]
    assert (at_yookassa.status, at_yookassa.cancellation) == (
        "canceled",
        ("merchant", "canceled_by_merchant"),
    )
    assert captures_of(yk.double, order.intent_id) == []
    async with session_scope(yk.kassa.engine) as session:
        assert (await session.get_one(Payment, order.intent_id)).status == "canceled"
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.canceled:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    async with order.customer.http() as http:
        still = (await http.get(f"/orders/{order.order_id}")).json()
    assert (still["status"], still["events"][-1]["status"]) == ("CANCELLED", "CANCELLED")
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (0, 0)
    # The hold and its void on the memo, which is back at zero; no charge, nothing refunded.
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "void"]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    assert not [r for r in yk.double.refunds.values() if r.payment_id == order.intent_id]
    await ledger_balances(yk.kassa)


async def test_a_capture_yookassa_refuses_undoes_the_sale(yk: Stand) -> None:
    """The hold runs out at YooKassa just as the workflow captures it (`expired_on_capture`):
    YooKassa refuses the capture, so the sale committed a moment before is undone (the stock back
    on the shelf) and the order ends PAYMENT_FAILED (capture_refused), its cart given back and
    nothing charged."""
    order = await pending_order(yk, price=99_000)
    yk.double.expire_before_capture.add(order.intent_id)
    await on_the_page(order.payment_url, "succeed")
    async with order.customer.http() as http:
        failed = await order_reaches(http, order.order_id, "PAYMENT_FAILED", within=10)
        assert failed["reason"] == "capture_refused"
        assert [e["status"] for e in failed["events"]] == [
            "CREATED",
            "PENDING_PAYMENT",
            "PAYMENT_FAILED",
        ]
        reopened = await cart_reopened(http)
    assert reopened["id"] == order.cart["id"] and reopened["version"] == order.cart["version"] + 1
    assert reopened["status"] == "open" and reopened["items"][0]["sku"] == order.sku
    # Asked once, under the payment's key, and refused: the hold had expired.
    assert captures_of(yk.double, order.intent_id) == [(f"{order.intent_id}:capture", {})]
    (refusal,) = [
        answer
        for key, (path, _, status, answer) in yk.double._replies.items()
        if key == f"{order.intent_id}:capture"
    ]
    assert refusal["type"] == "error" and refusal["code"] == "invalid_request"
    at_yookassa = yk.double.payments[order.intent_id]
    assert (at_yookassa.status, at_yookassa.cancellation) == (
        "canceled",
        ("yoo_money", "expired_on_capture"),
    )
    # Committed, then put back: on the shelf as before, nothing held.
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.canceled:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    async with session_scope(yk.kassa.engine) as session:
        payment = await session.get_one(Payment, order.intent_id)
    assert (payment.status, payment.decline_code) == ("failed", "expired_on_capture")
    # The hold, and its end, on the memo; no charge.
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "void"]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    await ledger_balances(yk.kassa)


@dataclass(frozen=True)
class Standing:
    """All that a payment's event could change: the order, our payment, the ledger, the stock,
    and the run's signals."""

    order: dict[str, Any]
    payment: tuple[str, str | None]
    ledger: list[dict[str, Any]]
    stock: tuple[int, int]
    signals: int


async def standing(yk: Stand, order: Pending) -> Standing:
    async with order.customer.http() as http:
        view = (await http.get(f"/orders/{order.order_id}")).json()
    async with session_scope(yk.kassa.engine) as session:
        payment = await session.get_one(Payment, order.intent_id)
    stock = await yk.kassa.stock(order.sku)
    return Standing(
        view,
        (payment.status, payment.decline_code),
        await admin_ledger(yk.kassa, order.order_id),
        (stock.on_hand, stock.reserved),
        await signals(yk.kassa, order.order_id),
    )


async def paid_on_the_page(yk: Stand, price: int) -> Pending:
    """An order paid on YooKassa's page, held, captured and PAID, every notification answered."""
    order = await pending_order(yk, price=price)
    await on_the_page(order.payment_url, "succeed")
    async with order.customer.http() as http:
        await order_reaches(http, order.order_id, "PAID", within=10)
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    return order


async def test_a_notification_sent_twice_is_a_duplicate_and_changes_nothing(yk: Stand) -> None:
    """YooKassa sends a notification again when its answer was lost: the same body, from its
    own network. The second is answered as the first (YooKassa's acknowledgement) and flagged a
    duplicate, and changes nothing."""
    order = await paid_on_the_page(yk, price=61_000)
    before = await standing(yk, order)
    counts = await webhook_counts(yk.kassa)
    again = await yk.double.redeliver("payment.succeeded", order.intent_id)
    assert again is not None and again.status_code == 200
    assert again.json() == {"duplicate": True}
    assert yk.double.deliveries[-1] == ("payment.succeeded", 200)
    # The same once more: still a duplicate.
    third = await yk.double.redeliver("payment.succeeded", order.intent_id)
    assert third is not None and third.json() == {"duplicate": True}
    assert moved(counts, await webhook_counts(yk.kassa), "duplicate") == 2
    assert await standing(yk, order) == before
    assert before.order["status"] == "PAID" and before.payment == ("succeeded", None)
    assert kinds(before.ledger) == ["authorization", "capture", "charge"]
    assert captures_of(yk.double, order.intent_id) == [(f"{order.intent_id}:capture", {})]
    assert sorted(await events_for(yk.kassa, order.intent_id)) == [
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    await ledger_balances(yk.kassa)


async def test_a_hold_notified_after_its_capture_is_the_capture_and_changes_nothing(
    yk: Stand,
) -> None:
    """Notifications come in any order: the hold's (`payment.waiting_for_capture`) arrives after
    the payment was captured and the order PAID. Kassa asks YooKassa again, which says
    succeeded: the event is the capture's (`payment.succeeded:{id}`), taken already, so a
    duplicate; nothing moves back."""
    order = await paid_on_the_page(yk, price=62_000)
    before = await standing(yk, order)
    counts = await webhook_counts(yk.kassa)
    late = await yk.double.redeliver("payment.waiting_for_capture", order.intent_id)
    assert late is not None and late.status_code == 200
    assert late.json() == {"duplicate": True}
    # What was redelivered: the hold's notification, as it was first sent.
    held = ("payment.waiting_for_capture", order.intent_id)
    (sent,) = [body for body in yk.double.notified if (body["event"], body["object"]["id"]) == held]
    assert sent["object"]["status"] == "waiting_for_capture"
    assert yk.double.payments[order.intent_id].status == "succeeded"
    after = await webhook_counts(yk.kassa)
    assert moved(counts, after, "duplicate") == 1
    assert moved(counts, after, "signalled") == 0
    assert await standing(yk, order) == before
    assert before.payment == ("succeeded", None)
    assert kinds(before.ledger) == ["authorization", "capture", "charge"]
    # Stored as before: no event of its own.
    assert sorted(await events_for(yk.kassa, order.intent_id)) == [
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    await ledger_balances(yk.kassa)


async def test_a_notification_whose_body_lies_is_taken_for_what_the_api_says(yk: Stand) -> None:
    """A notification from YooKassa's network (a proxy's address can be borrowed) that says
    succeeded for a payment the API says is still pending: the event is built from the API's
    answer (`payment.pending:{id}`, no outcome), so nothing moves, and the id of the real
    success is not used up: the payment, once made, pays the order."""
    order = await pending_order(yk, price=63_000)
    before = await standing(yk, order)
    counts = await webhook_counts(yk.kassa)
    lie = yk.double.payment_json(yk.double.payments[order.intent_id]) | {
        "status": "succeeded",
        "paid": True,
    }
    body = yk.double.notification("payment.succeeded", lie)
    transport = httpx.AsyncHTTPTransport(local_address=YOOKASSA_HERE)
    async with httpx.AsyncClient(transport=transport) as proxy:
        taken = await proxy.post(yk.kassa.settings.webhook_url, json=body)
    assert taken.status_code == 200 and taken.json() == {}, taken.text
    assert moved(counts, await webhook_counts(yk.kassa), "ignored") == 1
    assert await events_for(yk.kassa, order.intent_id) == [f"payment.pending:{order.intent_id}"]
    event = await stored(yk.kassa, f"payment.pending:{order.intent_id}")
    assert event is not None and event.processed_at is not None
    assert event.type == "payment.succeeded"
    assert event.payload["notification"]["object"]["status"] == "succeeded"
    assert event.payload["fetched"]["status"] == "pending"
    assert await standing(yk, order) == before
    assert before.order["status"] == "PENDING_PAYMENT"
    assert before.payment == ("requires_action", None) and before.ledger == []
    assert before.signals == 0

    # The customer does pay: its own notifications take the order to PAID.
    await on_the_page(order.payment_url, "succeed")
    async with order.customer.http() as http:
        await order_reaches(http, order.order_id, "PAID", within=10)
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == [
        f"payment.pending:{order.intent_id}",
        f"payment.succeeded:{order.intent_id}",
        f"payment.waiting_for_capture:{order.intent_id}",
    ]
    assert kinds(await admin_ledger(yk.kassa, order.order_id)) == [
        "authorization",
        "capture",
        "charge",
    ]


async def test_a_lost_notification_is_found_by_the_runs_status_check(yk: Stand) -> None:
    """The customer pays on the page and YooKassa's notification never comes: the run asks
    YooKassa itself (5 s after Pay Now, then 10 s, 20 s...), finds the hold, captures it and the
    order is PAID."""
    order = await pending_order(yk, price=64_000)
    began = time.monotonic()
    yk.double.notifying = False
    await on_the_page(order.payment_url, "succeed")
    assert yk.double.payments[order.intent_id].status == "waiting_for_capture"
    async with order.customer.http() as http:
        paid = await order_reaches(http, order.order_id, "PAID", within=10)
    # Not before the run's first check.
    assert time.monotonic() - began >= 4
    assert paid["payment"]["status"] == "succeeded"
    assert yk.double.payments[order.intent_id].status == "succeeded"
    assert captures_of(yk.double, order.intent_id) == [(f"{order.intent_id}:capture", {})]
    # YooKassa had two to send (the hold, the capture) and none came; nothing was stored.
    assert [
        body["event"] for body in yk.double.notified if body["object"]["id"] == order.intent_id
    ] == ["payment.waiting_for_capture", "payment.succeeded"]
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == []
    assert await signals(yk.kassa, order.order_id) == 0
    await sold_and_booked(yk, order)


async def test_a_lost_notification_of_an_ended_order_is_found_by_reconciliation(
    yk: Stand,
) -> None:
    """The customer cancels while on YooKassa's page (which YooKassa cannot close), pays there
    all the same, and the notification is lost: the run has ended, so no one asks. The
    reconciliation does: it asks YooKassa about the ended order's payment still open and finds the
    hold; the order's stock was sold meanwhile, so it lets go of it (a void: not captured, not
    refunded); the order stays CANCELLED."""
    order = await pending_order(yk, price=65_000)
    async with order.customer.http() as http:
        cancelled = await http.post(f"/orders/{order.order_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        await order_reaches(http, order.order_id, "CANCELLED", within=10)
    assert yk.double.payments[order.intent_id].status == "pending"

    yk.double.notifying = False
    await on_the_page(order.payment_url, "succeed")
    assert yk.double.payments[order.intent_id].status == "waiting_for_capture"
    async with session_scope(yk.kassa.engine) as session:
        assert (await session.get_one(Payment, order.intent_id)).status == "requires_action"
        await set_on_hand(session, order.sku, 0)

    await reconcile(yk.kassa)
    assert await late_payment_settled(yk.kassa, order.intent_id) == LatePaymentResult("voided")
    at_yookassa = yk.double.payments[order.intent_id]
    assert (at_yookassa.status, at_yookassa.cancellation) == (
        "canceled",
        ("merchant", "canceled_by_merchant"),
    )
    voids = [
        headers["idempotence-key"]
        for m, p, headers, _ in yk.double.requests
        if (m, p) == ("POST", f"/v3/payments/{order.intent_id}/cancel")
    ]
    assert voids == [f"{order.intent_id}:cancel", f"{order.intent_id}:void"]
    assert captures_of(yk.double, order.intent_id) == []
    assert not [r for r in yk.double.refunds.values() if r.payment_id == order.intent_id]
    async with session_scope(yk.kassa.engine) as session:
        assert (await session.get_one(Payment, order.intent_id)).status == "canceled"
    assert await delivered_for(yk.double, order.intent_id, yk.kassa) == []
    async with order.customer.http() as http:
        still = (await http.get(f"/orders/{order.order_id}")).json()
    assert (still["status"], still["events"][-1]["status"]) == ("CANCELLED", "CANCELLED")
    stock = await yk.kassa.stock(order.sku)
    assert (stock.on_hand, stock.reserved) == (0, 0)
    ledger = await admin_ledger(yk.kassa, order.order_id)
    assert kinds(ledger) == ["authorization", "void"]
    assert memo_of(ledger) == {CARD_HOLDS: 0, HELD_FOR_ORDERS: 0}
    # Settled: the next reconciliation finds nothing of it.
    await reconcile(yk.kassa)
    assert kinds(await admin_ledger(yk.kassa, order.order_id)) == ["authorization", "void"]
    await ledger_balances(yk.kassa)
