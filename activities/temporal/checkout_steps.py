"""The checkout's activities: thin wrappers that give the services to the worker.

One frozen dataclass in; out, only what the workflow reads. Business refusals become
non-retryable ApplicationErrors whose `type` is the domain error's code; anything else (database
restarting, acquirer unreachable) is retried by Temporal. Every activity is idempotent.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import carts, inventory, ledger, orders, payments
from activities.payments import IntentState
from activities.providers.protocol import (
    NewPayment,
    PaymentMethodRejected,
    PaymentProvider,
    ProviderPayment,
    capture_all,
    payment_key,
)
from activities.temporal.refusals import refusals_are_final
from kassa.db import session_scope
from kassa.errors import Conflict
from kassa.metrics import CHECKOUTS_ENDED
from kassa.statuses import ENDED, OrderStatus, PaymentStatus
from kassa.tables import Order

log = logging.getLogger("kassa.checkout")


@dataclass(frozen=True)
class ReservationInput:
    reservation_id: uuid.UUID


@dataclass(frozen=True)
class ExtendHoldInput:
    order_id: uuid.UUID
    reservation_id: uuid.UUID
    hold_expires_at: datetime


@dataclass(frozen=True)
class MarkOrderInput:
    order_id: uuid.UUID
    status: OrderStatus
    reason: str | None = None


@dataclass(frozen=True)
class PaidOrderInput:
    order_id: uuid.UUID
    reservation_id: uuid.UUID


@dataclass(frozen=True)
class InitiatePaymentInput:
    order_id: uuid.UUID
    attempt: int
    amount: int
    currency: str
    token: str | None


@dataclass(frozen=True)
class IntentInput:
    order_id: uuid.UUID
    intent_id: str


@dataclass(frozen=True)
class ReopenCartInput:
    cart_id: uuid.UUID
    cart_version: int


class CheckoutActivities:
    """What CheckoutWorkflow does to our database and the payment provider; the workflow reads
    only the intents these return."""

    def __init__(self, engine: AsyncEngine, provider: PaymentProvider, return_url: str) -> None:
        self._engine = engine
        self._provider = provider
        self._return_url = return_url

    @activity.defn
    async def commit_stock(self, request: ReservationInput) -> None:
        async with refusals_are_final(), session_scope(self._engine) as session:
            await inventory.commit(session, request.reservation_id)

    @activity.defn
    async def restock(self, request: ReservationInput) -> None:
        async with session_scope(self._engine) as session:
            await inventory.restock(session, request.reservation_id)

    @activity.defn
    async def release_stock(self, request: ReservationInput) -> None:
        async with refusals_are_final(), session_scope(self._engine) as session:
            await inventory.release(session, request.reservation_id)

    @activity.defn
    async def extend_hold(self, request: ExtendHoldInput) -> None:
        async with session_scope(self._engine) as session:
            await orders.extend_hold(
                session, request.order_id, request.reservation_id, request.hold_expires_at
            )
        log.info(
            "hold extended",
            extra={"order_id": request.order_id, "hold_expires_at": request.hold_expires_at},
        )

    @activity.defn
    async def mark_order(self, request: MarkOrderInput) -> None:
        async with refusals_are_final(), session_scope(self._engine) as session:
            order = await _transition(session, request.order_id, request.status, request.reason)
        _marked(order, request.reason)

    @activity.defn
    async def commit_and_mark_paid(self, request: PaidOrderInput) -> None:
        """The money is taken (one stage): the stock sold and the order PAID in one transaction,
        where `commit_stock` and `mark_order` took one each (the checkout's hot path). A refused
        commit leaves the order as it was, as it did when the commit ran first on its own."""
        async with refusals_are_final(), session_scope(self._engine) as session:
            await inventory.commit(session, request.reservation_id)
            order = await _transition(session, request.order_id, OrderStatus.PAID, None)
        _marked(order, None)

    @activity.defn
    async def initiate_payment(self, request: InitiatePaymentInput) -> IntentState:
        # Same key on every retry of this attempt: the provider makes at most one payment of it.
        payment = NewPayment(
            order_id=request.order_id,
            amount=request.amount,
            currency=request.currency,
            idempotency_key=payment_key(request.order_id, request.attempt, "create"),
            return_url=self._return_url,
            # Two-stage where the provider has it: the money is held now, and taken once the
            # stock is committed (capture_payment).
            capture=not self._provider.capabilities.two_stage,
            payment_method=request.token,
            description=f"Order {request.order_id}",
        )
        try:
            intent = _intent(await self._provider.create_payment(payment))
        except PaymentMethodRejected as rejected:
            log.info(
                "payment method rejected",
                extra={"order_id": request.order_id, "code": rejected.code},
            )
            return IntentState(
                intent_id="", status=PaymentStatus.FAILED, decline_code=rejected.code
            )
        async with session_scope(self._engine) as session:
            await payments.record_attempt(
                session, request.order_id, request.attempt, request.amount, request.currency, intent
            )
        log.info(
            "payment initiated",
            extra={
                "order_id": request.order_id,
                "intent_id": intent.intent_id,
                "status": intent.status,
            },
        )
        return intent

    @activity.defn
    async def check_payment(self, request: IntentInput) -> IntentState:
        return await self._recorded(
            request, _intent(await self._provider.get_payment(request.intent_id))
        )

    @activity.defn
    async def capture_payment(self, request: IntentInput) -> IntentState:
        """The authorized money taken, all of it; a refusal (the authorization is gone) is final,
        and what the provider says of the payment then is recorded first (its void on the ledger's
        memo). Per payment: a retry captures once."""
        captured, refused = await capture_all(self._provider, request.intent_id)
        recorded = await self._recorded(request, _intent(captured))
        async with refusals_are_final():
            if refused:
                raise Conflict("capture_refused", "The provider refused the capture: no hold.")
        return recorded

    @activity.defn
    async def cancel_payment(self, request: IntentInput) -> IntentState:
        # Per payment: whichever round of the checkout cancels it, the provider voids it once.
        cancelled = await self._provider.cancel(request.intent_id, f"{request.intent_id}:cancel")
        return await self._recorded(request, _intent(cancelled))

    async def _recorded(self, request: IntentInput, intent: IntentState) -> IntentState:
        async with session_scope(self._engine) as session:
            await payments.advance(session, intent.intent_id, intent.status, intent.decline_code)
        log.info(
            "payment status",
            extra={
                "order_id": request.order_id,
                "intent_id": intent.intent_id,
                "status": intent.status,
            },
        )
        return intent

    @activity.defn
    async def reopen_cart(self, request: ReopenCartInput) -> None:
        async with session_scope(self._engine) as session:
            await carts.reopen(session, request.cart_id, request.cart_version)

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.extend_hold,
            self.initiate_payment,
            self.check_payment,
            self.cancel_payment,
            self.commit_stock,
            self.release_stock,
            self.restock,
            self.capture_payment,
            self.mark_order,
            self.commit_and_mark_paid,
            self.reopen_cart,
        ]


async def _transition(
    session: AsyncSession, order_id: uuid.UUID, status: OrderStatus, reason: str | None
) -> Order:
    order = await orders.transition(session, order_id, status, reason)
    if order.status == OrderStatus.PAID:
        # The money is in: on the ledger in the same transaction as the order's PAID. The order
        # keeps its first success; any other is left to reconciliation to refund.
        await ledger.record_first_charge(session, order.id)
    return order


def _marked(order: Order, reason: str | None) -> None:
    if order.status in ENDED and activity.info().attempt == 1:
        CHECKOUTS_ENDED.labels(order.status).inc()
    log.info("order marked", extra={"order_id": order.id, "status": order.status, "reason": reason})


def _intent(payment: ProviderPayment) -> IntentState:
    return IntentState(
        payment.payment_id, payment.status, payment.redirect_url, payment.decline_code
    )
