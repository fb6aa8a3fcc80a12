"""Placing an order: Pay Now's first transaction, taken by the gateway before any workflow runs.

All or nothing, in one transaction: the order made from the cart, the customer checked, the order
PENDING_PAYMENT with its hold's deadline, and the stock held. The checkout workflow then owns the
order: it charges, then commits or releases what was held here. A flash sale's losers are answered
by a failed conditional UPDATE, not by a whole checkout run each.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import auth, carts, inventory, orders
from activities.inventory import OutOfStock, StockLine
from kassa.errors import Conflict
from kassa.tables import Order, OrderLine, utcnow


@dataclass(frozen=True)
class PlaceOrder:
    order_id: uuid.UUID  # used only if this tap is the first for the cart version
    workflow_id: str
    customer_id: uuid.UUID
    cart_id: uuid.UUID
    cart_version: int
    address_id: uuid.UUID | None
    redeem_points: int
    hold_seconds: int


@dataclass(frozen=True)
class Placement:
    order: Order
    lines: list[StockLine]
    placed_now: bool  # False: an earlier tap on the same cart version placed it


async def place_order(session: AsyncSession, request: PlaceOrder) -> Placement:
    """The cart version's order with its stock held, or the one an earlier tap placed (a double tap,
    a retry after a lost answer). Raises OutOfStock, or the refusals of `orders.create_from_cart`;
    the caller's transaction must then roll back, and nothing is left behind."""
    if (earlier := await orders.order_for_cart(session, request.cart_id, request.cart_version)) is not None:
        return Placement(earlier, await order_lines(session, earlier.id), placed_now=False)
    # A sure loser of a flash sale learns it before anything is written (a hint, read without locks).
    if short := await inventory.short_skus(session, await carts.cart_quantities(session, request.cart_id)):
        raise OutOfStock(short)
    try:
        order = await orders.create_from_cart(
            session, request.order_id, request.workflow_id, request.customer_id, request.cart_id, request.cart_version,
            request.address_id, request.redeem_points,
        )
    except Conflict as refused:
        # A double tap's twin locked the cart first: its order, once it committed, is this tap's too.
        if refused.code == "cart_changed" and (twin := await orders.order_for_cart(session, request.cart_id, request.cart_version)):
            return Placement(twin, await order_lines(session, twin.id), placed_now=False)
        raise
    await auth.verify_customer(session, request.customer_id)
    lines = await order_lines(session, order.id)
    reservation_id, hold_expires_at = uuid.uuid4(), utcnow() + timedelta(seconds=request.hold_seconds)
    order = await orders.transition(
        session, order.id, "PENDING_PAYMENT", reservation_id=reservation_id, hold_expires_at=hold_expires_at
    )
    # The stock last: a hot SKU's row stays locked only from its UPDATE to the commit.
    await inventory.reserve(session, order.id, lines, hold_expires_at, reservation_id)
    return Placement(order, lines, placed_now=True)


async def order_lines(session: AsyncSession, order_id: uuid.UUID) -> list[StockLine]:
    query = select(OrderLine.sku, OrderLine.quantity).where(OrderLine.order_id == order_id).order_by(col(OrderLine.sku))
    return [StockLine(sku, quantity) for sku, quantity in await session.exec(query)]
