"""What happens when a webhook is late, duplicated, reordered or lost, and when the acquirer is
down: the real acquirer with faults injected, the real checkout, the ledger checked at the end."""

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from acquirer.faults import clear_faults, set_faults
from kassa.db import session_scope
from tests.conftest import Kassa, ledger_balances
from tests.flow import CARD, CARD_3DS, authenticate_3ds, order_reaches, pay_now


@pytest.fixture
async def faults(kassa: Kassa) -> AsyncIterator[str]:
    yield kassa.settings.acquirer_base_url
    await clear_faults(kassa.settings.acquirer_base_url)


def _intents_at_the_acquirer(kassa: Kassa, order_id: str) -> int:
    with sqlite3.connect(kassa.settings.data_dir / "acquirer.sqlite3") as bank:
        return bank.execute(
            "SELECT count(*) FROM payment_intents WHERE merchant_reference = ?", (order_id,)
        ).fetchone()[0]


async def _charges(kassa: Kassa, order_id: str) -> int:
    async with session_scope(kassa.engine) as session:
        # sqlmodel's `exec` runs a text() too; only its overloads leave it out.
        found = await session.exec(  # type: ignore[call-overload]
            text(
                "SELECT count(*) FROM ledger_transactions"
                " WHERE kind = 'charge' AND order_id = :order_id"
            ),
            params={"order_id": uuid.UUID(order_id)},
        )
        return found.scalar_one()


async def _pay_now_until_answered(http: httpx.AsyncClient, cart: dict, method: dict) -> dict:
    """Under load a checkout may answer 503: `checkout_busy` (tap again: it attaches to the same
    run) or `payment_unavailable` (pay again: the same attempt, the same idempotency key)."""
    response = await pay_now(http, cart, method)
    for _ in range(10):
        if response.status_code != 503:
            assert response.status_code in (200, 201), response.text
            return response.json()
        if response.json()["code"] == "checkout_busy":
            response = await pay_now(http, cart, method)
        else:
            assert response.json()["code"] == "payment_unavailable"
            response = await http.post(
                f"/orders/{response.json()['order_id']}/pay", json={"payment_method": method}
            )
    raise AssertionError("Pay Now stayed unanswered")


async def payment_reaches(
    http: httpx.AsyncClient, order_id: str, status: str, within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while (order := (await http.get(f"/orders/{order_id}")).json())["payment"]["status"] != status:
        assert time.monotonic() < deadline, f"payment stayed {order['payment']['status']}"
        await asyncio.sleep(0.2)
    assert order["status"] == "PENDING_PAYMENT"


async def test_all_webhooks_dropped_paid_orders_still_become_paid(
    kassa: Kassa, faults: str
) -> None:
    await set_faults(faults, webhooks={"drop_rate": 1.0})
    sku = await kassa.product(on_hand=2)
    customer = await kassa.customer()
    async with customer.http() as http:
        answer = (await pay_now(http, await customer.cart_with((sku, 1)), CARD_3DS)).json()
        await authenticate_3ds(answer["payment_url"], approve=True)
        # No webhook will come: the workflow's status check finds the payment (first after 5 s).
        await order_reaches(http, answer["order_id"], "PAID", within=20)
    assert (await kassa.stock(sku)).on_hand == 1
    assert await _charges(kassa, answer["order_id"]) == 1


async def test_duplicated_and_reordered_webhooks_count_each_charge_once(
    kassa: Kassa, faults: str
) -> None:
    await set_faults(faults, webhooks={"duplicate": 3, "reorder": True})
    sku = await kassa.product(on_hand=200)

    async def buy(index: int) -> tuple[str, str]:
        customer = await kassa.customer()
        async with customer.http() as http:
            cart = await customer.cart_with((sku, 1))
            if index % 4 == 0:  # some through 3-D Secure, approved or declined at the bank
                answer = await _pay_now_until_answered(http, cart, CARD_3DS)
                approve = index % 8 == 0
                await authenticate_3ds(answer["payment_url"], approve=approve)
                expected = "PAID" if approve else "PENDING_PAYMENT"
            else:
                answer = await _pay_now_until_answered(http, cart, CARD)
                expected = "PAID"
            if expected == "PAID":
                await order_reaches(http, answer["order_id"], "PAID", within=60)
            else:
                await payment_reaches(http, answer["order_id"], "failed")
            return answer["order_id"], expected

    # 50 customers at a time: the whole stack shares this process's one event loop.
    at_once = asyncio.Semaphore(50)

    async def buy_in_turn(index: int) -> tuple[str, str]:
        async with at_once:
            return await buy(index)

    outcomes = await asyncio.gather(*(buy_in_turn(index) for index in range(200)))
    paid = [order_id for order_id, status in outcomes if status == "PAID"]
    for order_id in paid:
        assert await _charges(kassa, order_id) == 1
    stock = await kassa.stock(sku)
    assert stock.on_hand == 200 - len(paid)
    await ledger_balances(kassa)


async def test_acquirer_failing_30_percent_never_makes_two_intents_per_attempt(
    kassa: Kassa, faults: str
) -> None:
    await set_faults(faults, api={"error_rate": 0.3, "latency_ms": 300})
    sku = await kassa.product(on_hand=20)

    async def buy() -> str:
        customer = await kassa.customer()
        async with customer.http() as http:
            response = await pay_now(http, await customer.cart_with((sku, 1)), CARD)
            order_id = response.json()["order_id"]
            for _ in range(5):  # "the bank did not answer": the customer taps again
                if response.status_code != 503:
                    break
                assert (
                    response.json()["code"] == "payment_unavailable"
                    and response.json()["retry_allowed"]
                )
                response = await http.post(f"/orders/{order_id}/pay", json={"payment_method": CARD})
            assert response.status_code in (200, 201), response.text
            await order_reaches(http, order_id, "PAID", within=60)
            return order_id

    order_ids = await asyncio.gather(*(buy() for _ in range(12)))
    for order_id in order_ids:
        assert _intents_at_the_acquirer(kassa, order_id) == 1
        assert await _charges(kassa, order_id) == 1
    assert (await kassa.stock(sku)).on_hand == 8
    await ledger_balances(kassa)


async def test_acquirer_down_is_a_retryable_error_and_the_hold_keeps_running(
    kassa: Kassa, faults: str
) -> None:
    await set_faults(faults, api={"error_rate": 1.0})
    sku = await kassa.product(on_hand=1)
    customer = await kassa.customer()
    async with customer.http() as http:
        down = await pay_now(http, await customer.cart_with((sku, 1)), CARD)
        assert down.status_code == 503, down.text
        assert (
            down.json()["code"] == "payment_unavailable"
            and down.json()["order_status"] == "PENDING_PAYMENT"
        )
        assert (await kassa.stock(sku)).reserved == 1
        await clear_faults(faults)
        retried = await http.post(
            f"/orders/{down.json()['order_id']}/pay", json={"payment_method": CARD}
        )
        assert retried.status_code == 200, retried.text
        order = await order_reaches(http, down.json()["order_id"], "PAID")
        assert (
            order["payment"]["attempt"] == 1
        )  # the unanswered attempt was tried again, not counted
    assert _intents_at_the_acquirer(kassa, down.json()["order_id"]) == 1
