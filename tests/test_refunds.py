"""Refunds, late payments and the ledger, on the real acquirer: money goes back once, the
ledger balances, and a payment that lands after its order ended completes it or is refunded."""

import asyncio
from typing import Any

import httpx
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from activities.inventory import set_on_hand
from kassa.db import session_scope
from tests.conftest import Kassa, ledger_balances
from tests.flow import CARD, CARD_3DS, order_reaches, pay_now, placed_checkout
from tests.late_payments import late_success, reconcile
from workflows.checkout import CheckoutWorkflow


async def _admin(kassa: Kassa) -> httpx.AsyncClient:
    return (await kassa.account("admin")).http()


async def _paid_order(kassa: Kassa, price: int = 100_000) -> str:
    customer = await kassa.customer()
    async with customer.http() as http:
        answer = await pay_now(
            http, await customer.cart_with((await kassa.product(on_hand=5, price=price), 1)), CARD
        )
        assert answer.status_code == 201, answer.text
        return answer.json()["order_id"]


def _money_kinds(ledger: list[dict]) -> list[str]:
    """The order's money movements; its points movements are tested in test_loyalty."""
    return [t["kind"] for t in ledger if t["kind"] in ("charge", "refund")]


async def test_full_refund_once_per_key(kassa: Kassa) -> None:
    order_id = await _paid_order(kassa)
    async with await _admin(kassa) as admin:
        first = await admin.post(
            f"/admin/orders/{order_id}/refund", json={}, headers={"Idempotency-Key": "refund-all-1"}
        )
        assert first.status_code == 200, first.text
        assert first.json()["amount"] == 100_000 and first.json()["order_status"] == "REFUNDED"
        again = await admin.post(
            f"/admin/orders/{order_id}/refund", json={}, headers={"Idempotency-Key": "refund-all-1"}
        )
        assert again.json() == first.json()
        other_key = await admin.post(
            f"/admin/orders/{order_id}/refund", json={}, headers={"Idempotency-Key": "refund-all-2"}
        )
        assert other_key.status_code == 409 and other_key.json()["code"] == "nothing_to_refund"
        ledger = (await admin.get("/admin/ledger", params={"order_id": order_id})).json()
    assert _money_kinds(ledger) == ["charge", "refund"]
    assert (
        sum(
            p["amount"]
            for t in ledger
            for p in t["postings"]
            if p["account"] == "acquirer_receivable"
        )
        == 0
    )
    await ledger_balances(kassa)


async def test_partial_refunds_then_the_rest(kassa: Kassa) -> None:
    order_id = await _paid_order(kassa, price=50_000)
    async with await _admin(kassa) as admin:
        part = await admin.post(
            f"/admin/orders/{order_id}/refund",
            json={"amount": 20_000},
            headers={"Idempotency-Key": "partial-1"},
        )
        assert part.status_code == 200 and part.json()["order_status"] == "PAID"
        too_much = await admin.post(
            f"/admin/orders/{order_id}/refund",
            json={"amount": 30_001},
            headers={"Idempotency-Key": "partial-2"},
        )
        assert too_much.status_code == 409 and too_much.json()["code"] == "refund_exceeds_charge"
        rest = await admin.post(
            f"/admin/orders/{order_id}/refund", json={}, headers={"Idempotency-Key": "partial-3"}
        )
        assert rest.json()["amount"] == 30_000 and rest.json()["order_status"] == "REFUNDED"
        order = (await admin.get("/admin/ledger", params={"order_id": order_id})).json()
        assert _money_kinds(order) == ["charge", "refund", "refund"]
        missing_key = await admin.post(f"/admin/orders/{order_id}/refund", json={})
        assert missing_key.status_code == 422
    await ledger_balances(kassa)


async def test_customers_cannot_refund_or_read_the_ledger(kassa: Kassa) -> None:
    order_id = await _paid_order(kassa)
    customer = await kassa.customer()
    async with customer.http() as http:
        refused = await http.post(
            f"/admin/orders/{order_id}/refund", json={}, headers={"Idempotency-Key": "sneaky-1"}
        )
        assert refused.status_code == 403
        assert (await http.get("/admin/ledger")).status_code == 403


async def _order_paid_late(
    kassa: Kassa, on_hand: int, sold_out_meanwhile: bool, expire: bool
) -> tuple[str, str, str]:
    """A 3-D Secure order that ended unpaid (the customer cancelled it, or its hold expired), then
    a success for it lands at the acquirer anyway (an attempt whose answer was lost)."""
    sku = await kassa.product(on_hand=on_hand, price=70_000)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    if expire:
        # A one-second hold, no grace: the run expires on its own in real time.
        workflow_id, checkout = await placed_checkout(
            kassa.engine, customer.user.id, cart, CARD_3DS, hold_seconds=1
        )
        start = WithStartWorkflowOperation(
            CheckoutWorkflow.run,
            checkout,
            id=workflow_id,
            task_queue=kassa.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        state = await kassa.temporal.execute_update_with_start_workflow(
            CheckoutWorkflow.pay_now, start_workflow_operation=start
        )
        order_id = str(state.order_id)
        assert (await (await start.workflow_handle()).result()).status == "EXPIRED"
    else:
        async with customer.http() as http:
            order_id = (await pay_now(http, cart, CARD_3DS)).json()["order_id"]
            assert (await http.post(f"/orders/{order_id}/cancel")).status_code == 200
    if sold_out_meanwhile:
        async with session_scope(kassa.engine) as session:
            await set_on_hand(session, sku, 0)
    await late_success(kassa, order_id, 70_000)
    return order_id, sku, customer.token


async def test_late_payment_completes_the_order_when_its_stock_is_there(kassa: Kassa) -> None:
    order_id, sku, token = await _order_paid_late(
        kassa, on_hand=3, sold_out_meanwhile=False, expire=False
    )
    await reconcile(kassa)
    async with kassa.http(token) as http:
        order = await order_reaches(http, order_id, "PAID")
        assert order["reason"] == "late_payment"
        assert (await http.get("/cart")).json()["items"] == []  # the cart was bought
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    await ledger_balances(kassa)


async def test_late_payment_after_expiry_is_refunded_once_when_the_stock_is_gone(
    kassa: Kassa,
) -> None:
    order_id, sku, token = await _order_paid_late(
        kassa, on_hand=1, sold_out_meanwhile=True, expire=True
    )
    async with await _admin(kassa) as admin:
        await reconcile(kassa)
        await reconcile(kassa)  # finds nothing new: the refund is not issued twice
        async with kassa.http(token) as http:
            order = await order_reaches(http, order_id, "EXPIRED")
            ledger: list[dict[str, Any]] = []
            for _ in range(100):
                ledger = (await admin.get("/admin/ledger", params={"order_id": order_id})).json()
                if len(_money_kinds(ledger)) == 2:
                    break
                await asyncio.sleep(0.1)
            assert _money_kinds(ledger) == ["charge", "refund"]
            order = (await http.get(f"/orders/{order_id}")).json()
            assert (
                order["status"] == "EXPIRED"
                and order["events"][-1]["reason"] == "refunded_late_payment"
            )
    assert (await kassa.stock(sku)).on_hand == 0
    await ledger_balances(kassa)
