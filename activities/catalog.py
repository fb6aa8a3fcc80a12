"""Catalog: products, the category tree, and the words search corrects typos against.

Pricing reads prices only through `products_by_sku` (never from the client)."""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import Conflict, Invalid, NotFound
from kassa.tables import Category, Product, SearchWord, Stock

WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script
VOCABULARY_WORD = (3, 64)  # shorter words are too ambiguous to correct to


@dataclass(frozen=True)
class ProductView:
    """A product as a search lists it."""

    sku: str
    title: str
    brand: str
    category: str  # slug of its leaf category
    price: int
    old_price: int | None
    currency: str
    vat_rate: int
    rating: float
    review_count: int
    image: str | None
    available: int


@dataclass(frozen=True)
class ProductDetails(ProductView):
    """A product page."""

    description: str
    attributes: dict[str, str]
    images: list[str]
    popularity: int
    max_per_order: int | None  # None: the cart's general limit
    created_at: datetime
    breadcrumbs: list[dict[str, str]]  # root first: [{"slug", "name"}…]


@dataclass(frozen=True)
class CategoryView:
    slug: str
    name: str
    name_en: str
    count: int  # products in this category and below it
    children: list["CategoryView"] = field(default_factory=list)


def normalized(words: str) -> str:
    return words.lower().replace("ё", "е")


def words_of(*texts: str) -> set[str]:
    low, high = VOCABULARY_WORD
    return {
        word
        for text_ in texts
        for word in WORD.findall(normalized(text_))
        if low <= len(word) <= high
    }


async def remember_words(session: AsyncSession, words: Iterable[str]) -> None:
    """Adds title and brand words to the typo vocabulary. Idempotent."""
    rows = [{"word": word} for word in sorted(set(words))]
    for start in range(0, len(rows), 10_000):
        await session.exec(
            insert(SearchWord).values(rows[start : start + 10_000]).on_conflict_do_nothing()
        )


async def get_product(session: AsyncSession, sku: str) -> ProductDetails:
    query = (
        select(Product, Stock)
        .join(Stock, col(Stock.sku) == col(Product.sku), isouter=True)
        .where(col(Product.sku) == sku)
    )
    row = (await session.exec(query)).one_or_none()
    if row is None:
        raise NotFound("unknown_sku", f"No product with SKU {sku!r}: check the catalog.")
    # An outer join: no stock row, none available (sqlmodel types the row as always having one).
    product, stock = cast("tuple[Product, Stock | None]", row)
    ancestry = (await category_ancestry(session, [sku]))[sku]
    names = await _category_names(session, ancestry)
    return ProductDetails(
        sku=product.sku,
        title=product.title,
        brand=product.brand,
        category=product.category,
        price=product.price,
        old_price=product.old_price,
        currency=product.currency,
        vat_rate=product.vat_rate,
        rating=product.rating,
        review_count=product.review_count,
        image=product.images[0] if product.images else None,
        available=stock.on_hand - stock.reserved if stock else 0,
        description=product.description,
        attributes=product.attributes,
        images=product.images,
        popularity=product.popularity,
        max_per_order=product.max_per_order,
        created_at=product.created_at,
        breadcrumbs=[{"slug": slug, "name": names[slug]} for slug in reversed(ancestry)],
    )


async def products_by_sku(session: AsyncSession, skus: list[str]) -> dict[str, Product]:
    rows = await session.exec(select(Product).where(col(Product.sku).in_(skus)))
    return {product.sku: product for product in rows}


ANCESTRY = text("""
WITH RECURSIVE up AS (
    SELECT p.sku, c.slug, c.parent, 0 AS depth
    FROM products p JOIN categories c ON c.slug = p.category
    WHERE p.sku = ANY(:skus)
  UNION ALL
    SELECT up.sku, c.slug, c.parent, up.depth + 1
    FROM up JOIN categories c ON c.slug = up.parent
)
SELECT sku, slug FROM up ORDER BY sku, depth
""")


async def category_ancestry(session: AsyncSession, skus: list[str]) -> dict[str, tuple[str, ...]]:
    """For each known SKU, the slugs of its category and all the categories above it, leaf first
    (promo scopes match any of them). Unknown SKUs are left out."""
    ancestry: dict[str, tuple[str, ...]] = {}
    for sku, slug in await session.exec(ANCESTRY, params={"skus": list(skus)}):  # type: ignore[call-overload]
        ancestry[sku] = (*ancestry.get(sku, ()), slug)
    return ancestry


async def _category_names(session: AsyncSession, slugs: Iterable[str]) -> dict[str, str]:
    rows = await session.exec(
        select(Category.slug, Category.name).where(col(Category.slug).in_(list(slugs)))
    )
    return dict(rows.all())


SUBTREE = text("""
WITH RECURSIVE down AS (
    SELECT slug FROM categories WHERE slug = :slug
  UNION ALL
    SELECT c.slug FROM categories c JOIN down ON c.parent = down.slug
)
SELECT slug FROM down
""")


async def subtree(session: AsyncSession, slug: str) -> list[str]:
    """The slug and those of every category below it; refused if there is no such category."""
    slugs = list((await session.exec(SUBTREE, params={"slug": slug})).scalars())  # type: ignore[call-overload]
    if not slugs:
        raise Invalid(
            "unknown_category", f"No category {slug!r}: GET /catalog/categories lists them."
        )
    return slugs


async def category_tree(session: AsyncSession) -> list[CategoryView]:
    """Every category, roots first, each with how many products it and its subtree hold."""
    categories = list(await session.exec(select(Category).order_by(col(Category.slug))))
    direct = dict(
        (
            await session.exec(
                select(Product.category, func.count()).group_by(col(Product.category))
            )
        ).all()
    )
    children: dict[str | None, list[Category]] = {}
    for category in categories:
        children.setdefault(category.parent, []).append(category)

    def node(category: Category) -> CategoryView:
        below = [node(child) for child in children.get(category.slug, [])]
        count = direct.get(category.slug, 0) + sum(child.count for child in below)
        return CategoryView(category.slug, category.name, category.name_en, count, below)

    return [node(root) for root in children.get(None, [])]


# --- what admins change ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductChange:
    """An admin's new product, or the fields to change (None: unchanged). Prices are kopecks."""

    title: str | None = None
    description: str | None = None
    brand: str | None = None
    category: str | None = None
    attributes: dict[str, str] | None = None
    price: int | None = None
    old_price: int | None = None
    vat_rate: int | None = None
    images: list[str] | None = None
    max_per_order: int | None = None
    end_discount: bool = False  # old_price back to none

    def given(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "end_discount"}
        given = {name: value for name, value in values.items() if value is not None}
        return given | {"old_price": None} if self.end_discount else given


async def create_product(
    session: AsyncSession, sku: str, product: ProductChange, on_hand: int
) -> ProductDetails:
    """Refused (409) if the SKU is taken: a repeated create changes nothing."""
    values = product.given()
    missing = [name for name in ("title", "brand", "category", "price") if name not in values]
    if missing:
        raise Invalid(
            "missing_fields", f"A new product needs {', '.join(missing)}.", fields=missing
        )
    await _check(session, values)
    created = await session.exec(
        insert(Product)
        .values(sku=sku, **values)
        .on_conflict_do_nothing()
        .returning(col(Product.sku))
    )
    if created.scalar_one_or_none() is None:
        raise Conflict(
            "sku_taken",
            f"A product with SKU {sku!r} exists: change it with PATCH /admin/products/{sku}.",
        )
    await session.exec(insert(Stock).values(sku=sku, on_hand=on_hand, reserved=0))
    await remember_words(session, words_of(values["title"], values["brand"]))
    return await get_product(session, sku)


async def update_product(session: AsyncSession, sku: str, change: ProductChange) -> ProductDetails:
    product = await session.get(Product, sku, with_for_update=True)
    if product is None:
        raise NotFound(
            "unknown_sku", f"No product with SKU {sku!r}: create it with POST /admin/products."
        )
    values = change.given()
    await _check(session, {"price": product.price, "old_price": product.old_price} | values)
    for name, value in values.items():
        setattr(product, name, value)
    session.add(product)
    await session.flush()
    await remember_words(session, words_of(product.title, product.brand))
    return await get_product(session, sku)


async def _check(session: AsyncSession, values: dict[str, Any]) -> None:
    old_price = values.get("old_price")
    if old_price is not None and old_price <= values["price"]:
        raise Invalid(
            "invalid_old_price", "old_price is the price before a discount: it must be above price."
        )
    if "category" in values:
        category = await session.get(Category, values["category"])
        if category is None:
            raise Invalid(
                "unknown_category",
                f"No category {values['category']!r}: GET /catalog/categories lists them.",
            )
        has_children = (
            await session.exec(
                select(Category.slug).where(col(Category.parent) == category.slug).limit(1)
            )
        ).first()
        if has_children:
            raise Invalid(
                "category_not_leaf",
                f"{category.slug!r} has subcategories: put the product in one of them.",
            )
