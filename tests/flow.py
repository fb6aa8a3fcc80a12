"""Steps a customer takes, over HTTP, shared by the tests; and the gateway's own placement, for
the tests that start a checkout run themselves (on another task queue, or on the time-skipping
server, where update-with-start does not work)."""

import asyncio
import time
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.placement import PlaceOrder, claim_stock, place_order
from api.workflow_calls import checkout_input
from kassa.db import autocommit_scope
from workflows.checkout import CheckoutInput, PaymentMethod, checkout_workflow_id

CARD = {"type": "card", "token": "tok_success"}
CARD_3DS = {"type": "card", "token": "tok_3ds"}
CARD_DECLINED = {"type": "card", "token": "tok_decline"}


async def pay_now(http: httpx.AsyncClient, cart: dict, method: dict = CARD) -> httpx.Response:
    return await http.post("/checkout", json={"cart_id": cart["id"], "payment_method": method})


async def order_reaches(
    http: httpx.AsyncClient, order_id: str, *statuses: str, within: float = 30
) -> dict:
    deadline = time.monotonic() + within
    while True:
        order = (await http.get(f"/orders/{order_id}")).json()
        if order["status"] in statuses:
            return order
        assert time.monotonic() < deadline, f"order stayed {order['status']}, expected {statuses}"
        await asyncio.sleep(0.1)


async def authenticate_3ds(payment_url: str, approve: bool) -> httpx.Response:
    """What the customer does in the bank's page: press Approve or Decline (a real form POST)."""
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(payment_url)
        assert page.status_code == 200 and "Approve" in page.text and "Decline" in page.text
        return await browser.post(f"{payment_url}/{'approve' if approve else 'decline'}")


async def cart_reopened(http: httpx.AsyncClient, within: float = 30) -> dict:
    """The cart, once the ended order's workflow has given it back (a moment after the order
    ends)."""
    deadline = time.monotonic() + within
    while (cart := (await http.get("/cart")).json())["status"] != "open":
        assert time.monotonic() < deadline, "the cart was not given back"
        await asyncio.sleep(0.05)
    return cart


async def placed_checkout(
    engine: AsyncEngine,
    customer_id: uuid.UUID,
    cart: dict,
    method: dict,
    hold_seconds: int,
    grace_seconds: int = 0,
) -> tuple[str, CheckoutInput]:
    """The cart placed as Pay Now places it (stock claimed, order PENDING_PAYMENT): the run's id
    and input, to start it as the gateway would."""
    cart_id = uuid.UUID(cart["id"])
    workflow_id = checkout_workflow_id(cart_id, cart["version"])
    request = PlaceOrder(
        uuid.uuid4(), workflow_id, customer_id, cart_id, cart["version"], None, 0, hold_seconds
    )
    async with autocommit_scope(engine) as autocommit:
        held = await claim_stock(autocommit, request)
    placement = await place_order(engine, request, held)
    return workflow_id, checkout_input(placement.order, PaymentMethod(**method), grace_seconds)
