"""Inventory's promise under a real race: never oversold, all SKUs of an order or none."""

import asyncio
import random
import uuid
from datetime import timedelta

from activities import inventory
from activities.inventory import OutOfStock, StockLine
from kassa.db import session_scope
from kassa.errors import Conflict
from kassa.tables import Cart, Order, utcnow
from tests.conftest import Kassa


async def _orders(kassa: Kassa, count: int) -> list[uuid.UUID]:
    """Order rows for reservations to belong to (one customer, one cart version each)."""
    customer = await kassa.customer()
    cart_id = uuid.uuid4()
    order_ids = [uuid.uuid4() for _ in range(count)]
    async with session_scope(kassa.engine) as session:
        session.add(Cart(id=cart_id, user_id=customer.user.id, status="checked_out"))
        await session.flush()
        session.add_all(
            Order(id=order_id, user_id=customer.user.id, cart_id=cart_id, cart_version=version, workflow_id="test",
                  subtotal=0, vat=0, total=0, currency="RUB")
            for version, order_id in enumerate(order_ids)
        )
    return order_ids


async def _reserve(kassa: Kassa, order_id: uuid.UUID, lines: list[StockLine]) -> bool:
    try:
        async with session_scope(kassa.engine) as session:
            await inventory.reserve(session, order_id, lines, utcnow() + timedelta(minutes=15))
        return True
    except OutOfStock:
        return False


async def test_flash_sale_through_the_functions_never_oversells(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=60)
    order_ids = await _orders(kassa, 250)
    results = await asyncio.gather(*(_reserve(kassa, order_id, [StockLine(sku, 1)]) for order_id in order_ids))
    assert sum(results) == 60
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (60, 60)


async def test_multi_sku_orders_are_all_or_none_without_deadlocks(kassa: Kassa) -> None:
    scarce, plenty = await kassa.product(on_hand=50), await kassa.product(on_hand=80)
    order_ids = await _orders(kassa, 200)

    def lines() -> list[StockLine]:
        # Each order lists its SKUs in its own order: reserve must still lock them in one order.
        both = [StockLine(scarce, 1), StockLine(plenty, 1)]
        random.shuffle(both)
        return both

    results = await asyncio.gather(*(_reserve(kassa, order_id, lines()) for order_id in order_ids))
    assert sum(results) == 50
    assert (await kassa.stock(scarce)).reserved == 50
    assert (await kassa.stock(plenty)).reserved == 50  # no order kept half its lines


async def test_reserve_release_commit_are_idempotent(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    first, second = await _orders(kassa, 2)
    expires = utcnow() + timedelta(minutes=15)
    async with session_scope(kassa.engine) as session:
        held = await inventory.reserve(session, first, [StockLine(sku, 2)], expires)
    async with session_scope(kassa.engine) as session:
        again = await inventory.reserve(session, first, [StockLine(sku, 2)], expires)
    assert again.id == held.id and (await kassa.stock(sku)).reserved == 2

    for _ in range(2):
        async with session_scope(kassa.engine) as session:
            await inventory.release(session, held.id)
    assert (await kassa.stock(sku)).reserved == 0

    async with session_scope(kassa.engine) as session:
        sold = await inventory.reserve(session, second, [StockLine(sku, 3)], expires)
    for _ in range(2):
        async with session_scope(kassa.engine) as session:
            await inventory.commit(session, sold.id)
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)

    async with session_scope(kassa.engine) as session:
        try:
            await inventory.release(session, sold.id)
            raise AssertionError("a committed reservation must not be released")
        except Conflict as refused:
            assert refused.code == "reservation_settled"
    assert (await kassa.stock(sku)).on_hand == 2
