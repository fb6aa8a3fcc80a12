"""Carts: one open cart per customer, every change bumps its version.

A cart is `checked_out` from Pay Now until its order ends: locked while the order is being paid,
reopened with a new version if the order fails, replaced by a fresh cart once the order is paid.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.catalog import products_by_sku
from activities.pricing import PricedBasket, PricedLine, Totals, price_basket
from kassa.errors import Conflict, Invalid, NotFound
from kassa.tables import Cart, CartItem, Order, Stock, utcnow

MAX_LINE_QUANTITY = 99
IN_PROGRESS_STATUSES = ("CREATED", "PENDING_PAYMENT")


@dataclass(frozen=True)
class CartView(Totals):
    id: uuid.UUID
    version: int
    status: str
    items: list[PricedLine]


async def _latest_cart(session: AsyncSession, user_id: uuid.UUID) -> Cart | None:
    query = select(Cart).where(Cart.user_id == user_id).order_by(col(Cart.updated_at).desc()).limit(1)
    return (await session.exec(query)).one_or_none()


async def current_cart(session: AsyncSession, user_id: uuid.UUID) -> Cart:
    """The customer's open cart, or the one locked by a checkout still running; a new one after a paid order."""
    cart = await _latest_cart(session, user_id)
    if cart is not None and cart.status == "checked_out":
        # A failed order reopens its cart, so a checked-out cart with no order still being paid
        # was bought: the customer starts a new one.
        in_progress = await session.exec(
            select(Order.id).where(Order.cart_id == cart.id, col(Order.status).in_(IN_PROGRESS_STATUSES)).limit(1)
        )
        if in_progress.one_or_none() is None:
            cart = None
    if cart is None:
        # Two first requests may race here: the partial unique index lets one cart win.
        await session.exec(
            insert(Cart).values(id=uuid.uuid4(), user_id=user_id, version=1, status="open", updated_at=utcnow())
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


async def view_cart(session: AsyncSession, cart: Cart) -> CartView:
    quantities = await cart_quantities(session, cart.id)
    priced = price_basket(quantities, await products_by_sku(session, list(quantities)))
    return _cart_view(cart, priced)


def _cart_view(cart: Cart, priced: PricedBasket) -> CartView:
    return CartView(id=cart.id, version=cart.version, status=cart.status, items=priced.lines, **Totals.of(priced))


def _check_quantity(quantity: int) -> None:
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise Invalid("invalid_quantity", f"Quantity must be from 1 to {MAX_LINE_QUANTITY}.")


async def _open_cart_for_change(session: AsyncSession, user_id: uuid.UUID) -> Cart:
    cart = await current_cart(session, user_id)
    # Lock the row and bump the version in one statement: concurrent edits serialize here.
    bumped = (
        await session.exec(
            update(Cart)
            .where(col(Cart.id) == cart.id, col(Cart.status) == "open")
            .values(version=col(Cart.version) + 1, updated_at=utcnow())
            .returning(Cart)
        )
    ).scalar_one_or_none()
    if bumped is None:
        raise Conflict("cart_locked", "This cart is being paid for: finish or cancel that order to change it.")
    return bumped


async def _available(session: AsyncSession, sku: str) -> int:
    stock = await session.get(Stock, sku)
    if stock is None:
        raise NotFound("unknown_sku", f"No product with SKU {sku!r}: check the catalog.")
    return stock.on_hand - stock.reserved


async def set_item(session: AsyncSession, user_id: uuid.UUID, sku: str, quantity: int, add: bool) -> CartView:
    """Put `quantity` of a SKU in the cart (`add`: on top of what is there)."""
    _check_quantity(quantity)
    available = await _available(session, sku)
    cart = await _open_cart_for_change(session, user_id)
    in_cart = (await cart_quantities(session, cart.id)).get(sku)
    if add:
        quantity += in_cart or 0
        _check_quantity(quantity)
    elif in_cart is None:
        raise NotFound("item_not_in_cart", f"{sku} is not in the cart: add it with POST /cart/items.")
    if quantity > available:
        raise Conflict("not_enough_stock", f"Only {available} of {sku} can be bought now.", available=available)
    await session.exec(
        insert(CartItem)
        .values(cart_id=cart.id, sku=sku, quantity=quantity, added_at=utcnow())
        .on_conflict_do_update(index_elements=["cart_id", "sku"], set_={"quantity": quantity})
    )
    return await view_cart(session, cart)


async def remove_item(session: AsyncSession, user_id: uuid.UUID, sku: str) -> CartView:
    cart = await _open_cart_for_change(session, user_id)
    removed = await session.exec(
        CartItem.__table__.delete().where(CartItem.cart_id == cart.id, CartItem.sku == sku).returning(CartItem.sku)  # type: ignore[attr-defined]
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
    """A failed order gives the cart back with a new version (so the next Pay Now is a new checkout).

    Idempotent: once reopened, a repeated call finds a newer version and changes nothing.
    """
    reopened = (
        await session.exec(
            update(Cart)
            .where(col(Cart.id) == cart_id, col(Cart.version) == version, col(Cart.status) == "checked_out")
            .values(status="open", version=version + 1, updated_at=utcnow())
            .returning(col(Cart.version))
        )
    ).scalar_one_or_none()
    if reopened is not None:
        return reopened
    return (await session.get_one(Cart, cart_id, populate_existing=True)).version
