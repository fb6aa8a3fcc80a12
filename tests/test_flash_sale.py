"""Many buyers, few units, all through POST /checkout: exactly the units are sold, none oversold."""

import asyncio
import uuid

from argon2 import PasswordHasher
from sqlmodel import col, func, select

from kassa.db import session_scope
from kassa.tables import Order, Payment, Reservation, User
from tests.conftest import PASSWORD, Kassa
from tests.flow import CARD, CARD_3DS, pay_now

BUYERS = 200
UNITS = 40


async def _buyers(kassa: Kassa, count: int) -> list[str]:
    """Access tokens of `count` new customers (one password hash for all: argon2 is slow on
    purpose)."""
    password_hash = PasswordHasher().hash(PASSWORD)
    users = [
        User(email=f"buyer-{uuid.uuid4().hex[:12]}@example.com", password_hash=password_hash)
        for _ in range(count)
    ]
    async with session_scope(kassa.engine) as session:
        session.add_all(users)
    return list(await asyncio.gather(*(kassa.token_for(user) for user in users)))


async def _cart(kassa: Kassa, token: str, sku: str) -> dict:
    async with kassa.http(token) as http:
        response = await http.post("/cart/items", json={"sku": sku, "quantity": 1})
        assert response.status_code == 200, response.text
        return response.json()


async def _buy(kassa: Kassa, token: str, cart: dict) -> int:
    async with kassa.http(token) as http:
        response = await pay_now(http, cart, CARD)
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "out_of_stock"
        return response.status_code


async def test_flash_sale_through_pay_now_sells_exactly_the_units(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=UNITS)
    tokens = await _buyers(kassa, BUYERS)
    # Every cart filled before the sale opens: once sold out, a cart cannot take the SKU any more.
    carts = await asyncio.gather(*(_cart(kassa, token, sku) for token in tokens))
    statuses = await asyncio.gather(
        *(_buy(kassa, token, cart) for token, cart in zip(tokens, carts, strict=True))
    )
    assert statuses.count(201) == UNITS
    assert statuses.count(409) == BUYERS - UNITS
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (0, 0)
    async with session_scope(kassa.engine) as session:
        paid = await session.exec(
            select(func.count())
            .select_from(Order)
            .join(Reservation, col(Reservation.order_id) == col(Order.id))
            .where(col(Order.status) == "PAID", col(Reservation.status) == "committed")
        )
        assert (
            paid.one() >= UNITS
        )  # other tests' paid orders count too; ours are checked by stock above


async def test_double_tap_makes_one_order_one_reservation_one_intent(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with customer.http() as http:
        first, second = await asyncio.gather(
            pay_now(http, cart, CARD_3DS), pay_now(http, cart, CARD_3DS)
        )
    assert first.status_code in (200, 201) and second.status_code in (200, 201), (
        first.text,
        second.text,
    )
    order_id = first.json()["order_id"]
    assert second.json()["order_id"] == order_id
    assert second.json()["payment_url"] == first.json()["payment_url"]
    async with session_scope(kassa.engine) as session:
        orders = (
            await session.exec(select(Order).where(Order.cart_id == uuid.UUID(cart["id"])))
        ).all()
        assert [str(order.id) for order in orders] == [order_id]
        reservations = (
            await session.exec(select(Reservation).where(Reservation.order_id == orders[0].id))
        ).all()
        payments = (
            await session.exec(select(Payment).where(Payment.order_id == orders[0].id))
        ).all()
    assert len(reservations) == 1 and len(payments) == 1
    assert (await kassa.stock(sku)).reserved == 2
