"""Loyalty: an account of points per customer (1 point = 1 kopeck off), a tier by paid spend.

Points are held like stock: held when the order is created (`balance - held >= points`, a
conditional UPDATE), burnt when it is PAID, released when it ends unpaid. A PAID order accrues
points at the customer's tier rate on the money paid (rounded down); a refund takes back the
same share of that accrual as the share of the money refunded, and a full refund gives back
the points spent on the order. A reversal never takes the balance below what is held: what the
customer has spent already is not taken back (the movement records what was).

Every change is one guarded UPDATE of the account plus a movement row, once per (kind,
reference); balance changes are also ledger transactions (ledger.record_points).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import ledger
from kassa.errors import Conflict
from kassa.tables import (
    LedgerPosting,
    LedgerTransaction,
    LoyaltyAccount,
    LoyaltyMovement,
    Order,
    utcnow,
)

SPEND_WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class Tier:
    name: str
    rate_percent: int  # points accrued per 100 kopecks paid
    min_spend: int  # kopecks paid over the last 12 months


# Highest first.
TIERS = (Tier("gold", 7, 10_000_000), Tier("silver", 5, 3_000_000), Tier("base", 3, 0))


class PointsUnavailable(Conflict):
    def __init__(self, wanted: int, available: int) -> None:
        super().__init__(
            "not_enough_points",
            f"{wanted} points asked for, {available} available: redeem fewer"
            " (GET /me/loyalty shows the balance).",
            available=available,
        )


@dataclass(frozen=True)
class MovementView:
    kind: str
    points: int
    order_id: uuid.UUID
    balance_after: int
    at: datetime


@dataclass(frozen=True)
class LoyaltyView:
    balance: int
    held: int  # promised to orders not yet paid
    available: int
    tier: str
    rate_percent: int
    spend_12_months: int
    next_tier: str | None
    spend_to_next_tier: int | None
    history: list[MovementView]


def tier_for(spend: int) -> Tier:
    return next(tier for tier in TIERS if spend >= tier.min_spend)


async def paid_spend(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, excluding: uuid.UUID | None = None
) -> int:
    """Money paid for the customer's orders over the last 12 months, net of refunds."""
    query = (
        select(func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction, col(LedgerTransaction.id) == col(LedgerPosting.transaction_id))
        .join(Order, col(Order.id) == col(LedgerTransaction.order_id))
        .where(
            Order.user_id == user_id,
            LedgerPosting.account == ledger.RECEIVABLE,
            col(LedgerTransaction.created_at) >= now - SPEND_WINDOW,
        )
    )
    if excluding is not None:
        query = query.where(Order.id != excluding)
    return int((await session.exec(query)).one())


async def lock_account(session: AsyncSession, user_id: uuid.UUID) -> LoyaltyAccount:
    """The customer's account, made on first use, locked until the transaction ends: one
    customer's order creations (promo limits, points) take turns here."""
    await session.exec(
        insert(LoyaltyAccount)
        .values(user_id=user_id, balance=0, held=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    return await session.get_one(
        LoyaltyAccount, user_id, with_for_update=True, populate_existing=True
    )


async def available(session: AsyncSession, user_id: uuid.UUID) -> int:
    account = await session.get(LoyaltyAccount, user_id)
    return account.balance - account.held if account else 0


async def _move(
    session: AsyncSession,
    order: Order,
    kind: str,
    reference: str,
    points: int,
    balance_change: int,
    held_change: int,
) -> bool:
    """One movement, guarded: the account changes only if it stays `0 <= held <= balance`.
    False if this (kind, reference) was recorded before; PointsUnavailable if the guard refuses."""
    if points <= 0:
        return False
    recorded = select(LoyaltyMovement.id).where(
        LoyaltyMovement.kind == kind, LoyaltyMovement.reference == reference
    )
    balance, held = (
        col(LoyaltyAccount.balance) + balance_change,
        col(LoyaltyAccount.held) + held_change,
    )
    # One round trip when the movement is new (every checkout's): the UPDATE itself asks whether it
    # was recorded before. When it changes nothing, a second look says which guard stopped it.
    moved = (
        await session.exec(
            update(LoyaltyAccount)
            .where(
                col(LoyaltyAccount.user_id) == order.user_id,
                held >= 0,
                balance >= held,
                ~recorded.exists(),
            )
            .values(balance=balance, held=held, updated_at=utcnow())
            .returning(col(LoyaltyAccount.balance), col(LoyaltyAccount.held))
        )
    ).one_or_none()
    if moved is None:
        if (await session.exec(recorded)).first() is not None:
            return False
        raise PointsUnavailable(points, await available(session, order.user_id))
    session.add(
        LoyaltyMovement(
            user_id=order.user_id,
            order_id=order.id,
            kind=kind,
            reference=reference,
            points=points,
            balance_after=moved[0],
            held_after=moved[1],
        )
    )
    if balance_change:
        await ledger.record_points(session, kind, reference, order.id, points, order.currency)
    return True


async def hold(session: AsyncSession, order: Order) -> None:
    """Hold the points the order redeems, or raise PointsUnavailable. Idempotent per order."""
    await _move(session, order, "held", str(order.id), order.points, 0, order.points)


async def release(session: AsyncSession, order: Order) -> int:
    """The order ended unpaid: its held points are the customer's again (how many returned).
    Orders end unpaid only from PENDING_PAYMENT (orders.ALLOWED_FROM), so their points were held
    when they were created, in the transaction that placed them, and not yet released or burnt."""
    moved = await _move(session, order, "released", str(order.id), order.points, 0, -order.points)
    return order.points if moved else 0


async def burn(session: AsyncSession, order: Order) -> int:
    """The order is PAID from PENDING_PAYMENT: its held points are spent (how many returned)."""
    moved = await _move(
        session, order, "burnt", str(order.id), order.points, -order.points, -order.points
    )
    return order.points if moved else 0


async def reclaim(session: AsyncSession, order: Order) -> int:
    """A late payment completes the ended order: spend its released points again, from what is
    available now, or raise PointsUnavailable (then the payment is refunded)."""
    moved = await _move(session, order, "burnt", str(order.id), order.points, -order.points, 0)
    return order.points if moved else 0


async def accrue(session: AsyncSession, order: Order) -> int:
    """Points for a PAID order, at the tier of what was paid before it (how many returned). The
    caller holds the account lock."""
    tier = tier_for(await paid_spend(session, order.user_id, utcnow(), excluding=order.id))
    points = order.total * tier.rate_percent // 100
    return points if await _move(session, order, "accrued", str(order.id), points, points, 0) else 0


async def _movement_points(session: AsyncSession, order_id: uuid.UUID, kind: str) -> int:
    query = select(func.coalesce(func.sum(LoyaltyMovement.points), 0)).where(
        LoyaltyMovement.order_id == order_id, LoyaltyMovement.kind == kind
    )
    return int((await session.exec(query)).one())


async def reverse_for_refund(
    session: AsyncSession, order: Order, refund_id: str, charged_left: int
) -> None:
    """A refund of the order's payment: take back the refunded share of its accrual (all of it
    when nothing charged is left), and give back the points spent on it when nothing is left."""
    accrued = await _movement_points(session, order.id, "accrued")
    refunded = max(order.total - charged_left, 0)
    owed_back = accrued if charged_left <= 0 else accrued * refunded // max(order.total, 1)
    account = await lock_account(session, order.user_id)
    to_reverse = min(
        owed_back - await _movement_points(session, order.id, "reversed"),
        account.balance - account.held,
    )
    await _move(session, order, "reversed", refund_id, to_reverse, -to_reverse, 0)
    if charged_left <= 0:
        spent = await _movement_points(session, order.id, "burnt")
        await _move(session, order, "returned", str(order.id), spent, +spent, 0)


async def view(session: AsyncSession, user_id: uuid.UUID, limit: int = 50) -> LoyaltyView:
    account = await session.get(LoyaltyAccount, user_id)
    balance, held = (account.balance, account.held) if account else (0, 0)
    spend = await paid_spend(session, user_id, utcnow())
    tier = tier_for(spend)
    higher = [t for t in TIERS if t.min_spend > spend]
    movements = await session.exec(
        select(LoyaltyMovement)
        .where(LoyaltyMovement.user_id == user_id)
        .order_by(col(LoyaltyMovement.id).desc())
        .limit(limit)
    )
    return LoyaltyView(
        balance=balance,
        held=held,
        available=balance - held,
        tier=tier.name,
        rate_percent=tier.rate_percent,
        spend_12_months=spend,
        next_tier=higher[-1].name if higher else None,
        spend_to_next_tier=higher[-1].min_spend - spend if higher else None,
        history=[
            MovementView(m.kind, m.points, m.order_id, m.balance_after, m.at) for m in movements
        ],
    )
