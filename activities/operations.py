"""What operators see and repair: any order with its whole story, and holds left behind.

search_orders      — every customer's orders, by status, customer and time, newest first, in pages
order_dossier      — one order with its events, payments, refunds and ledger
held_reservations  — holds still keeping stock, with their order's workflow (for the sweeper)
release_left_hold  — a hold whose checkout will never end it: stock back, order ended, cart back
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import carts, inventory, ledger, orders
from activities.ledger import TransactionView
from activities.orders import OrderView
from kassa.cursors import decode_cursor, encode_cursor
from kassa.errors import Invalid
from kassa.statuses import OrderStatus, PaymentStatus
from kassa.tables import Order, Payment, Refund, Reservation

# The reason on an order the sweeper ended (EXPIRED): its checkout never did.
SWEPT = "hold_swept"


@dataclass(frozen=True)
class OrderFilter:
    status: OrderStatus | None = None
    customer_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class OrderPage:
    items: list[Order]
    next_cursor: str | None


@dataclass(frozen=True)
class PaymentRecord:
    intent_id: str
    attempt: int
    status: PaymentStatus
    amount: int
    currency: str
    decline_code: str | None
    created_at: datetime


@dataclass(frozen=True)
class RefundRecord:
    id: str
    intent_id: str
    amount: int
    currency: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class OrderDossier(OrderView):
    """The order as its customer sees it, and what only operators see."""

    customer_id: uuid.UUID
    workflow_id: str
    payments: list[PaymentRecord]
    refunds: list[RefundRecord]
    ledger: list[TransactionView]


@dataclass(frozen=True)
class HeldReservation:
    reservation_id: uuid.UUID
    order_id: uuid.UUID | None  # None: the gateway's claim, its order never made
    workflow_id: str | None
    hold_expires_at: datetime


def _cursor_of(order: Order) -> str:
    return encode_cursor([order.created_at.isoformat(), str(order.id)])


def _position(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, order_id = decode_cursor(cursor)
        return datetime.fromisoformat(created_at), uuid.UUID(order_id)
    except (ValueError, TypeError):
        raise Invalid(
            "invalid_cursor", "The cursor is not one this API gave: start again without it."
        ) from None


async def search_orders(
    session: AsyncSession, where: OrderFilter, limit: int, cursor: str | None = None
) -> OrderPage:
    """Newest first (ties by id), `limit` a page; the cursor points after the last one shown, so
    orders created meanwhile never shift a page."""
    query = (
        select(Order).order_by(col(Order.created_at).desc(), col(Order.id).desc()).limit(limit + 1)
    )
    if where.status is not None:
        query = query.where(Order.status == where.status)
    if where.customer_id is not None:
        query = query.where(Order.user_id == where.customer_id)
    if where.created_from is not None:
        query = query.where(col(Order.created_at) >= where.created_from)
    if where.created_before is not None:
        query = query.where(col(Order.created_at) < where.created_before)
    if cursor is not None:
        created_at, order_id = _position(cursor)
        query = query.where(
            or_(
                col(Order.created_at) < created_at,
                and_(col(Order.created_at) == created_at, col(Order.id) < order_id),
            )
        )
    found = list(await session.exec(query))
    page = found[:limit]
    return OrderPage(page, _cursor_of(page[-1]) if len(found) > limit else None)


async def order_dossier(session: AsyncSession, order: Order) -> OrderDossier:
    payments = await session.exec(
        select(Payment).where(Payment.order_id == order.id).order_by(col(Payment.attempt))
    )
    refunds = await session.exec(
        select(Refund).where(Refund.order_id == order.id).order_by(col(Refund.created_at))
    )
    return OrderDossier(
        **vars(await orders.view_order(session, order)),
        customer_id=order.user_id,
        workflow_id=order.workflow_id,
        payments=[
            PaymentRecord(
                p.intent_id,
                p.attempt,
                PaymentStatus(p.status),
                p.amount,
                p.currency,
                p.decline_code,
                p.created_at,
            )
            for p in payments
        ],
        refunds=[
            RefundRecord(r.id, r.intent_id, r.amount, r.currency, r.reason, r.created_at)
            for r in refunds
        ],
        ledger=await ledger.transactions(session, order.id),
    )


async def count_active_holds(session: AsyncSession) -> int:
    return (
        await session.exec(
            select(func.count()).select_from(Reservation).where(Reservation.status == "held")
        )
    ).one()


async def held_reservations(
    session: AsyncSession, created_before: datetime, limit: int
) -> list[HeldReservation]:
    """Held reservations made before `created_before`, oldest deadline first."""
    query = (
        select(Reservation, Order.workflow_id)
        .outerjoin(Order, col(Order.id) == col(Reservation.order_id))
        .where(Reservation.status == "held", col(Reservation.created_at) < created_before)
        .order_by(col(Reservation.hold_expires_at))
        .limit(limit)
    )
    return [
        HeldReservation(
            reservation.id, reservation.order_id, workflow_id, reservation.hold_expires_at
        )
        for reservation, workflow_id in await session.exec(query)
    ]


@dataclass(frozen=True)
class HoldRepair:
    ended: OrderStatus | None  # what the order was ended in here; None if it had ended already


async def release_left_hold(
    session: AsyncSession, reservation_id: uuid.UUID, why: str
) -> HoldRepair | None:
    """Stock back on the shelf, the unpaid order ended (reason `hold_swept`, `why` in the event's
    detail), its cart back to the customer.

    For a hold no checkout will settle any more. Idempotent: None if the hold was settled
    already (by its checkout after all, or by an earlier sweep), and then nothing changes.
    """
    # Locked first: its checkout, if it is still about, settles it either before or after us, never
    # both.
    held = await session.get(
        Reservation, reservation_id, with_for_update=True, populate_existing=True
    )
    if held is None or held.status != "held":
        return None
    reservation = await inventory.release(session, reservation_id)
    if reservation.order_id is None:  # a claim: no order to end
        return HoldRepair(ended=None)
    order = await session.get_one(Order, reservation.order_id)
    # An order is CREATED only inside the transaction that places it: one whose hold is left
    # behind is PENDING_PAYMENT, or has ended already.
    if order.status != OrderStatus.PENDING_PAYMENT:
        return HoldRepair(ended=None)
    await orders.transition(session, order.id, OrderStatus.EXPIRED, SWEPT, {"why": why})
    await carts.reopen(session, order.cart_id, order.cart_version)
    return HoldRepair(OrderStatus.EXPIRED)
