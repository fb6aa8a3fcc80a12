"""Activities for money after the checkout: refunds, late payments, reconciliation.

One frozen dataclass in, one out; business refusals are non-retryable ApplicationErrors typed
by the domain error's code; the acquirer's outages are retried by Temporal.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities import payments, refunds
from activities.providers.protocol import PaymentProvider, ProviderUnavailable, capture_all
from activities.temporal.refusals import refusals_are_final
from kassa.db import session_scope
from kassa.errors import DomainError
from kassa.statuses import OrderStatus, PaymentStatus
from kassa.tables import Order, Payment

log = logging.getLogger("kassa.money")

# Open payments of ended orders asked about again per reconciliation, and at once: within the
# activity's timeout even when the provider answers slowly.
OPEN_PAYMENTS_ASKED = 20
ASKED_AT_ONCE = 10


@dataclass(frozen=True)
class RefundPaymentInput:
    order_id: uuid.UUID
    idempotency_key: str
    reason: str
    amount: int | None = None  # None: everything charged that is left
    intent_id: str | None = None


@dataclass(frozen=True)
class RefundDone:
    refund_id: str
    amount: int
    order_status: OrderStatus


@dataclass(frozen=True)
class LatePaymentInput:
    order_id: uuid.UUID
    intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class LatePaymentSettled:
    outcome: str  # counted | completed | refund | capture | void, or the provider's status


@dataclass(frozen=True)
class FindUnsettledInput:
    limit: int = 100


@dataclass(frozen=True)
class UnsettledPayments:
    payments: list[LatePaymentInput]


class MoneyActivities:
    def __init__(self, engine: AsyncEngine, provider: PaymentProvider) -> None:
        self._engine = engine
        self._provider = provider

    @activity.defn
    async def refund_payment(self, request: RefundPaymentInput) -> RefundDone:
        """Idempotent on the key: the acquirer refunds once, we record once."""
        order_id = request.order_id
        key = request.idempotency_key
        async with refusals_are_final():
            async with session_scope(self._engine) as session:
                done = await refunds.refund_by_key(session, key)
                plan = (
                    None
                    if done
                    else await refunds.plan_refund(
                        session, order_id, request.amount, request.intent_id
                    )
                )
            if plan is not None:
                refund = await self._provider.refund(plan.intent_id, plan.amount, key)
                async with session_scope(self._engine) as session:
                    await refunds.record_refund(
                        session, order_id, refund, plan.currency, request.reason, key
                    )
                log.info(
                    "refunded",
                    extra={
                        "order_id": request.order_id,
                        "refund_id": refund.refund_id,
                        "amount": refund.amount,
                    },
                )
        async with session_scope(self._engine) as session:
            done = await refunds.refund_by_key(session, key)
            order = await session.get_one(Order, order_id)
        assert done is not None
        return RefundDone(done.id, done.amount, OrderStatus(order.status))

    @activity.defn
    async def settle_late_payment(self, request: LatePaymentInput) -> LatePaymentSettled:
        """A success: counted, completed or refund. An authorization (money held, not taken):
        capture (its order's stock is held for it again) or void."""
        async with refusals_are_final(), session_scope(self._engine) as session:
            payment = await session.get_one(Payment, request.intent_id)
            if payment.status == PaymentStatus.AUTHORIZED:
                outcome = await refunds.hold_for_late_authorization(
                    session, request.order_id, request.intent_id
                )
            else:
                outcome = await refunds.settle_late_payment(
                    session, request.order_id, request.intent_id, request.amount, request.currency
                )
        log.info(
            "late payment",
            extra={
                "order_id": request.order_id,
                "intent_id": request.intent_id,
                "outcome": outcome,
            },
        )
        return LatePaymentSettled(outcome)

    @activity.defn
    async def capture_late_payment(self, request: LatePaymentInput) -> LatePaymentSettled:
        """A late authorization taken, its order's stock held for it (`settle_late_payment`): the
        provider's status after, `succeeded` once the money is in. A refusal (the hold is gone)
        gives the stock back. Per payment: a retry captures once."""
        captured, refused = await capture_all(self._provider, request.intent_id)
        async with session_scope(self._engine) as session:
            await payments.advance(
                session, captured.payment_id, captured.status, captured.decline_code
            )
            if refused:
                await refunds.release_late_hold(session, request.intent_id)
        return LatePaymentSettled(captured.status)

    @activity.defn
    async def void_payment(self, request: LatePaymentInput) -> LatePaymentSettled:
        """An authorization nobody will capture, let go at the provider (and closed on the
        ledger's memo). Per payment: a retry voids once. Its own key: the checkout's cancel of the
        payment (`{intent}:cancel`) may have come first, refused while the customer was still on
        the provider's page, and the provider answers a repeated key with that first answer."""
        async with refusals_are_final():
            voided = await self._provider.cancel(request.intent_id, f"{request.intent_id}:void")
        async with session_scope(self._engine) as session:
            await payments.advance(session, voided.payment_id, voided.status, voided.decline_code)
        log.info(
            "late authorization voided",
            extra={"order_id": request.order_id, "intent_id": request.intent_id},
        )
        return LatePaymentSettled(voided.status)

    @activity.defn
    async def find_unsettled_payments(self, request: FindUnsettledInput) -> UnsettledPayments:
        """Money no checkout took. A payment of an ended order still open on our record is asked
        about first: its webhook may have been lost after the run that polled it ended."""
        async with session_scope(self._engine) as session:
            still_open = await refunds.open_payments_of_ended_orders(
                session, min(request.limit, OPEN_PAYMENTS_ASKED)
            )
        at_once = asyncio.Semaphore(ASKED_AT_ONCE)
        await asyncio.gather(*(self._ask_again(p.intent_id, at_once) for p in still_open))
        async with session_scope(self._engine) as session:
            found = await refunds.unsettled_payments(session, request.limit)
        return UnsettledPayments(
            [LatePaymentInput(p.order_id, p.intent_id, p.amount, p.currency) for p in found]
        )

    async def _ask_again(self, intent_id: str, at_once: asyncio.Semaphore) -> None:
        """The provider's word on the payment, recorded (forward only). A payment it cannot tell
        about now (unreachable, or unknown to it) is asked again at the next reconciliation, and
        keeps no other from being settled."""
        try:
            async with at_once:
                now = await self._provider.get_payment(intent_id)
        except (ProviderUnavailable, DomainError) as error:
            log.warning(
                "open payment not asked again", extra={"intent_id": intent_id, "error": str(error)}
            )
            return
        async with session_scope(self._engine) as session:
            await payments.advance(session, now.payment_id, now.status, now.decline_code)

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.refund_payment,
            self.settle_late_payment,
            self.capture_late_payment,
            self.void_payment,
            self.find_unsettled_payments,
        ]
