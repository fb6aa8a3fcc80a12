"""Placing an order: Pay Now's first steps, taken by the gateway before any workflow runs.

The stock first, the order second:
1. claim the cart's stock (`claim_stock`): one statement, committed at once
   (`inventory.claim_cart`), which also finds the order of an earlier tap on the same cart.
   A flash sale's loser is answered here, and the hot SKU's row is locked only while that
   statement runs;
2. in one transaction (`place_order`), the order made from the cart, the customer checked, the
   claim given to the order as its reservation, and the order PENDING_PAYMENT with its hold's
   deadline. If the order is refused, the claim is released.
The checkout workflow then owns the order: it charges, then commits or releases what was held
here. A claim left without an order (the gateway stopped between the two) is released by the
hold sweeper.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import auth, inventory, orders
from kassa.db import session_scope
from kassa.errors import Conflict, DomainError
from kassa.statuses import OrderStatus
from kassa.tables import Order, utcnow

log = logging.getLogger("kassa.placement")


@dataclass(frozen=True)
class PlaceOrder:
    order_id: uuid.UUID  # used only if this tap is the first for the cart version
    workflow_id: str
    customer_id: uuid.UUID
    cart_id: uuid.UUID
    cart_version: int  # as the caller read it; a cart changed since is refused
    address_id: uuid.UUID | None
    redeem_points: int
    hold_seconds: int


@dataclass(frozen=True)
class Placement:
    order: Order
    placed_now: bool  # False: an earlier tap on the same cart version placed it


@dataclass(frozen=True)
class Claim:
    """The cart's stock, held for a tap whose order is not made yet."""

    reservation_id: uuid.UUID
    hold_expires_at: datetime


async def claim_stock(autocommit: AsyncSession, request: PlaceOrder) -> Placement | Claim:
    """Step 1: the order an earlier tap placed (a double tap, a retry after a lost answer), or a
    claim on the cart's stock. Raises OutOfStock or EmptyCart, and then holds nothing.

    `autocommit` is the caller's connection (`kassa.db.autocommit_scope`), which the gateway also
    checks the customer and the cart on: under a flash sale's crowd each take from the pool is a
    queue, and a tap that took it several times before its claim would sell out as late as the
    crowd's last check."""
    # Keyed by the tap (its cart version's workflow id): a tap sent again after its first try
    # claimed and then stopped (the gateway restarted, the database went away) finds that claim.
    # One round trip with the earlier order's check and the cart's items: a flash sale's losers
    # are answered by it. The cart's items are read unlocked: if the cart changes after this, its
    # version moves and the order below is refused, so a placed order always holds what its cart
    # had.
    claimed = await inventory.claim_cart(
        autocommit,
        request.workflow_id,
        uuid.uuid4(),
        request.cart_id,
        request.cart_version,
        utcnow() + timedelta(seconds=request.hold_seconds),
    )
    if claimed is None:
        raise orders.EmptyCart()
    if isinstance(claimed, inventory.Placed):
        # A double tap, or a retry after a lost answer: the order is the earlier tap's.
        return Placement(await autocommit.get_one(Order, claimed.order_id), placed_now=False)
    return Claim(claimed.reservation_id, claimed.hold_expires_at)


async def place_order(
    engine: AsyncEngine, request: PlaceOrder, held: Placement | Claim
) -> Placement:
    """Step 2: the claim's order, or the twin's (a double tap that locked the cart first). Raises
    the refusals of `orders.lock_cart` and `orders.order_from_locked_cart`, and then has given the
    claim back."""
    if isinstance(held, Placement):
        return held
    try:
        async with session_scope(engine) as session:
            placement = await _order_for_claim(session, request, held)
    except DomainError:
        # Refused, so rolled back: nothing has the claim. After any other error the order may have
        # committed with it (a lost COMMIT answer), so it is left as it is: the tap sent again
        # finds the order, or takes the claim (keyed by the tap); if none comes, the sweeper
        # releases it, only if it is still no order's.
        await _release_claim(engine, held.reservation_id, request)
        raise
    if not placement.placed_now:
        # The twin's order holds its own claim, or this one if the twin took it first.
        await _release_claim(engine, held.reservation_id, request)
    return placement


async def _order_for_claim(session: AsyncSession, request: PlaceOrder, claim: Claim) -> Placement:
    try:
        cart = await orders.lock_cart(
            session, request.customer_id, request.cart_id, request.cart_version
        )
    except Conflict as refused:
        # A double tap's twin locked the cart first: its order, once it committed, is this tap's
        # too.
        if refused.code == "cart_changed" and (
            twin := await orders.order_for_cart(session, request.cart_id, request.cart_version)
        ):
            return Placement(twin, placed_now=False)
        raise
    order = await orders.order_from_locked_cart(
        session,
        request.order_id,
        request.workflow_id,
        cart,
        request.cart_version,
        request.address_id,
        request.redeem_points,
    )
    await auth.verify_customer(session, request.customer_id)
    await inventory.attach(session, claim.reservation_id, order.id)
    order = await orders.transition(
        session,
        order.id,
        OrderStatus.PENDING_PAYMENT,
        reservation_id=claim.reservation_id,
        hold_expires_at=claim.hold_expires_at,
    )
    return Placement(order, placed_now=True)


async def _release_claim(engine: AsyncEngine, claim_id: uuid.UUID, request: PlaceOrder) -> None:
    try:
        async with session_scope(engine) as session:
            await inventory.release_claim(session, claim_id)
    except (SQLAlchemyError, OSError):
        # The database is away (or the connection to it): the hold sweeper releases the claim once
        # it is back.
        log.warning(
            "claim left for the hold sweeper",
            extra={"reservation_id": str(claim_id), "cart_id": str(request.cart_id)},
        )
