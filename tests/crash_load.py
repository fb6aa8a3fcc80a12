"""Customers who keep tapping Pay Now through crashes, as the mobile app does: a tap that got no
answer (the api was down, the connection cut) is sent again for the same cart, and the order
is followed to its end. Shared by the crash tests and the benchmark."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import httpx
from sqlmodel import col, select

from kassa.db import session_scope
from kassa.statuses import ENDED
from kassa.tables import Order
from tests.flow import CARD, CARD_3DS
from tests.stack import Stack

RETRY_PAUSE = 0.5  # seconds between taps while a part is down


@dataclass
class Shopper:
    headers: dict[str, str]
    cart: dict
    method: dict[str, str]
    order_id: str | None = None
    answer: str = ""  # what Pay Now finally said: held, paid, out_of_stock…
    taps: int = 0


async def shoppers_with_carts(
    stack: Stack,
    http: httpx.AsyncClient,
    sku: str,
    count: int,
    method: dict[str, str] | None = None,
) -> list[Shopper]:
    """`count` customers, each with one unit of `sku` in the cart, paying with `method` (unset:
    every third with 3-D Secure)."""
    tokens = await stack.customers(count)
    slots = asyncio.Semaphore(64)

    async def with_cart(index: int, token: str) -> Shopper:
        headers = {"Authorization": f"Bearer {token}"}
        async with slots:
            response = await http.post(
                "/cart/items", json={"sku": sku, "quantity": 1}, headers=headers
            )
        assert response.status_code == 200, response.text
        return Shopper(headers, response.json(), method or (CARD_3DS if index % 3 == 0 else CARD))

    return list(
        await asyncio.gather(*(with_cart(index, token) for index, token in enumerate(tokens)))
    )


async def answered(
    send: Callable[[], Awaitable[httpx.Response]], deadline: float
) -> httpx.Response:
    """`send()` until it gets an answer that is not an outage (no connection, 5xx other than the
    bank's 503, which the caller handles)."""
    while True:
        try:
            response = await send()
            if response.status_code < 500 or response.json().get("code") == "payment_unavailable":
                return response
        except (httpx.TransportError, ValueError):
            pass
        assert time.monotonic() < deadline, "no answer before the deadline"
        await asyncio.sleep(RETRY_PAUSE)


async def check_out(http: httpx.AsyncClient, shopper: Shopper, deadline: float) -> None:
    """Pay Now, then what the customer does next: approve 3-D Secure, or try again if the bank
    did not answer. Ends when the order has its answer (its final state is awaited separately)."""
    body = {"cart_id": shopper.cart["id"], "payment_method": shopper.method}

    async def tap() -> httpx.Response:
        shopper.taps += 1
        return await http.post("/checkout", json=body, headers=shopper.headers)

    response = await answered(tap, deadline)
    answer = response.json()
    shopper.order_id = answer.get("order_id")
    if response.status_code == 409:
        shopper.answer = answer["code"]
        return
    assert response.status_code in (200, 201, 503), response.text
    while answer.get("code") == "payment_unavailable":
        assert time.monotonic() < deadline, (
            f"the bank stayed unavailable for order {shopper.order_id}"
        )
        await asyncio.sleep(RETRY_PAUSE)
        pay = partial(
            http.post,
            f"/orders/{shopper.order_id}/pay",
            json={"payment_method": shopper.method},
            headers=shopper.headers,
        )
        response = await answered(pay, deadline)
        answer = response.json()
    shopper.answer = "held"
    if answer.get("payment_url"):
        await answered(lambda: http.post(f"{answer['payment_url']}/approve"), deadline)


async def check_out_all(stack: Stack, shoppers: list[Shopper], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=1)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as http:
        await asyncio.gather(*(check_out(http, shopper, deadline) for shopper in shoppers))


async def final_states(stack: Stack, shoppers: list[Shopper], seconds: float) -> dict[str, int]:
    """Waits until every shopper's order is in a final state; the count of each. A shopper told
    out of stock may have none (the gateway refused before the checkout started)."""
    carts = [uuid.UUID(shopper.cart["id"]) for shopper in shoppers]
    needed = {shopper.cart["id"] for shopper in shoppers if shopper.answer != "out_of_stock"}
    deadline = time.monotonic() + seconds
    while True:
        async with session_scope(stack.engine) as session:
            found = list(
                await session.exec(
                    select(Order.cart_id, Order.id, Order.status).where(
                        col(Order.cart_id).in_(carts)
                    )
                )
            )
        statuses = [status for _, _, status in found]
        if needed <= {str(cart_id) for cart_id, _, _ in found} and all(
            status in ENDED for status in statuses
        ):
            break
        assert time.monotonic() < deadline, (
            f"{len(found)} orders for {len(needed)} carts after {seconds} s: {sorted(statuses)}"
        )
        await asyncio.sleep(0.5)
    order_of_cart = {str(cart_id): str(order_id) for cart_id, order_id, _ in found}
    for shopper in shoppers:
        # A tap sent again after a crash got the order of the first, never a second one.
        assert shopper.order_id in (None, order_of_cart.get(shopper.cart["id"])), (
            shopper,
            order_of_cart.get(shopper.cart["id"]),
        )
    return {status: statuses.count(status) for status in set(statuses)}
