"""Pay Now: start the cart's CheckoutWorkflow (or attach to it) and ask for the first payment."""

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities import addresses, carts, inventory, tokens
from activities.checkout import PlacedOrder
from activities.placement import PlaceOrder, claim_stock, place_order
from activities.roles import Permission
from api.deps import AccessClaimsDep, EngineDep, SettingsDep, TemporalDep, permitted
from api.fields import Count
from api.problems import problem
from kassa.db import autocommit_scope
from kassa.errors import Conflict
from kassa.metrics import CHECKOUTS_STARTED, RESERVATION_CONFLICTS
from workflows.checkout import UNAVAILABLE, CheckoutInput, CheckoutState, CheckoutWorkflow, PaymentMethod, checkout_workflow_id

router = APIRouter(tags=["checkout"])
log = logging.getLogger("kassa.checkout")

# The workflow's refusals, by their ApplicationError type.
REFUSAL_STATUS = {"customer_not_allowed": 403}


class PaymentMethodIn(BaseModel):
    type: Literal["card"]
    token: Annotated[str, Field(pattern=r"^tok_[A-Za-z0-9_]{1,60}$")]

    def as_workflow_value(self) -> PaymentMethod:
        return PaymentMethod(self.type, self.token)


class CheckoutRequest(BaseModel):
    cart_id: uuid.UUID
    payment_method: PaymentMethodIn
    redeem_points: Annotated[Count, Field(ge=0, le=1_000_000_000)] = 0
    address_id: uuid.UUID | None = None
    # The version the customer reviewed (GET /cart): a cart changed since is refused with 409.
    cart_version: Annotated[Count, Field(ge=1)] | None = None


def payment_answer(state: CheckoutState, created: bool) -> JSONResponse:
    """201/200 with the order and where to pay; 402 when declined, 503 when the bank did not answer."""
    payment = state.payment
    body: dict[str, Any] = {
        "order_id": state.order_id,
        "status": state.status,
        "hold_expires_at": state.hold_expires_at,
        "payment_url": payment.payment_url if payment and payment.status == "requires_action" else None,
        "payment": {
            "status": payment.status,
            "intent_id": payment.intent_id or None,
            "decline_code": payment.decline_code,
        }
        if payment
        else None,
        "attempts": state.attempts,
    }
    unpaid = _unpaid_attempt(state)
    if unpaid is not None:
        status, code, detail, retry = unpaid
        body["order_status"] = body.pop("status")
        return problem(status, code, detail, retry_allowed=retry, **jsonable_encoder(body))
    return JSONResponse(jsonable_encoder(body), status_code=201 if created else 200)


def _unpaid_attempt(state: CheckoutState) -> tuple[int, str, str, bool] | None:
    """An attempt that did not pay: HTTP status, code, what to do next, and whether to retry."""
    payment = state.payment
    if payment is None:
        return None
    if payment.status == UNAVAILABLE and state.status == "PENDING_PAYMENT":
        detail = "The bank did not answer: the stock stays held, try again with POST /orders/{id}/pay."
        return 503, "payment_unavailable", detail, True
    if payment.status == "failed" and state.status == "PENDING_PAYMENT":
        detail = "The payment was declined: try another method with POST /orders/{id}/pay before the hold ends."
        return 402, "payment_declined", detail, True
    if payment.status == "failed" and state.status == "PAYMENT_FAILED":
        detail = "The payment was declined three times: the order has ended and the cart is yours again."
        return 402, "payment_declined", detail, False
    return None


def refusal_problem(error: WorkflowUpdateFailedError) -> JSONResponse:
    cause = error.cause
    if not isinstance(cause, ApplicationError) or cause.type is None:
        raise error
    detail = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
    return problem(REFUSAL_STATUS.get(cause.type, 409), cause.type, cause.message, **detail)


@router.post("/checkout", status_code=201)
async def pay_now(
    body: CheckoutRequest,
    access: AccessClaimsDep,
    engine: EngineDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> JSONResponse:
    # The customer, the cart and the stock claim on one connection, taken from the pool once
    # (activities/placement.py says why); the order in a short transaction; both done before the
    # workflow call, so no connection is held while the payment runs.
    async with autocommit_scope(engine) as session:
        user = permitted(await tokens.signed_in_user(session, access), Permission.SHOP)
        cart = await carts.owned_cart(session, user.id, body.cart_id)
        if body.cart_version is not None and body.cart_version != cart.version:
            raise Conflict(
                "cart_changed", "The cart changed since you reviewed it: GET /cart and tap Pay Now again.", version=cart.version
            )
        if body.address_id is not None:
            await addresses.owned_address(session, user.id, body.address_id)
        workflow_id = checkout_workflow_id(str(cart.id), cart.version)
        request = PlaceOrder(
            uuid.uuid4(), workflow_id, user.id, cart.id, cart.version, body.address_id, body.redeem_points, settings.hold_seconds
        )
        try:
            held = await claim_stock(session, request)
        except inventory.OutOfStock:
            RESERVATION_CONFLICTS.labels("gateway").inc()
            raise
    placement = await place_order(engine, request, held)
    order = placement.order
    if placement.placed_now:
        CHECKOUTS_STARTED.inc()
        log.info("order placed", extra={"order_id": str(order.id), "workflow_id": workflow_id, "total": order.total})
    # An order no longer waiting for payment is not handed over: its run, if any, is attached to.
    placed = PlacedOrder.of(order, placement.lines) if order.status == "PENDING_PAYMENT" else None
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        CheckoutInput(str(user.id), str(cart.id), cart.version, body.payment_method.as_workflow_value(),
                      settings.hold_seconds, settings.hold_grace_seconds,
                      str(body.address_id) if body.address_id else None, body.redeem_points, placed),
        id=workflow_id,
        task_queue=settings.task_queue,
        static_summary=f"Pay Now: cart {cart.id} v{cart.version} of customer {user.id}",
        static_details=f"Order {order.id} placed by the gateway, stock held until {order.hold_expires_at:%H:%M:%S} UTC"
        if placed
        else None,
        # A double tap attaches to the running checkout; a finished one is never started again.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    try:
        state = await temporal.execute_update_with_start_workflow(CheckoutWorkflow.pay_now, start_workflow_operation=start)
    except WorkflowUpdateFailedError as refused:
        return refusal_problem(refused)
    except WorkflowAlreadyStartedError:
        raise Conflict(
            "cart_checked_out", "This cart was already checked out: see the order, or GET /cart for a new cart.", order_id=str(order.id)
        ) from None
    log.info(
        "pay now answered",
        extra={
            "order_id": state.order_id,
            "workflow_id": workflow_id,
            "status": state.status,
            "payment": state.payment.status if state.payment else None,
        },
    )
    return payment_answer(state, created=True)


@router.get("/checkout/return", response_class=HTMLResponse, include_in_schema=False)
async def back_from_bank() -> str:
    # Where the bank's 3-D Secure page sends the customer; the app reads the order's status itself.
    return "<!doctype html><title>Kassa</title><p>Thank you. You can return to the app: your order is updating.</p>"
