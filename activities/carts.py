"""Carts: one open cart per customer, every change bumps its version.

A cart is `checked_out` from Pay Now until its order ends: locked while the order is being paid,
reopened with a new version if the order fails, replaced by a fresh cart once the order is paid.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import loyalty, promos
from activities.catalog import category_ancestry, products_by_sku
from activities.loyalty import PointsUnavailable
from activities.pricing import (
    PricedBasket,
    PricedLine,
    Totals,
    basket_lines,
    points_cap,
    price_basket,
)
from kassa.errors import Conflict, Invalid, NotFound
from kassa.statuses import OrderStatus
from kassa.tables import Cart, CartItem, Order, Product, PromoCode, Stock, utcnow

MAX_LINE_QUANTITY = 99
# An order of the cart's version in one of these bought it. In any other it has not: it is being
# paid, or it ended unpaid and its workflow is about to give the cart back (reopen_cart).
BOUGHT = frozenset({OrderStatus.PAID, OrderStatus.REFUNDED})


@dataclass(frozen=True)
class CartLine(PricedLine):
    available: int  # can be bought now
    out_of_stock: bool  # fewer available than the cart holds: Pay Now would be refused
    max_quantity: int  # the most one order may take of this SKU
    price_when_added: int | None  # the unit price the customer last saw for this line
    price_changed: bool  # unit_price (now) differs from price_when_added: tell the customer


@dataclass(frozen=True)
class CartPromo:
    code: str
    # applied, or why it gives nothing: min_order_not_met | not_in_scope | expired | used_up …
    status: str
    discount: int


@dataclass(frozen=True)
class CartView(Totals):
    id: uuid.UUID
    version: int
    status: str
    items: list[CartLine]
    promo: CartPromo | None
    points_available: int  # the customer's loyalty points not held by an unpaid order
    points_max: int  # the most points this cart can take now (30 % cap, and what is available)


@dataclass(frozen=True)
class PricedCart:
    """A cart priced as its order would be: the same function for the view and for create_order."""

    basket: PricedBasket
    products: dict[str, Product]
    promo: PromoCode | None
    promo_status: str | None  # applied, or why the promo gives nothing


def quantity_limit(product: Product) -> int:
    return min(MAX_LINE_QUANTITY, product.max_per_order or MAX_LINE_QUANTITY)


async def _latest_cart(session: AsyncSession, user_id: uuid.UUID) -> Cart | None:
    query = (
        select(Cart).where(Cart.user_id == user_id).order_by(col(Cart.updated_at).desc()).limit(1)
    )
    return (await session.exec(query)).one_or_none()


async def current_cart(session: AsyncSession, user_id: uuid.UUID) -> Cart:
    """The customer's open cart, or the one locked by a checkout still running; a new one after a
    paid order."""
    cart = await _latest_cart(session, user_id)
    if cart is not None and cart.status == "checked_out":
        # A checked-out cart whose order of this version is paid (or which a late payment bought
        # after it was reopened) was bought: the customer starts a new one. One whose order ended
        # unpaid stays until its workflow reopens it, a moment later: a new cart made meanwhile
        # would leave the customer's items behind and the reopen with nowhere to go.
        not_bought = await session.exec(
            select(Order.id)
            .where(
                Order.cart_id == cart.id,
                Order.cart_version == cart.version,
                col(Order.status).not_in(BOUGHT),
            )
            .limit(1)
        )
        if not_bought.one_or_none() is None:
            cart = None
    if cart is None:
        # Two first requests may race here: the partial unique index lets one cart win.
        await session.exec(
            insert(Cart)
            .values(id=uuid.uuid4(), user_id=user_id, version=1, status="open", updated_at=utcnow())
            .on_conflict_do_nothing()
        )
        cart = await _latest_cart(session, user_id)
        assert cart is not None
    return cart


async def owned_cart(session: AsyncSession, user_id: uuid.UUID, cart_id: uuid.UUID) -> Cart:
    """The cart if it belongs to this customer; 404 otherwise, so a stranger learns nothing."""
    cart = await session.get(Cart, cart_id)
    if cart is None or cart.user_id != user_id:
        raise NotFound("cart_not_found", "No such cart: GET /cart shows yours.")
    return cart


async def cart_quantities(session: AsyncSession, cart_id: uuid.UUID) -> dict[str, int]:
    items = await session.exec(select(CartItem).where(CartItem.cart_id == cart_id))
    return {item.sku: item.quantity for item in items}


async def price_cart(session: AsyncSession, cart: Cart, redeem_points: int = 0) -> PricedCart:
    """The cart at the catalog's prices now, with its promo code if the customer may use it now,
    and `redeem_points` (at most what the customer has: PointsUnavailable otherwise)."""
    quantities = await cart_quantities(session, cart.id)
    skus = list(quantities)
    products = await products_by_sku(session, skus)
    promo = await session.get(PromoCode, cart.promo_code) if cart.promo_code else None
    # The ancestry serves only a promo's category scope: no recursive query for other carts.
    ancestry = (
        await category_ancestry(session, skus) if promo is not None and promo.categories else {}
    )
    lines = basket_lines(quantities, products, ancestry)
    unavailable = None
    # A cart being paid for has its use held by its order.
    if promo is not None and cart.status == "open":
        unavailable = await promos.unavailable_reason(session, promo, cart.user_id, utcnow())
    if redeem_points and redeem_points > (have := await loyalty.available(session, cart.user_id)):
        raise PointsUnavailable(redeem_points, have)
    basket = price_basket(
        lines, promos.terms(promo) if promo and unavailable is None else None, redeem_points
    )
    return PricedCart(basket, products, promo, unavailable or basket.promo_status)


async def view_cart(session: AsyncSession, cart: Cart, redeem_points: int = 0) -> CartView:
    """The cart as the customer should see it: priced now, with what changed since they looked."""
    priced = await price_cart(session, cart, redeem_points)
    basket = priced.basket
    items = {
        item.sku: item
        for item in await session.exec(select(CartItem).where(CartItem.cart_id == cart.id))
    }
    stock = {
        s.sku: s for s in await session.exec(select(Stock).where(col(Stock.sku).in_(list(items))))
    }
    lines = []
    for line in basket.lines:
        seen_price = items[line.sku].price_when_added
        level = stock.get(line.sku)
        available = level.on_hand - level.reserved if level else 0
        lines.append(
            CartLine(
                **vars(line),
                available=available,
                # A cart being paid for holds its own stock: only an open cart can run short.
                out_of_stock=cart.status == "open" and available < line.quantity,
                max_quantity=quantity_limit(priced.products[line.sku]),
                price_when_added=seen_price,
                price_changed=seen_price is not None and seen_price != line.unit_price,
            )
        )
    points_available = await loyalty.available(session, cart.user_id)
    return CartView(
        id=cart.id,
        version=cart.version,
        status=cart.status,
        items=lines,
        promo=CartPromo(priced.promo.code, priced.promo_status or "", basket.discount)
        if priced.promo
        else None,
        points_available=points_available,
        points_max=min(points_available, points_cap(basket.subtotal - basket.discount)),
        **Totals.of(basket),
    )


def check_quantity(quantity: int, product: Product) -> None:
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise Invalid("invalid_quantity", f"Quantity must be from 1 to {MAX_LINE_QUANTITY}.")
    limit = quantity_limit(product)
    if quantity > limit:
        raise Invalid(
            "quantity_limit", f"One order may take at most {limit} of {product.sku}.", limit=limit
        )


async def _open_cart_for_change(session: AsyncSession, user_id: uuid.UUID, **changes: Any) -> Cart:
    cart = await current_cart(session, user_id)
    # Lock the row and bump the version in one statement: concurrent edits serialize here.
    bumped: Cart | None = (
        await session.exec(
            update(Cart)
            .where(col(Cart.id) == cart.id, col(Cart.status) == "open")
            .values(version=col(Cart.version) + 1, updated_at=utcnow(), **changes)
            .returning(Cart)
        )
    ).scalar_one_or_none()
    if bumped is None:
        raise Conflict(
            "cart_locked", "This cart is being paid for: finish or cancel that order to change it."
        )
    return bumped


async def _product_and_available(session: AsyncSession, sku: str) -> tuple[Product, int]:
    product, stock = await session.get(Product, sku), await session.get(Stock, sku)
    if product is None or stock is None:
        raise NotFound("unknown_sku", f"No product with SKU {sku!r}: check the catalog.")
    return product, stock.on_hand - stock.reserved


async def set_item(
    session: AsyncSession, user_id: uuid.UUID, sku: str, quantity: int, add: bool
) -> CartView:
    """Put `quantity` of a SKU in the cart (`add`: on top of what is there). The line's price as
    shown now is what the customer has seen: a later change of it is a notice."""
    product, available = await _product_and_available(session, sku)
    check_quantity(quantity, product)
    cart = await _open_cart_for_change(session, user_id)
    in_cart = (await cart_quantities(session, cart.id)).get(sku)
    if add:
        quantity += in_cart or 0
        check_quantity(quantity, product)
    elif in_cart is None:
        raise NotFound(
            "item_not_in_cart", f"{sku} is not in the cart: add it with POST /cart/items."
        )
    if quantity > available:
        raise Conflict(
            "not_enough_stock", f"Only {available} of {sku} can be bought now.", available=available
        )
    seen = {"quantity": quantity, "price_when_added": product.price}
    await session.exec(
        insert(CartItem)
        .values(cart_id=cart.id, sku=sku, added_at=utcnow(), **seen)
        .on_conflict_do_update(index_elements=["cart_id", "sku"], set_=seen)
    )
    return await view_cart(session, cart)


async def apply_promo(session: AsyncSession, user_id: uuid.UUID, code: str) -> CartView:
    """Put a promo code on the cart (replacing any other). Refused if the customer cannot use it
    now; one that does not apply to the cart yet (minimum order, scope) stays, at zero discount."""
    promo = await promos.find(session, code)
    reason = await promos.unavailable_reason(session, promo, user_id, utcnow())
    if reason is not None:
        raise promos.PromoUnavailable(promo.code, reason)
    return await view_cart(
        session, await _open_cart_for_change(session, user_id, promo_code=promo.code)
    )


async def remove_promo(session: AsyncSession, user_id: uuid.UUID) -> CartView:
    if (await current_cart(session, user_id)).promo_code is None:
        raise NotFound("promo_not_on_cart", "The cart has no promo code.")
    return await view_cart(session, await _open_cart_for_change(session, user_id, promo_code=None))


async def remove_item(session: AsyncSession, user_id: uuid.UUID, sku: str) -> CartView:
    cart = await _open_cart_for_change(session, user_id)
    removed = await session.exec(
        delete(CartItem)
        .where(col(CartItem.cart_id) == cart.id, col(CartItem.sku) == sku)
        .returning(col(CartItem.sku))
    )
    if removed.scalar_one_or_none() is None:
        raise NotFound("item_not_in_cart", f"{sku} is not in the cart.")
    return await view_cart(session, cart)


async def check_out(session: AsyncSession, cart_id: uuid.UUID, version: int) -> bool:
    """Lock the cart at this version for its order; False if it changed or is locked already."""
    locked = await session.exec(
        update(Cart)
        .where(col(Cart.id) == cart_id, col(Cart.version) == version, col(Cart.status) == "open")
        .values(status="checked_out", updated_at=utcnow())
        .returning(col(Cart.id))
    )
    return locked.scalar_one_or_none() is not None


async def reopen(session: AsyncSession, cart_id: uuid.UUID, version: int) -> int:
    """A failed order gives the cart back with a new version (so the next Pay Now is a new
    checkout).

    Idempotent: once reopened, a repeated call finds a newer version and changes nothing.
    """
    reopened: int | None = (
        await session.exec(
            update(Cart)
            .where(
                col(Cart.id) == cart_id,
                col(Cart.version) == version,
                col(Cart.status) == "checked_out",
            )
            .values(status="open", version=version + 1, updated_at=utcnow())
            .returning(col(Cart.version))
        )
    ).scalar_one_or_none()
    if reopened is not None:
        return reopened
    return (await session.get_one(Cart, cart_id, populate_existing=True)).version
