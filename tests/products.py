"""A product with stock for a test, in the "test" category (made on first use)."""

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from kassa.db import session_scope
from kassa.tables import Category, Product, Stock


async def stocked_product(engine: AsyncEngine, on_hand: int, price: int) -> str:
    sku = f"SKU-{uuid.uuid4().hex[:10].upper()}"
    async with session_scope(engine) as session:
        await session.exec(
            insert(Category)
            .values(slug="test", name="Тест", name_en="Test")
            .on_conflict_do_nothing()
        )
        session.add(
            Product(sku=sku, title=f"Test item {sku}", brand="Acme", category="test", price=price)
        )
        await session.flush()
        session.add(Stock(sku=sku, on_hand=on_hand, reserved=0))
    return sku
