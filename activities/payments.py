"""Payments: our record of each attempt (the provider's own API is behind activities/providers)."""

import uuid
from dataclasses import dataclass

from sqlalchemy import literal_column, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import ledger
from kassa.statuses import PAYMENT_MOVES_FROM, PaymentStatus
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
    """Idempotent: a retried attempt (same intent) is recorded once, and an authorization goes on
    the ledger's memo once."""
    recorded = await session.exec(
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
        .returning(col(Payment.intent_id))
    )
    if recorded.scalar_one_or_none() is not None and intent.status == PaymentStatus.AUTHORIZED:
        await ledger.record_hold(
            session, "authorization", order_id, intent.intent_id, amount, currency
        )


async def advance(
    session: AsyncSession, intent_id: str, status: str, decline_code: str | None = None
) -> bool:
    """Record a newer status of an intent (the provider's word, `IntentState.status`); True if it
    moved. Forward only (`PAYMENT_MOVES_FROM`): a stale, repeated or unknown status changes
    nothing. An authorization, and its capture or void, go on the ledger's memo in the same
    transaction."""
    if status not in PAYMENT_MOVES_FROM:
        return False
    target = PaymentStatus(status)
    # One statement: the guarded UPDATE, and the status it moved from by RETURNING OLD
    # (PostgreSQL 18).
    row = (
        await session.exec(
            update(Payment)
            .where(
                col(Payment.intent_id) == intent_id,
                col(Payment.status).in_(PAYMENT_MOVES_FROM[target]),
            )
            .values(status=target, decline_code=decline_code, updated_at=utcnow())
            .returning(Payment, literal_column("old.status"))
        )
    ).one_or_none()
    if row is None:
        return False
    moved, before = row
    memo = _MEMO.get((before == PaymentStatus.AUTHORIZED, target))
    if memo is not None:
        await ledger.record_hold(
            session, memo, moved.order_id, intent_id, moved.amount, moved.currency
        )
    return True


# The ledger's memo entry of a move: (from an authorization?, to) → kind.
_MEMO = {
    (False, PaymentStatus.AUTHORIZED): "authorization",
    (True, PaymentStatus.SUCCEEDED): "capture",
    (True, PaymentStatus.CANCELED): "void",
    # The provider let go of the hold itself (expired before its capture): closed all the same.
    (True, PaymentStatus.FAILED): "void",
}
