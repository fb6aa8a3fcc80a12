"""The checkout's activities: thin wrappers that give the services to the worker.

One frozen dataclass in, one dataclass out. Business refusals (out of stock, cart changed…) become
non-retryable ApplicationErrors whose `type` is the domain error's code; anything else (database
restarting, acquirer unreachable) is retried by Temporal. Every activity is idempotent.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import auth, carts, inventory, ledger, orders, payments
from activities.inventory import OutOfStock, StockLine
from activities.payments import AcquirerClient, IntentState
from kassa.db import session_scope
from kassa.errors import DomainError
from kassa.metrics import CHECKOUTS_ENDED, CHECKOUTS_STARTED, ENDED_STATUSES, RESERVATION_CONFLICTS
from kassa.tables import Order, OrderLine

log = logging.getLogger("kassa.checkout")


@dataclass(frozen=True)
class CreateOrderInput:
    order_id: str
    workflow_id: str
    customer_id: str
    cart_id: str
    cart_version: int
    address_id: str | None = None
    redeem_points: int = 0


@dataclass(frozen=True)
class CreatedOrder:
    order_id: str
    total: int
    currency: str
    lines: list[StockLine]


@dataclass(frozen=True)
class VerifyCustomerInput:
    customer_id: str


@dataclass(frozen=True)
class VerifiedCustomer:
    customer_id: str
    role: str


@dataclass(frozen=True)
class ReserveStockInput:
    order_id: str
    lines: list[StockLine]
    hold_expires_at: datetime


@dataclass(frozen=True)
class StockReserved:
    reservation_id: str
    hold_expires_at: datetime


@dataclass(frozen=True)
class PlacedOrder:
    """An order the gateway placed with its stock held (activities/placement.py): its run starts at payment."""

    order: CreatedOrder
    reservation: StockReserved

    @classmethod
    def of(cls, order: Order, lines: list[StockLine]) -> "PlacedOrder":
        assert order.reservation_id is not None and order.hold_expires_at is not None, "placed orders are held"
        created = CreatedOrder(str(order.id), order.total, order.currency, lines)
        return cls(created, StockReserved(str(order.reservation_id), order.hold_expires_at))


@dataclass(frozen=True)
class ReservationInput:
    reservation_id: str


@dataclass(frozen=True)
class ReservationSettled:
    reservation_id: str
    status: str


@dataclass(frozen=True)
class MarkPendingPaymentInput:
    order_id: str
    reservation_id: str
    hold_expires_at: datetime


@dataclass(frozen=True)
class ExtendHoldInput:
    order_id: str
    reservation_id: str
    hold_expires_at: datetime


@dataclass(frozen=True)
class HoldExtended:
    order_id: str
    hold_expires_at: datetime


@dataclass(frozen=True)
class MarkOrderInput:
    order_id: str
    status: str
    reason: str | None = None
    skus: list[str] | None = None


@dataclass(frozen=True)
class OrderMarked:
    order_id: str
    status: str


@dataclass(frozen=True)
class InitiatePaymentInput:
    order_id: str
    attempt: int
    amount: int
    currency: str
    token: str


@dataclass(frozen=True)
class IntentInput:
    order_id: str
    intent_id: str


@dataclass(frozen=True)
class ReopenCartInput:
    cart_id: str
    cart_version: int


@dataclass(frozen=True)
class CartReopened:
    cart_id: str
    version: int


@asynccontextmanager
async def refusals_are_final() -> AsyncIterator[None]:
    try:
        yield
    except DomainError as refusal:
        # BENIGN: an expected answer (out of stock…), logged quietly rather than as a failure.
        raise ApplicationError(
            refusal.message, refusal.detail, type=refusal.code, non_retryable=True, category=ApplicationErrorCategory.BENIGN
        ) from None


class CheckoutActivities:
    def __init__(self, engine: AsyncEngine, acquirer: AcquirerClient, return_url: str) -> None:
        self._engine = engine
        self._acquirer = acquirer
        self._return_url = return_url

    @activity.defn
    async def create_order(self, request: CreateOrderInput) -> CreatedOrder:
        if activity.info().attempt == 1:  # counted once per checkout, not per retry
            CHECKOUTS_STARTED.inc()
        async with refusals_are_final(), self._reopening_refused_cart(request):
            async with session_scope(self._engine) as session:
                order = await orders.create_from_cart(
                    session,
                    uuid.UUID(request.order_id),
                    request.workflow_id,
                    uuid.UUID(request.customer_id),
                    uuid.UUID(request.cart_id),
                    request.cart_version,
                    uuid.UUID(request.address_id) if request.address_id else None,
                    request.redeem_points,
                )
                query = select(OrderLine).where(OrderLine.order_id == order.id).order_by(col(OrderLine.sku))
                lines = [StockLine(l.sku, l.quantity) for l in await session.exec(query)]
                created = CreatedOrder(request.order_id, order.total, order.currency, lines)
        log.info(
            "order created",
            extra={"order_id": request.order_id, "total": order.total, "discount": order.discount, "points": order.points},
        )
        return created

    @asynccontextmanager
    async def _reopening_refused_cart(self, request: CreateOrderInput) -> AsyncIterator[None]:
        try:
            yield
        except DomainError as refusal:
            if refusal.code in orders.REFUSALS_THAT_REOPEN:
                async with session_scope(self._engine) as session:
                    await carts.bump_after_refusal(session, uuid.UUID(request.cart_id), request.cart_version)
                log.info("pay now refused, cart given a new version", extra={"cart_id": request.cart_id, "code": refusal.code})
            raise

    @activity.defn
    async def verify_customer(self, request: VerifyCustomerInput) -> VerifiedCustomer:
        async with refusals_are_final(), session_scope(self._engine) as session:
            user = await auth.verify_customer(session, uuid.UUID(request.customer_id))
            return VerifiedCustomer(str(user.id), user.role)

    @activity.defn
    async def reserve_stock(self, request: ReserveStockInput) -> StockReserved:
        async with refusals_are_final(), session_scope(self._engine) as session:
            try:
                reservation = await inventory.reserve(
                    session, uuid.UUID(request.order_id), request.lines, request.hold_expires_at
                )
            except OutOfStock:
                RESERVATION_CONFLICTS.labels("reservation").inc()
                raise
            reserved = StockReserved(str(reservation.id), reservation.hold_expires_at)
        log.info("stock reserved", extra={"order_id": request.order_id, "reservation_id": reserved.reservation_id})
        return reserved

    @activity.defn
    async def commit_stock(self, request: ReservationInput) -> ReservationSettled:
        async with refusals_are_final(), session_scope(self._engine) as session:
            reservation = await inventory.commit(session, uuid.UUID(request.reservation_id))
            return ReservationSettled(str(reservation.id), reservation.status)

    @activity.defn
    async def release_stock(self, request: ReservationInput) -> ReservationSettled:
        async with refusals_are_final(), session_scope(self._engine) as session:
            reservation = await inventory.release(session, uuid.UUID(request.reservation_id))
            return ReservationSettled(str(reservation.id), reservation.status)

    @activity.defn
    async def mark_pending_payment(self, request: MarkPendingPaymentInput) -> OrderMarked:
        async with refusals_are_final(), session_scope(self._engine) as session:
            order = await orders.transition(
                session,
                uuid.UUID(request.order_id),
                "PENDING_PAYMENT",
                reservation_id=uuid.UUID(request.reservation_id),
                hold_expires_at=request.hold_expires_at,
            )
            return OrderMarked(str(order.id), order.status)

    @activity.defn
    async def extend_hold(self, request: ExtendHoldInput) -> HoldExtended:
        async with session_scope(self._engine) as session:
            await inventory.extend_hold(session, uuid.UUID(request.reservation_id), request.hold_expires_at)
            await orders.extend_hold(session, uuid.UUID(request.order_id), request.hold_expires_at)
        log.info("hold extended", extra={"order_id": request.order_id, "hold_expires_at": request.hold_expires_at.isoformat()})
        return HoldExtended(request.order_id, request.hold_expires_at)

    @activity.defn
    async def mark_order(self, request: MarkOrderInput) -> OrderMarked:
        detail = {"skus": request.skus} if request.skus else None
        async with refusals_are_final(), session_scope(self._engine) as session:
            order = await orders.transition(session, uuid.UUID(request.order_id), request.status, request.reason, detail)
            if order.status == "PAID":
                # The money is in: on the ledger in the same transaction as the order's PAID. The
                # order keeps its first success; any other is left to reconciliation to refund.
                for payment in (await payments.succeeded(session, order.id))[:1]:
                    await ledger.record_charge(session, order.id, payment.intent_id, payment.amount, payment.currency)
        if order.status in ENDED_STATUSES and activity.info().attempt == 1:
            CHECKOUTS_ENDED.labels(order.status).inc()
        log.info("order marked", extra={"order_id": request.order_id, "status": order.status, "reason": request.reason})
        return OrderMarked(str(order.id), order.status)

    @activity.defn
    async def initiate_payment(self, request: InitiatePaymentInput) -> IntentState:
        # Same key on every retry of this attempt: the acquirer makes at most one intent of it.
        key = f"{request.order_id}-attempt-{request.attempt}"
        try:
            intent = await self._acquirer.create_intent(
                key, request.amount, request.currency, request.token, request.order_id, self._return_url
            )
        except payments.PaymentMethodRejected as rejected:
            log.info("payment method rejected", extra={"order_id": request.order_id, "code": rejected.code})
            return IntentState(intent_id="", status="failed", decline_code=rejected.code)
        async with session_scope(self._engine) as session:
            await payments.record_attempt(
                session, uuid.UUID(request.order_id), request.attempt, request.amount, request.currency, intent
            )
        log.info(
            "payment initiated",
            extra={"order_id": request.order_id, "intent_id": intent.intent_id, "status": intent.status},
        )
        return intent

    @activity.defn
    async def check_payment(self, request: IntentInput) -> IntentState:
        return await self._recorded(request, await self._acquirer.get_intent(request.intent_id))

    @activity.defn
    async def cancel_payment(self, request: IntentInput) -> IntentState:
        return await self._recorded(request, await self._acquirer.cancel_intent(request.intent_id))

    async def _recorded(self, request: IntentInput, intent: IntentState) -> IntentState:
        async with session_scope(self._engine) as session:
            await payments.advance(session, intent.intent_id, intent.status, intent.decline_code)
        log.info("payment status", extra={"order_id": request.order_id, "intent_id": intent.intent_id, "status": intent.status})
        return intent

    @activity.defn
    async def reopen_cart(self, request: ReopenCartInput) -> CartReopened:
        async with session_scope(self._engine) as session:
            version = await carts.reopen(session, uuid.UUID(request.cart_id), request.cart_version)
            return CartReopened(request.cart_id, version)

    def all(self) -> list:  # type: ignore[type-arg]
        return [
            self.create_order,
            self.verify_customer,
            self.reserve_stock,
            self.mark_pending_payment,
            self.extend_hold,
            self.initiate_payment,
            self.check_payment,
            self.cancel_payment,
            self.commit_stock,
            self.release_stock,
            self.mark_order,
            self.reopen_cart,
        ]
