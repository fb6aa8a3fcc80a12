"""Refunds and late payments: money that came in when it should not have goes back, once.

The acquirer's refund is idempotent on our key; our records are idempotent on its refund id
and on the ledger reference; the order becomes REFUNDED when nothing charged is left.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import inventory, ledger, loyalty, orders
from activities.inventory import OutOfStock, StockLine
from activities.loyalty import PointsUnavailable
from activities.promos import PromoUnavailable
from activities.providers.protocol import ProviderRefund
from kassa.errors import Conflict, Invalid
from kassa.statuses import ENDED, OPEN_PAYMENTS, UNPAID_ENDINGS, OrderStatus, PaymentStatus
from kassa.tables import (
    Cart,
    LedgerTransaction,
    Order,
    OrderEvent,
    OrderLine,
    Payment,
    Refund,
    Reservation,
    utcnow,
)


@dataclass(frozen=True)
class RefundPlan:
    intent_id: str
    amount: int
    currency: str


async def refund_by_key(session: AsyncSession, key: str) -> Refund | None:
    return (await session.exec(select(Refund).where(Refund.idempotency_key == key))).one_or_none()


async def unsettled_payments(session: AsyncSession, limit: int = 100) -> list[Payment]:
    """Money no checkout took, whose order is no longer being paid: successes with no ledger
    charge, and authorizations still held (never captured)."""
    charged = select(LedgerTransaction.reference).where(LedgerTransaction.kind == "charge")
    query = (
        select(Payment)
        .join(Order, col(Order.id) == col(Payment.order_id))
        .where(
            or_(
                and_(
                    col(Payment.status) == PaymentStatus.SUCCEEDED,
                    col(Payment.intent_id).not_in(charged),
                ),
                col(Payment.status) == PaymentStatus.AUTHORIZED,
            ),
            col(Order.status).in_(ENDED),
        )
        .limit(limit)
    )
    return list(await session.exec(query))


async def open_payments_of_ended_orders(session: AsyncSession, limit: int) -> list[Payment]:
    """Payments still waiting for the customer, at our last word, whose order has ended, newest
    first: no run asks the provider about them any more. One the provider could not cancel
    (YooKassa's page stays open) may have been paid since, its webhook lost."""
    query = (
        select(Payment)
        .join(Order, col(Order.id) == col(Payment.order_id))
        .where(col(Payment.status).in_(OPEN_PAYMENTS), col(Order.status).in_(ENDED))
        .order_by(col(Payment.created_at).desc())
        .limit(limit)
    )
    return list(await session.exec(query))


async def plan_refund(
    session: AsyncSession, order_id: uuid.UUID, amount: int | None, intent_id: str | None
) -> RefundPlan:
    """What to refund: `amount` (None: everything left) of the order's charge, refused beyond it."""
    order = await session.get(Order, order_id)
    if order is None:
        raise Conflict("order_not_found", f"No order {order_id}.")
    left = await ledger.charged(session, order_id)
    if amount is not None and amount <= 0:
        raise Invalid("invalid_amount", "A refund amount is a positive number of kopecks.")
    if left <= 0:
        raise Conflict("nothing_to_refund", "Nothing charged for this order is left to refund.")
    amount = left if amount is None else amount
    if amount > left:
        raise Conflict(
            "refund_exceeds_charge", f"At most {left} kopecks are left to refund.", refundable=left
        )
    references = await ledger.charge_references(session, order_id)
    return RefundPlan(intent_id or references[0], amount, order.currency)


async def record_refund(
    session: AsyncSession,
    order_id: uuid.UUID,
    refund: ProviderRefund,
    currency: str,
    reason: str,
    key: str,
) -> None:
    """Our record of a refund the provider made: REFUNDED once nothing charged is left.
    Idempotent."""
    order = await session.get_one(Order, order_id, with_for_update=True)
    await session.exec(
        insert(Refund)
        .values(
            id=refund.refund_id,
            order_id=order_id,
            intent_id=refund.payment_id,
            amount=refund.amount,
            currency=currency,
            reason=reason,
            idempotency_key=key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    if not await ledger.record_refund(session, order_id, refund.refund_id, refund.amount, currency):
        return
    if order.status == OrderStatus.PAID:
        left = await ledger.charged(session, order_id)
        # The refunded share of the points it earned goes too; a full refund gives back those it
        # spent.
        await loyalty.reverse_for_refund(session, order, refund.refund_id, left)
        if left <= 0:
            await orders.transition(
                session,
                order_id,
                OrderStatus.REFUNDED,
                reason,
                {"refund_id": refund.refund_id, "amount": refund.amount},
            )
            return
    # Partial, or the refund of a payment the order never kept: on the timeline, status unchanged.
    session.add(
        OrderEvent(
            order_id=order_id,
            from_status=order.status,
            status=order.status,
            reason=f"refunded_{reason}",
            detail={"refund_id": refund.refund_id, "amount": refund.amount},
        )
    )


# A late authorization's stock, held while it is captured: past this the hold sweeper may take it
# back (it releases holds of ended orders a minute old).
LATE_HOLD = timedelta(minutes=10)


def _late_claim_key(intent_id: str) -> str:
    return f"late-payment:{intent_id}"


async def _hold_again(
    session: AsyncSession, order_id: uuid.UUID, intent_id: str, hold_expires_at: datetime
) -> uuid.UUID:
    """The ended order's stock held for it again, the way Pay Now holds it (all or none, rows
    locked in SKU order), keyed by the late payment: a repeat, or the settling of a late
    authorization captured since, finds the same hold. Raises OutOfStock, holding nothing."""
    lines = await session.exec(select(OrderLine).where(OrderLine.order_id == order_id))
    held = await inventory.claim(
        session,
        _late_claim_key(intent_id),
        uuid.uuid4(),
        [StockLine(line.sku, line.quantity) for line in lines],
        hold_expires_at,
    )
    await inventory.attach(session, held.reservation_id, order_id)
    return held.reservation_id


async def hold_for_late_authorization(
    session: AsyncSession, order_id: uuid.UUID, intent_id: str
) -> str:
    """Money held on the card that the checkout did not take: "capture" (the order ended unpaid,
    its cart has no newer order, and its stock is held for it again: capture it, then settle it as
    a late success), or "void" (let it go: no refund, no fee, nothing on the statement).
    Idempotent: a repeat finds its stock held (the claim is keyed by the payment)."""
    order = await session.get_one(Order, order_id, with_for_update=True)
    if order.status not in UNPAID_ENDINGS or await _cart_moved_on(session, order):
        return "void"
    try:
        async with session.begin_nested():
            await _hold_again(session, order_id, intent_id, utcnow() + LATE_HOLD)
    except OutOfStock:
        return "void"
    return "capture"


async def release_late_hold(session: AsyncSession, intent_id: str) -> None:
    """The stock held for a late authorization whose capture was refused, back on the shelf.
    Idempotent."""
    held = await session.exec(
        select(Reservation.id).where(
            Reservation.claim_key == _late_claim_key(intent_id), Reservation.status == "held"
        )
    )
    for reservation_id in held:
        await inventory.release(session, reservation_id)


async def settle_late_payment(
    session: AsyncSession, order_id: uuid.UUID, intent_id: str, amount: int, currency: str
) -> str:
    """A success the checkout did not take: "counted" (it is the order's own payment),
    "completed" (the order was unpaid, its stock is all still there, its cart has no newer
    order, and its promo use and points can be taken again: now PAID), "refund" (give it
    back). Idempotent: a repeat finds it counted."""
    order = await session.get_one(Order, order_id, with_for_update=True)
    await ledger.record_charge(session, order_id, intent_id, amount, currency)
    if order.status in (OrderStatus.PAID, OrderStatus.REFUNDED):
        first_charge = (await ledger.charge_references(session, order_id))[0]
        return "counted" if first_charge == intent_id else "refund"
    if order.status not in UNPAID_ENDINGS or await _cart_moved_on(session, order):
        return "refund"
    try:
        async with session.begin_nested():
            # Held and sold at once; the order row's lock keeps a repeat from racing it.
            reservation_id = await _hold_again(session, order_id, intent_id, utcnow())
            await inventory.commit(session, reservation_id)
            # The promo use and the points it was priced with are taken again, or it is refunded.
            await orders.transition(
                session,
                order_id,
                OrderStatus.PAID,
                "late_payment",
                {"intent_id": intent_id},
                reservation_id=reservation_id,
            )
    except (OutOfStock, PromoUnavailable, PointsUnavailable):
        await release_late_hold(session, intent_id)
        return "refund"
    # The cart was given back when the order failed; untouched since, it is bought now.
    await session.exec(
        update(Cart)
        .where(
            col(Cart.id) == order.cart_id,
            col(Cart.version) == order.cart_version + 1,
            col(Cart.status) == "open",
        )
        .values(status="checked_out", updated_at=utcnow())
    )
    return "completed"


async def _cart_moved_on(session: AsyncSession, order: Order) -> bool:
    """The customer started another order from this cart since."""
    newer = await session.exec(
        select(Order.id)
        .where(Order.cart_id == order.cart_id, col(Order.cart_version) > order.cart_version)
        .limit(1)
    )
    return newer.one_or_none() is not None
