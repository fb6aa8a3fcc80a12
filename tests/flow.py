"""Steps a customer takes, over HTTP, shared by the tests."""

import asyncio
import time

import httpx

CARD = {"type": "card", "token": "tok_success"}
CARD_3DS = {"type": "card", "token": "tok_3ds"}
CARD_DECLINED = {"type": "card", "token": "tok_decline"}


async def pay_now(http: httpx.AsyncClient, cart: dict, method: dict = CARD) -> httpx.Response:
    return await http.post("/checkout", json={"cart_id": cart["id"], "payment_method": method})


async def order_reaches(http: httpx.AsyncClient, order_id: str, *statuses: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
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


async def cart_reopened(http: httpx.AsyncClient, timeout: float = 30) -> dict:
    """The cart, once the ended order's workflow has given it back (a moment after the order ends)."""
    deadline = time.monotonic() + timeout
    while (cart := (await http.get("/cart")).json())["status"] != "open":
        assert time.monotonic() < deadline, "the cart was not given back"
        await asyncio.sleep(0.05)
    return cart
