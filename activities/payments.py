"""Payments: our record of each attempt (the provider's own API is behind activities/providers)."""

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.statuses import OPEN_PAYMENTS, SETTLED_PAYMENTS, PaymentStatus
from kassa.tables import Payment, utcnow


@dataclass(frozen=True)
class IntentState:
    intent_id: str
    # The acquirer's word, one of PaymentStatus's; a plain string because CheckoutWorkflow also
    # keeps an attempt the acquirer did not answer as an IntentState, marked with its own
    # UNANSWERED_ATTEMPT, which is no payment status (and reaches the gateway in CheckoutState).
    status: str
    payment_url: str | None = None
    decline_code: str | None = None


async def record_attempt(
    session: AsyncSession,
    order_id: uuid.UUID,
    attempt: int,
    amount: int,
    currency: str,
    intent: IntentState,
) -> None:
    """Idempotent: a retried attempt (same intent) is recorded once."""
    await session.exec(
        insert(Payment)
        .values(
            intent_id=intent.intent_id,
            order_id=order_id,
            attempt=attempt,
            status=intent.status,
            amount=amount,
            currency=currency,
            payment_url=intent.payment_url,
            decline_code=intent.decline_code,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )


async def advance(
    session: AsyncSession, intent_id: str, status: str, decline_code: str | None = None
) -> bool:
    """Record a newer status of an intent (the acquirer's word, `IntentState.status`); True if it
    moved. Forward only: a stale, repeated or unknown status changes nothing."""
    if status not in SETTLED_PAYMENTS:
        return False
    moved = await session.exec(
        update(Payment)
        .where(col(Payment.intent_id) == intent_id, col(Payment.status).in_(OPEN_PAYMENTS))
        .values(status=status, decline_code=decline_code, updated_at=utcnow())
        .returning(col(Payment.intent_id))
    )
    return moved.scalar_one_or_none() is not None


async def succeeded(session: AsyncSession, order_id: uuid.UUID) -> list[Payment]:
    """The order's payments that went through, in attempt order."""
    query = (
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED)
        .order_by(col(Payment.attempt))
    )
    return list(await session.exec(query))
