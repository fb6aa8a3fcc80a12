"""Two-stage money at the service level, on the real database: an authorization's moves and their
memo on the ledger, and a sale undone when its capture is refused (the end-to-end paths run
against localstripe and the YooKassa double: tests/test_*_checkout.py)."""

import uuid
from datetime import timedelta

from sqlmodel import col, select

from activities import inventory, ledger, payments
from activities.inventory import StockLine
from activities.payments import IntentState
from kassa.db import autocommit_scope, session_scope
from kassa.statuses import PaymentStatus
from kassa.tables import LedgerTransaction, Payment, Reservation, utcnow
from tests.conftest import Kassa, ledger_balances
from tests.flow import CARD, pay_now


async def _paid_order(kassa: Kassa) -> uuid.UUID:
    customer = await kassa.customer()
    async with customer.http() as http:
        answer = await pay_now(
            http, await customer.cart_with((await kassa.product(on_hand=2), 1)), CARD
        )
        assert answer.status_code == 201, answer.text
    return uuid.UUID(answer.json()["order_id"])


async def _memo(kassa: Kassa, intent_id: str) -> list[str]:
    async with session_scope(kassa.engine) as session:
        kinds = await session.exec(
            select(LedgerTransaction.kind)
            .where(LedgerTransaction.reference == intent_id)
            .order_by(col(LedgerTransaction.created_at))
        )
        return list(kinds)


async def _authorized(kassa: Kassa, order_id: uuid.UUID, attempt: int) -> str:
    intent_id = f"pi_two_stage_{uuid.uuid4().hex[:12]}"
    async with session_scope(kassa.engine) as session:
        await payments.record_attempt(
            session,
            order_id,
            attempt,
            40_000,
            "RUB",
            IntentState(intent_id, PaymentStatus.AUTHORIZED),
        )
    return intent_id


async def test_an_authorization_is_captured_or_voided_once_with_its_memo(kassa: Kassa) -> None:
    order_id = await _paid_order(kassa)
    captured, voided = await _authorized(kassa, order_id, 7), await _authorized(kassa, order_id, 8)
    async with session_scope(kassa.engine) as session:
        assert await payments.advance(session, captured, PaymentStatus.SUCCEEDED)
        assert await payments.advance(session, voided, PaymentStatus.CANCELED)
    async with session_scope(kassa.engine) as session:
        # Forward only: a captured one is not voided, a voided one not captured, nor failed.
        assert not await payments.advance(session, captured, PaymentStatus.CANCELED)
        assert not await payments.advance(session, voided, PaymentStatus.SUCCEEDED)
        assert not await payments.advance(session, voided, PaymentStatus.FAILED)
        assert not await payments.advance(session, captured, PaymentStatus.AUTHORIZED)
    assert await _memo(kassa, captured) == ["authorization", "capture"]
    assert await _memo(kassa, voided) == ["authorization", "void"]
    async with session_scope(kassa.engine) as session:
        # The memo never touches the money: what the provider owes us is the paid order's charge.
        paid = (
            select(Payment.amount)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED)
            .order_by(col(Payment.attempt))
        )
        order_total = (await session.exec(paid)).first()
        assert await ledger.charged(session, order_id) == order_total
    await ledger_balances(kassa)


async def test_a_sale_whose_capture_is_refused_goes_back_on_the_shelf(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    async with autocommit_scope(kassa.engine) as autocommit:
        held = await inventory.claim(
            autocommit,
            str(uuid.uuid4()),
            uuid.uuid4(),
            [StockLine(sku, 2)],
            utcnow() + timedelta(minutes=15),
        )
    async with session_scope(kassa.engine) as session:
        await inventory.commit(session, held.reservation_id)
    sold = await kassa.stock(sku)
    assert (sold.on_hand, sold.reserved) == (3, 0)
    for _ in range(2):  # a retried step changes nothing more
        async with session_scope(kassa.engine) as session:
            await inventory.restock(session, held.reservation_id)
    back = await kassa.stock(sku)
    assert (back.on_hand, back.reserved) == (5, 0)
    async with session_scope(kassa.engine) as session:
        assert (await session.get_one(Reservation, held.reservation_id)).status == "released"
