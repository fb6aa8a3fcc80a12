"""Catalog: products and how many of each can still be bought."""

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import NotFound
from kassa.tables import Product, Stock


@dataclass(frozen=True)
class ProductView:
    sku: str
    title: str
    brand: str
    category: str
    price: int
    currency: str
    available: int


@dataclass(frozen=True)
class ProductPage:
    items: list[ProductView]
    next_cursor: str | None


def _view(product: Product, stock: Stock | None) -> ProductView:
    available = stock.on_hand - stock.reserved if stock else 0
    return ProductView(
        sku=product.sku,
        title=product.title,
        brand=product.brand,
        category=product.category,
        price=product.price,
        currency=product.currency,
        available=available,
    )


def _with_stock():  # type: ignore[no-untyped-def]
    return select(Product, Stock).join(Stock, col(Stock.sku) == col(Product.sku), isouter=True)


async def list_products(session: AsyncSession, limit: int = 20, cursor: str | None = None) -> ProductPage:
    """Products in SKU order; `cursor` is the last SKU of the previous page."""
    query = _with_stock().order_by(col(Product.sku)).limit(limit + 1)
    if cursor:
        query = query.where(col(Product.sku) > cursor)
    rows = (await session.exec(query)).all()
    items = [_view(product, stock) for product, stock in rows[:limit]]
    return ProductPage(items=items, next_cursor=items[-1].sku if len(rows) > limit else None)


async def get_product(session: AsyncSession, sku: str) -> ProductView:
    row = (await session.exec(_with_stock().where(col(Product.sku) == sku))).one_or_none()
    if row is None:
        raise NotFound("unknown_sku", f"No product with SKU {sku!r}: check the catalog.")
    return _view(*row)


async def products_by_sku(session: AsyncSession, skus: list[str]) -> dict[str, Product]:
    rows = await session.exec(select(Product).where(col(Product.sku).in_(skus)))
    return {product.sku: product for product in rows}


async def category_ancestry(session: AsyncSession, skus: list[str]) -> dict[str, tuple[str, ...]]:
    """Each SKU's category and its ancestors, leaf first: what a promo's category scope matches."""
    rows = await session.exec(select(Product.sku, Product.category).where(col(Product.sku).in_(skus)))
    return {sku: (category,) for sku, category in rows}
