"""Orders: created from a cart, moved only by guarded transitions, each with an event row.

    CREATED ──▶ PENDING_PAYMENT ──▶ PAID ──▶ REFUNDED
                      ├─▶ PAYMENT_FAILED
                      ├─▶ EXPIRED
                      └─▶ CANCELLED

(CREATED lives only inside the transaction that places the order: activities/placement.py.)

plus: PAYMENT_FAILED, EXPIRED or CANCELLED ──▶ PAID when a late payment completes the order.

The order's promo use and loyalty points move with it, in the same transactions: held when it is
created, final (points burnt, new points accrued) when it is PAID, given back when it ends unpaid.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import literal_column, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import carts, inventory, loyalty, promos
from activities.pricing import PROMO_APPLIED, PricedLine, Totals
from activities.promos import PromoUnavailable
from kassa.errors import Conflict, NotFound
from kassa.statuses import UNPAID_ENDINGS, OrderStatus, PaymentStatus
from kassa.tables import Cart, Order, OrderEvent, OrderLine, Payment, PromoUse, utcnow

ALLOWED_FROM: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_PAYMENT: frozenset({OrderStatus.CREATED}),
    # A payment that lands after the order ended completes it when its stock is still there.
    OrderStatus.PAID: frozenset({OrderStatus.PENDING_PAYMENT}) | UNPAID_ENDINGS,
    OrderStatus.PAYMENT_FAILED: frozenset({OrderStatus.PENDING_PAYMENT}),
    OrderStatus.EXPIRED: frozenset({OrderStatus.PENDING_PAYMENT}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.PENDING_PAYMENT}),
    OrderStatus.REFUNDED: frozenset({OrderStatus.PAID}),
}


class IllegalTransition(Conflict):
    pass


class EmptyCart(Conflict):
    def __init__(self) -> None:
        super().__init__("empty_cart", "The cart is empty: add something first.")


@dataclass(frozen=True)
class PaymentView:
    status: PaymentStatus
    intent_id: str
    payment_url: str | None
    decline_code: str | None
    attempt: int


@dataclass(frozen=True)
class EventView:
    status: OrderStatus
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class OrderView(Totals):
    id: uuid.UUID
    status: OrderStatus
    lines: list[PricedLine]
    promo_code: str | None
    address_id: uuid.UUID | None
    reservation_id: uuid.UUID | None
    hold_expires_at: datetime | None
    reason: str | None
    payment: PaymentView | None
    events: list[EventView]
    created_at: datetime


async def lock_cart(
    session: AsyncSession, user_id: uuid.UUID, cart_id: uuid.UUID, cart_version: int
) -> Cart:
    """The customer's cart, locked at this version for its order (until the transaction ends)."""
    cart = await carts.owned_cart(session, user_id, cart_id)
    if not await carts.check_out(session, cart.id, cart_version):
        raise Conflict(
            "cart_changed",
            "The cart changed or is already being paid for: review it and tap Pay Now again.",
        )
    return cart


async def order_from_locked_cart(
    session: AsyncSession,
    order_id: uuid.UUID,
    workflow_id: str,
    cart: Cart,
    cart_version: int,
    address_id: uuid.UUID | None,
    redeem_points: int,
) -> Order:
    """Order CREATED from a cart `lock_cart` locked in this transaction, with its promo use and
    points held."""
    priced = await carts.price_cart(session, cart, redeem_points)
    check_priced_cart(priced)
    order = Order(
        id=order_id,
        user_id=cart.user_id,
        cart_id=cart.id,
        cart_version=cart_version,
        workflow_id=workflow_id,
        address_id=address_id,
        status=OrderStatus.CREATED,
        **Totals.of(priced.basket),
    )
    session.add(order)
    await session.flush()
    session.add_all(OrderLine(order_id=order_id, **vars(line)) for line in priced.basket.lines)
    held: dict[str, Any] = {}
    if priced.promo is not None or order.points:
        await loyalty.lock_account(session, cart.user_id)
        if priced.promo is not None:
            await promos.hold(session, priced.promo, order_id, cart.user_id, order.discount)
            held["promo_held"] = priced.promo.code
        if order.points:
            await loyalty.hold(session, order)
        held["points_held"] = order.points
    session.add(
        OrderEvent(
            order_id=order_id, from_status=None, status=OrderStatus.CREATED, detail=_moved(held)
        )
    )
    return order


def check_priced_cart(priced: carts.PricedCart) -> None:
    """What Pay Now refuses in a cart, before anything is held: nothing in it, a line over its
    limit, or a promo code on it that would not give its discount."""
    if not priced.basket.lines:
        raise EmptyCart()
    for line in priced.basket.lines:
        limit = carts.quantity_limit(priced.products[line.sku])
        if line.quantity > limit:
            raise Conflict(
                "quantity_limit",
                f"One order may take at most {limit} of {line.sku}: lower it in the cart.",
                sku=line.sku,
                limit=limit,
            )
    if priced.promo is not None and priced.promo_status != PROMO_APPLIED:
        raise PromoUnavailable(priced.promo.code, priced.promo_status or "")


async def transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    to_status: OrderStatus,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    **fields: Any,
) -> Order:
    """Move the order to `to_status` if its state allows it, with an event row, in one transaction.

    Idempotent: an order already in `to_status` is returned unchanged (no second event).
    An illegal move changes nothing and raises IllegalTransition.
    """
    # One statement when the move is allowed (every checkout's): the guarded UPDATE takes the row
    # lock, and RETURNING OLD (PostgreSQL 18) says the status it moved from. No status moves to
    # itself, so a repeat lands below, as does an illegal move.
    # RETURNING an entity: sqlmodel types the UPDATE's result as rows of Any.
    row = (
        await session.exec(
            update(Order)
            .where(col(Order.id) == order_id, col(Order.status).in_(ALLOWED_FROM[to_status]))
            .values(status=to_status, reason=reason, updated_at=utcnow(), **fields)
            .returning(Order, literal_column("old.status"))
        )
    ).one_or_none()
    if row is None:
        found = (
            await session.exec(select(Order.status).where(Order.id == order_id).with_for_update())
        ).one_or_none()
        if found is None:
            raise NotFound("order_not_found", f"No order {order_id}.")
        if found == to_status:
            return await session.get_one(Order, order_id)
        raise IllegalTransition(
            "illegal_transition",
            f"Order {order_id} is {found}; it cannot become {to_status}.",
            order_status=OrderStatus(found),
        )
    moved: Order = row[0]
    current = OrderStatus(row[1])
    benefits = await _settle_benefits(session, moved, current)
    event_detail = (detail or {}) | benefits
    session.add(
        OrderEvent(
            order_id=order_id,
            from_status=current,
            status=to_status,
            reason=reason,
            detail=event_detail,
        )
    )
    return moved


async def _settle_benefits(
    session: AsyncSession, order: Order, from_status: OrderStatus
) -> dict[str, Any]:
    """The promo use and the points follow the order's move; what moved goes on its event row.
    A late payment (PAID from an unpaid ending) takes them again, or raises PromoUnavailable /
    PointsUnavailable if it cannot."""
    if order.status != OrderStatus.PAID and order.status not in UNPAID_ENDINGS:
        return {}
    # The customer's account first, then the promo code: the order create_from_cart takes them in.
    await loyalty.lock_account(session, order.user_id)
    if order.status != OrderStatus.PAID:
        return _moved(
            {
                "promo_released": await promos.release(session, order.id),
                "points_released": await loyalty.release(session, order),
            }
        )
    if from_status in UNPAID_ENDINGS:
        spent = {
            "promo_final": await promos.reclaim(session, order.id),
            "points_burnt": await loyalty.reclaim(session, order),
        }
    else:
        spent = {
            "promo_final": await promos.finalise(session, order.id),
            "points_burnt": await loyalty.burn(session, order),
        }
    return _moved(spent | {"points_accrued": await loyalty.accrue(session, order)})


def _moved(movements: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in movements.items() if value}


async def extend_hold(
    session: AsyncSession, order_id: uuid.UUID, reservation_id: uuid.UUID, hold_expires_at: datetime
) -> None:
    """The unpaid order's stock held until the later time: its reservation's deadline, the order's
    copy of it, and an event on its timeline, together. Idempotent: a repeat finds it moved."""
    if not await inventory.extend_hold(session, reservation_id, hold_expires_at):
        return
    await session.exec(
        update(Order)
        .where(col(Order.id) == order_id, col(Order.status) == OrderStatus.PENDING_PAYMENT)
        .values(hold_expires_at=hold_expires_at, updated_at=utcnow())
    )
    session.add(
        OrderEvent(
            order_id=order_id,
            from_status=OrderStatus.PENDING_PAYMENT,
            status=OrderStatus.PENDING_PAYMENT,
            reason="hold_extended",
            detail={"hold_expires_at": hold_expires_at.isoformat()},
        )
    )


async def owned_order(
    session: AsyncSession, user_id: uuid.UUID | None, order_id: uuid.UUID
) -> Order:
    """The order if it belongs to this customer (None: an operator); 404 otherwise."""
    order = await session.get(Order, order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        raise NotFound("order_not_found", "No such order: GET /orders lists yours.")
    return order


async def view_order(session: AsyncSession, order: Order) -> OrderView:
    lines = await session.exec(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.sku))
    )
    events = await session.exec(
        select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(col(OrderEvent.id))
    )
    payment = (
        await session.exec(
            select(Payment)
            .where(Payment.order_id == order.id)
            .order_by(col(Payment.attempt).desc())
            .limit(1)
        )
    ).one_or_none()
    promo = await session.get(PromoUse, order.id)
    return OrderView(
        id=order.id,
        status=OrderStatus(order.status),
        lines=[
            PricedLine(
                line.sku,
                line.title,
                line.quantity,
                line.unit_price,
                line.line_total,
                line.discount,
                line.points,
                line.vat,
            )
            for line in lines
        ],
        promo_code=promo.code if promo else None,
        **Totals.of(order),
        address_id=order.address_id,
        reservation_id=order.reservation_id,
        hold_expires_at=order.hold_expires_at,
        reason=order.reason,
        payment=PaymentView(
            PaymentStatus(payment.status),
            payment.intent_id,
            payment.payment_url,
            payment.decline_code,
            payment.attempt,
        )
        if payment
        else None,
        events=[EventView(OrderStatus(e.status), e.at, e.reason) for e in events],
        created_at=order.created_at,
    )


async def list_orders(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    limit: int = 20,
    status: OrderStatus | None = None,
) -> list[Order]:
    query = select(Order).order_by(col(Order.created_at).desc()).limit(limit)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    if status is not None:
        query = query.where(Order.status == status)
    return list(await session.exec(query))


async def order_for_cart(
    session: AsyncSession, cart_id: uuid.UUID, cart_version: int
) -> Order | None:
    query = select(Order).where(Order.cart_id == cart_id, Order.cart_version == cart_version)
    return (await session.exec(query)).one_or_none()
