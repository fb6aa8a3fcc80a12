"""The money ledger: double entry, one transaction per charge or refund at the acquirer, and
per movement of loyalty points that changes a balance.

A charge moves money from the customer's prepayment liability to what the acquirer owes us;
a refund moves it back. Points are a liability too (1 point = 1 kopeck): accrued as a loyalty
expense, burnt when they pay part of an order (the customer's prepayment), and moved back by a
reversal or a return. Every transaction's postings sum to zero; recording the same reference
twice changes nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.tables import LedgerPosting, LedgerTransaction, utcnow

RECEIVABLE = "acquirer_receivable"
PREPAYMENTS = "customer_prepayments"
POINTS_OWED = "loyalty_points_owed"
LOYALTY_EXPENSE = "loyalty_expense"
# Memo accounts of two-stage payments: money the provider holds on the customer's card for us,
# not ours yet. An authorization opens the memo; its capture (with the charge) or void closes it.
CARD_HOLDS = "card_authorizations"
HELD_FOR_ORDERS = "authorized_for_orders"

# Each kind moves its amount from the second account to the first.
ACCOUNTS_OF_KIND = {
    "charge": (RECEIVABLE, PREPAYMENTS),
    "refund": (PREPAYMENTS, RECEIVABLE),
    "points_accrued": (LOYALTY_EXPENSE, POINTS_OWED),
    "points_reversed": (POINTS_OWED, LOYALTY_EXPENSE),
    "points_burnt": (POINTS_OWED, PREPAYMENTS),
    "points_returned": (PREPAYMENTS, POINTS_OWED),
    "authorization": (CARD_HOLDS, HELD_FOR_ORDERS),
    "capture": (HELD_FOR_ORDERS, CARD_HOLDS),
    "void": (HELD_FOR_ORDERS, CARD_HOLDS),
}


@dataclass(frozen=True)
class PostingView:
    account: str
    amount: int
    currency: str


@dataclass(frozen=True)
class TransactionView:
    id: uuid.UUID
    kind: str
    reference: str
    order_id: uuid.UUID
    created_at: datetime
    postings: list[PostingView]


# A transaction and its two postings in one round trip, for the movement `entry` names (reference,
# amount, currency); nothing when (kind, reference) is recorded, or `entry` names none.
_POST = """WITH entry AS ({entry}), recorded AS (
    INSERT INTO ledger_transactions (id, kind, reference, order_id, created_at)
    SELECT :id, :kind, entry.reference, :order_id, :created_at FROM entry
    ON CONFLICT (kind, reference) DO NOTHING
    RETURNING id
)
INSERT INTO ledger_postings (transaction_id, account, amount, currency)
SELECT recorded.id, posting.account, posting.amount, entry.currency
FROM recorded, entry,
    LATERAL (VALUES (CAST(:debit AS varchar), entry.amount), (:credit, -entry.amount))
    AS posting (account, amount)
RETURNING transaction_id"""
_POST_GIVEN = text(
    _POST.format(
        entry="SELECT CAST(:reference AS varchar) AS reference, CAST(:amount AS bigint) AS amount,"
        " CAST(:currency AS varchar) AS currency"
    )
)
# The order's first payment that went through (the one it keeps; reconciliation refunds others).
_POST_FIRST_SUCCESS = text(
    _POST.format(
        entry="SELECT intent_id AS reference, CAST(amount AS bigint) AS amount, currency"
        " FROM payments WHERE order_id = :order_id AND status = 'succeeded'"
        " ORDER BY attempt LIMIT 1"
    )
)


async def _post(
    session: AsyncSession,
    kind: str,
    reference: str,
    order_id: uuid.UUID,
    amount: int,
    currency: str,
) -> bool:
    """Idempotent on (kind, reference): True if this call recorded it."""
    given = {"reference": reference, "amount": amount, "currency": currency}
    return await _posted(session, _POST_GIVEN, kind, order_id, given)


async def _posted(
    session: AsyncSession,
    statement: TextClause,
    kind: str,
    order_id: uuid.UUID,
    entry: dict[str, Any],
) -> bool:
    debit, credit = ACCOUNTS_OF_KIND[kind]
    params = {
        "id": uuid.uuid4(),
        "kind": kind,
        "order_id": order_id,
        "created_at": utcnow(),
        "debit": debit,
        "credit": credit,
        **entry,
    }
    # sqlmodel's `exec` runs a text() too; only its overloads leave it out (as in inventory.py).
    posted = await session.exec(statement, params=params)  # type: ignore[call-overload]
    return bool(posted.all())


async def record_first_charge(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """The order's first succeeded payment as its charge, read and recorded in one round trip."""
    return await _posted(session, _POST_FIRST_SUCCESS, "charge", order_id, {})


async def record_charge(
    session: AsyncSession, order_id: uuid.UUID, intent_id: str, amount: int, currency: str
) -> bool:
    return await _post(session, "charge", intent_id, order_id, amount, currency)


async def record_hold(
    session: AsyncSession,
    kind: str,
    order_id: uuid.UUID,
    intent_id: str,
    amount: int,
    currency: str,
) -> bool:
    """An authorization, its capture or its void (`kind`), once per payment."""
    return await _post(session, kind, intent_id, order_id, amount, currency)


async def record_refund(
    session: AsyncSession, order_id: uuid.UUID, refund_id: str, amount: int, currency: str
) -> bool:
    return await _post(session, "refund", refund_id, order_id, amount, currency)


async def record_points(
    session: AsyncSession,
    kind: str,
    reference: str,
    order_id: uuid.UUID,
    points: int,
    currency: str,
) -> bool:
    return await _post(session, f"points_{kind}", reference, order_id, points, currency)


async def charged(session: AsyncSession, order_id: uuid.UUID) -> int:
    """Money in for the order, net of refunds: what the acquirer owes us for it."""
    total = await session.exec(
        select(func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction, col(LedgerTransaction.id) == col(LedgerPosting.transaction_id))
        .where(LedgerTransaction.order_id == order_id, LedgerPosting.account == RECEIVABLE)
    )
    return int(total.one())


async def charge_references(session: AsyncSession, order_id: uuid.UUID) -> list[str]:
    query = select(LedgerTransaction.reference).where(
        LedgerTransaction.order_id == order_id, LedgerTransaction.kind == "charge"
    )
    return list(await session.exec(query))


async def transactions(
    session: AsyncSession, order_id: uuid.UUID | None, limit: int = 100
) -> list[TransactionView]:
    query = select(LedgerTransaction).order_by(col(LedgerTransaction.created_at)).limit(limit)
    if order_id is not None:
        query = query.where(LedgerTransaction.order_id == order_id)
    found = list(await session.exec(query))
    postings = await session.exec(
        select(LedgerPosting)
        .where(col(LedgerPosting.transaction_id).in_([t.id for t in found]))
        .order_by(col(LedgerPosting.id))
    )
    by_transaction: dict[uuid.UUID, list[PostingView]] = {}
    for posting in postings:
        by_transaction.setdefault(posting.transaction_id, []).append(
            PostingView(posting.account, posting.amount, posting.currency)
        )
    return [
        TransactionView(
            t.id, t.kind, t.reference, t.order_id, t.created_at, by_transaction.get(t.id, [])
        )
        for t in found
    ]
