"""The 15-minute hold, on Temporal's time-skipping test server: real PostgreSQL, real acquirer.

The gateway signals workflows on the dev server, so webhooks never reach these runs: exactly
the "webhook lost" case that the status check before expiry must cover.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from kassa.db import session_scope
from kassa.tables import Cart, Order, utcnow
from tests.conftest import Customer, Kassa, binary
from tests.flow import CARD_3DS, authenticate_3ds, placed_checkout
from tests.test_replay import record
from worker import build_worker
from workflows.checkout import SEARCH_ATTRIBUTES, CheckoutWorkflow

HOLD_SECONDS = 900
GRACE_SECONDS = 120


@pytest.fixture(scope="module")
async def time_skipping(kassa: Kassa) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    kinds = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in SEARCH_ATTRIBUTES
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace="default", search_attributes=kinds)
    )
    async with build_worker(env.client, kassa.settings, kassa.activities, kassa.money):
        yield env
    await env.shutdown()


async def _checkout_3ds(
    env: WorkflowEnvironment, kassa: Kassa
) -> tuple[Customer, str, WorkflowHandle, str]:
    """Placed as the gateway places it, then start + update (update-with-start does not work on
    the time-skipping server)."""
    sku = await kassa.product(on_hand=4)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 3))
    # The gateway's clock and Temporal's agree, but this server's runs ahead once it has skipped
    # time: the hold is placed to end HOLD_SECONDS after the server's now.
    ahead = (await env.get_current_time() - utcnow()).total_seconds()
    workflow_id, checkout = await placed_checkout(
        kassa.engine, customer.user.id, cart, CARD_3DS, HOLD_SECONDS + round(ahead), GRACE_SECONDS
    )
    handle = await env.client.start_workflow(
        CheckoutWorkflow.run, checkout, id=workflow_id, task_queue=kassa.settings.task_queue
    )
    state = await handle.execute_update(CheckoutWorkflow.pay_now)
    assert (
        state.status == "PENDING_PAYMENT"
        and state.payment
        and state.payment.status == "requires_action"
    )
    assert (await kassa.stock(sku)).reserved == 3
    return customer, sku, handle, state.payment.payment_url or ""


async def test_unpaid_hold_gets_one_grace_then_expires_releases_stock_and_cancels_the_intent(
    time_skipping: WorkflowEnvironment, kassa: Kassa
) -> None:
    customer, sku, handle, payment_url = await _checkout_3ds(time_skipping, kassa)
    result = await handle.result()  # time skips the 15 minutes
    record(await handle.fetch_history())
    assert (result.status, result.reason) == ("EXPIRED", "hold_expired")
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (4, 0)
    async with customer.http() as http:
        order = (await http.get(f"/orders/{result.order_id}")).json()
        assert order["status"] == "EXPIRED" and order["payment"]["status"] == "canceled"
        # The customer was still in 3-D Secure at the deadline: the hold was extended once.
        assert [e["reason"] for e in order["events"]] == [
            None,
            None,
            "hold_extended",
            "hold_expired",
        ]
    description = await handle.describe()
    assert description.close_time is not None
    held_for = (description.close_time - description.start_time).total_seconds()
    # The hold began when the gateway placed the order, a moment before the run started.
    assert HOLD_SECONDS + GRACE_SECONDS - 5 <= held_for < HOLD_SECONDS + GRACE_SECONDS + 60
    async with customer.http() as http:
        cart = (await http.get("/cart")).json()
        assert cart["status"] == "open" and cart["items"][0]["quantity"] == 3
    # The bank no longer offers the cancelled intent, and pressing Approve anyway charges nothing.
    async with httpx.AsyncClient() as browser:
        assert "Approve" not in (await browser.get(payment_url)).text
        await browser.post(f"{payment_url}/approve")
    async with kassa.http(customer.token) as http:
        assert (await http.get(f"/orders/{result.order_id}")).json()["payment"][
            "status"
        ] == "canceled"


async def test_paid_with_lost_webhook_is_found_by_the_status_check(
    time_skipping: WorkflowEnvironment, kassa: Kassa
) -> None:
    _, sku, handle, payment_url = await _checkout_3ds(time_skipping, kassa)
    # The bank's webhook goes nowhere this workflow hears.
    await authenticate_3ds(payment_url, approve=True)
    result = await handle.result()
    assert result.status == "PAID"
    description = await handle.describe()
    assert description.close_time is not None
    # Found by the status checks while waiting, well before the hold's end.
    assert (description.close_time - description.start_time).total_seconds() < 60
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (1, 0)
    async with session_scope(kassa.engine) as session:
        order = await session.get_one(Order, result.order_id)
        cart = await session.get_one(Cart, order.cart_id)
    assert order.status == "PAID" and cart.status == "checked_out"
