"""Inventory's promise under a real race: never oversold, all SKUs of an order or none."""

import asyncio
import random
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from activities import inventory
from activities.inventory import OutOfStock, StockLine
from kassa.db import autocommit_scope, session_scope
from kassa.errors import Conflict
from kassa.tables import utcnow
from tests.conftest import Kassa


async def _claim(kassa: Kassa, lines: list[StockLine]) -> bool:
    """One tap's claim, as the gateway takes it: one statement in autocommit."""
    try:
        async with autocommit_scope(kassa.engine) as autocommit:
            await inventory.claim(
                autocommit, str(uuid.uuid4()), uuid.uuid4(), lines, utcnow() + timedelta(minutes=15)
            )
        return True
    except OutOfStock:
        return False


async def test_flash_sale_through_the_functions_never_oversells(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=60)
    results = await asyncio.gather(*(_claim(kassa, [StockLine(sku, 1)]) for _ in range(250)))
    assert sum(results) == 60
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (60, 60)


async def test_multi_sku_orders_are_all_or_none_without_deadlocks(kassa: Kassa) -> None:
    scarce, plenty = await kassa.product(on_hand=50), await kassa.product(on_hand=80)

    def lines() -> list[StockLine]:
        # Each tap lists its SKUs in its own order: claim must still lock them in one order.
        both = [StockLine(scarce, 1), StockLine(plenty, 1)]
        random.shuffle(both)
        return both

    results = await asyncio.gather(*(_claim(kassa, lines()) for _ in range(200)))
    assert sum(results) == 50
    assert (await kassa.stock(scarce)).reserved == 50
    assert (await kassa.stock(plenty)).reserved == 50  # no order kept half its lines


async def test_claim_release_commit_are_idempotent(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    expires = utcnow() + timedelta(minutes=15)
    first_tap, second_tap = str(uuid.uuid4()), str(uuid.uuid4())
    async with autocommit_scope(kassa.engine) as autocommit:
        held = await inventory.claim(
            autocommit, first_tap, uuid.uuid4(), [StockLine(sku, 2)], expires
        )
        again = await inventory.claim(
            autocommit, first_tap, uuid.uuid4(), [StockLine(sku, 2)], expires
        )
    assert again.reservation_id == held.reservation_id and (await kassa.stock(sku)).reserved == 2

    for _ in range(2):
        async with session_scope(kassa.engine) as session:
            await inventory.release(session, held.reservation_id)
    assert (await kassa.stock(sku)).reserved == 0

    async with autocommit_scope(kassa.engine) as autocommit:
        sold = await inventory.claim(
            autocommit, second_tap, uuid.uuid4(), [StockLine(sku, 3)], expires
        )
    for _ in range(2):
        async with session_scope(kassa.engine) as session:
            await inventory.commit(session, sold.reservation_id)
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)

    async with session_scope(kassa.engine) as session:
        with pytest.raises(Conflict) as refused:  # a committed reservation is never released
            await inventory.release(session, sold.reservation_id)
        assert refused.value.code == "reservation_settled"
    assert (await kassa.stock(sku)).on_hand == 2


async def test_a_sold_out_sku_is_refused_without_waiting_for_its_row(kassa: Kassa) -> None:
    """A flash sale's losers do not queue for the hot row once it is sold out: their claim reads
    it sold out and asks for no lock, even while a rival holds the row."""
    sku = await kassa.product(on_hand=1)
    assert await _claim(kassa, [StockLine(sku, 1)])
    async with kassa.engine.connect() as rival:
        await rival.execute(
            text("SELECT 1 FROM stock WHERE sku = :sku FOR NO KEY UPDATE"), {"sku": sku}
        )
        # Waiting for the rival's lock would take until its rollback below: the timeout says so.
        assert not await asyncio.wait_for(_claim(kassa, [StockLine(sku, 1)]), timeout=10)
        await rival.rollback()
