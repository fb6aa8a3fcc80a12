"""The gateway's calls to workflows, and their answers shaped for HTTP: Pay Now
(`ask_for_payment`, the run's input `checkout_input`) and pay again (`payment_answer`,
`refusal_problem`), cancel (`cancel_unpaid`), and a payment event handed on to the order's run or
to a late payment's (`hand_on`)."""

import contextlib
import logging
import uuid
from datetime import datetime

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import orders
from activities.temporal.money_steps import LatePaymentInput
from activities.webhook_inbox import Charge, PaymentNews
from api.problems import problem
from kassa.db import session_scope
from kassa.errors import Conflict
from kassa.settings import Settings
from kassa.statuses import OrderStatus, PaymentStatus
from kassa.tables import Order
from workflows.checkout import (
    UNANSWERED_ATTEMPT,
    CheckoutInput,
    CheckoutResult,
    CheckoutState,
    CheckoutWorkflow,
    HeldStock,
    OrderToPay,
    PaymentMethod,
    PaymentUpdate,
    PlacedOrder,
    starting_search_attributes,
)
from workflows.money_back import LatePaymentWorkflow, late_payment_workflow_id

# Its lines are the webhook's: only `hand_on` logs.
log = logging.getLogger("kassa.webhooks")

# Spelled out where a handle is taken: mypy does not infer it from `CheckoutWorkflow.run` alone.
CheckoutHandle = WorkflowHandle[CheckoutWorkflow, CheckoutResult]


async def ask_for_payment(
    temporal: Client, settings: Settings, order: Order, method: PaymentMethod
) -> CheckoutState:
    """Pay Now's call: the placed order's run, started or attached to (a double tap), answers once
    its first payment attempt has an outcome. An order that has ended is answered by its run while
    it is still finishing, and never started again: 409 `cart_checked_out` once it is over."""
    try:
        if order.status == OrderStatus.PENDING_PAYMENT:
            return await _start_or_attach(temporal, settings, order, method)
        handle: CheckoutHandle = temporal.get_workflow_handle_for(
            CheckoutWorkflow.run, order.workflow_id
        )
        return await handle.execute_update(CheckoutWorkflow.pay_now)
    except (WorkflowAlreadyStartedError, RPCError) as gone:
        if isinstance(gone, RPCError) and gone.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Conflict(
            "cart_checked_out",
            "This cart was already checked out: see the order, or GET /cart for a new cart.",
            order_id=str(order.id),
        ) from None


def checkout_input(order: Order, method: PaymentMethod, hold_grace_seconds: int) -> CheckoutInput:
    """The run's input: the order the gateway placed, PENDING_PAYMENT, with its stock held."""
    assert order.reservation_id is not None and order.hold_expires_at is not None, (
        "a placed order is held"
    )
    placed = PlacedOrder(
        OrderToPay(order.id, order.total, order.currency),
        HeldStock(order.reservation_id, order.hold_expires_at),
    )
    return CheckoutInput(
        order.user_id, order.cart_id, order.cart_version, method, placed, hold_grace_seconds
    )


async def _start_or_attach(
    temporal: Client, settings: Settings, order: Order, method: PaymentMethod
) -> CheckoutState:
    checkout = checkout_input(order, method, settings.hold_grace_seconds)
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        checkout,
        id=order.workflow_id,
        task_queue=settings.task_queue,
        search_attributes=starting_search_attributes(checkout),
        static_summary=(
            f"Pay Now: cart {order.cart_id} v{order.cart_version} of customer {order.user_id}"
        ),
        static_details=(
            f"Order {order.id} placed by the gateway,"
            f" stock held until {order.hold_expires_at:%H:%M:%S} UTC"
        ),
        # A double tap attaches to the running checkout; a finished one is never started again.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    return await temporal.execute_update_with_start_workflow(
        CheckoutWorkflow.pay_now, start_workflow_operation=start
    )


class AttemptAnswer(BaseModel):
    status: str  # a PaymentStatus, or "unavailable": the bank did not answer
    intent_id: str | None
    decline_code: str | None


class PaymentAnswer(BaseModel):
    """Pay Now's answer, and another attempt's: the order, and where to pay when the bank asks
    for 3-D Secure (`payment_url`)."""

    order_id: uuid.UUID
    status: OrderStatus
    hold_expires_at: datetime
    payment_url: str | None
    payment: AttemptAnswer | None
    attempts: int


class CancelAnswer(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus


def payment_answer(state: CheckoutState, created: bool) -> JSONResponse:
    """201/200 with the order and where to pay; 402 when declined, 503 when the bank did not
    answer (a problem with the same fields, the order's status as `order_status`)."""
    payment = state.payment
    answer = PaymentAnswer(
        order_id=state.order_id,
        status=state.status,
        hold_expires_at=state.hold_expires_at,
        payment_url=payment.payment_url
        if payment and payment.status == PaymentStatus.REQUIRES_ACTION
        else None,
        payment=AttemptAnswer(
            status=payment.status,
            intent_id=payment.intent_id or None,
            decline_code=payment.decline_code,
        )
        if payment
        else None,
        attempts=state.attempts,
    )
    body = answer.model_dump(mode="json")
    unpaid = _unpaid_attempt(state)
    if unpaid is not None:
        status, code, detail, retry = unpaid
        body["order_status"] = body.pop("status")
        return problem(status, code, detail, retry_allowed=retry, **body)
    return JSONResponse(body, status_code=201 if created else 200)


def _unpaid_attempt(state: CheckoutState) -> tuple[int, str, str, bool] | None:
    """An attempt that did not pay: HTTP status, code, what to do next, and whether to retry."""
    payment = state.payment
    if payment is None:
        return None
    if payment.status == UNANSWERED_ATTEMPT and state.status == OrderStatus.PENDING_PAYMENT:
        detail = (
            "The bank did not answer: the stock stays held, try again with POST /orders/{id}/pay."
        )
        return 503, "payment_unavailable", detail, True
    if payment.status == PaymentStatus.FAILED and state.status == OrderStatus.PENDING_PAYMENT:
        detail = (
            "The payment was declined: try another method with POST /orders/{id}/pay"
            " before the hold ends."
        )
        return 402, "payment_declined", detail, True
    if payment.status == PaymentStatus.FAILED and state.status == OrderStatus.PAYMENT_FAILED:
        detail = (
            "The payment was declined three times: the order has ended and the cart is yours again."
        )
        return 402, "payment_declined", detail, False
    return None


def refusal_problem(error: WorkflowUpdateFailedError) -> JSONResponse:
    cause = error.cause
    if not isinstance(cause, ApplicationError) or cause.type is None:
        raise error
    detail = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
    return problem(409, cause.type, cause.message, **detail)


async def order_before_workflow_call(
    engine: AsyncEngine, customer_id: uuid.UUID | None, order_id: uuid.UUID
) -> Order:
    """The customer's order (None: any order, for staff). A short read, closed before the workflow
    call: no connection is held while it runs."""
    async with session_scope(engine) as session:
        return await orders.owned_order(session, customer_id, order_id)


def order_closed(status: str) -> Conflict:
    return Conflict(
        "order_closed", f"The order is {status}: it takes no more changes.", order_status=status
    )


async def cancel_unpaid(temporal: Client, order: Order, reason: str) -> JSONResponse:
    """Cancel through the order's workflow, which refuses a paid or ended order: the customer's
    way, and support's."""
    handle: CheckoutHandle = temporal.get_workflow_handle_for(
        CheckoutWorkflow.run, order.workflow_id
    )
    try:
        state = await handle.execute_update(CheckoutWorkflow.cancel, reason)
    except WorkflowUpdateFailedError as refused:
        return refusal_problem(refused)
    except RPCError:
        raise order_closed(order.status) from None
    if state.status != OrderStatus.CANCELLED:
        return problem(
            409,
            "order_not_cancellable",
            f"The order became {state.status} first.",
            order_status=state.status,
        )
    return JSONResponse(
        CancelAnswer(order_id=state.order_id, status=state.status).model_dump(mode="json")
    )


async def hand_on(temporal: Client, task_queue: str, news: PaymentNews) -> str:
    """Tell the order's workflow; returns the outcome (signalled, late). If it has ended, a success
    is a late payment with a workflow of its own (keyed by the intent, so it runs once). Temporal
    unreachable raises RPCError: the event stays unprocessed and the provider's retry delivers it
    again (a repeated signal is harmless: the workflow's first word on an intent stands)."""
    handle: CheckoutHandle = temporal.get_workflow_handle_for(
        CheckoutWorkflow.run, news.workflow_id
    )
    try:
        await handle.signal(
            CheckoutWorkflow.payment_updated,
            PaymentUpdate(news.intent_id, news.status, news.decline_code),
        )
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        log.info(
            "webhook after checkout ended",
            extra={
                "order_id": str(news.order_id),
                "intent_id": news.intent_id,
                "status": news.status,
            },
        )
        if news.charge is not None:
            await _start_late_payment(temporal, task_queue, news.charge)
        return "late"
    log.info(
        "payment event signalled",
        extra={
            "order_id": str(news.order_id),
            "workflow_id": news.workflow_id,
            "intent_id": news.intent_id,
            "status": news.status,
        },
    )
    return "signalled"


async def _start_late_payment(temporal: Client, task_queue: str, charge: Charge) -> None:
    # Already started: settled or being settled, once per intent.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await temporal.start_workflow(
            LatePaymentWorkflow.run,
            LatePaymentInput(charge.order_id, charge.intent_id, charge.amount, charge.currency),
            id=late_payment_workflow_id(charge.intent_id),
            task_queue=task_queue,
            static_summary=(
                f"Late payment {charge.intent_id} of order {charge.order_id}: complete or refund"
            ),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    log.info(
        "late payment", extra={"order_id": str(charge.order_id), "intent_id": charge.intent_id}
    )
