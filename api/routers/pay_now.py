"""Pay Now: place the order (activities/placement.py), then start its CheckoutWorkflow (or attach
to it) and ask for the first payment."""

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities import addresses, carts, inventory, tokens
from activities.placement import PlaceOrder, claim_stock, place_order
from activities.roles import Permission
from api.deps import AccessClaimsDep, EngineDep, SettingsDep, TemporalDep, permitted
from api.fields import Count, PaymentMethodIn
from api.workflow_calls import payment_answer
from kassa.db import autocommit_scope
from kassa.errors import Conflict
from kassa.metrics import CHECKOUTS_STARTED, RESERVATION_CONFLICTS
from kassa.settings import Settings
from kassa.statuses import OrderStatus
from kassa.tables import Order
from workflows.checkout import (
    CheckoutInput,
    CheckoutState,
    CheckoutWorkflow,
    HeldStock,
    OrderToPay,
    PaymentMethod,
    PlacedOrder,
    checkout_workflow_id,
)

router = APIRouter(tags=["checkout"])
log = logging.getLogger("kassa.checkout")


class CheckoutRequest(BaseModel):
    cart_id: uuid.UUID
    payment_method: PaymentMethodIn
    redeem_points: Annotated[Count, Field(ge=0, le=1_000_000_000)] = 0
    address_id: uuid.UUID | None = None
    # The version the customer reviewed (GET /cart): a cart changed since is refused with 409.
    cart_version: Annotated[Count, Field(ge=1)] | None = None


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
                "cart_changed",
                "The cart changed since you reviewed it: GET /cart and tap Pay Now again.",
                version=cart.version,
            )
        if body.address_id is not None:
            await addresses.owned_address(session, user.id, body.address_id)
        workflow_id = checkout_workflow_id(cart.id, cart.version)
        request = PlaceOrder(
            uuid.uuid4(),
            workflow_id,
            user.id,
            cart.id,
            cart.version,
            body.address_id,
            body.redeem_points,
            settings.hold_seconds,
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
        log.info(
            "order placed",
            extra={"order_id": order.id, "workflow_id": workflow_id, "total": order.total},
        )
    try:
        if order.status == OrderStatus.PENDING_PAYMENT:
            state = await _start_or_attach(
                temporal, settings, order, body.payment_method.as_workflow_value()
            )
        else:
            # The order has ended: its run answers if it is still finishing, and is never started.
            state = await temporal.get_workflow_handle(workflow_id).execute_update(
                CheckoutWorkflow.pay_now
            )
    except (WorkflowAlreadyStartedError, RPCError) as gone:
        if isinstance(gone, RPCError) and gone.status != RPCStatusCode.NOT_FOUND:
            raise
        raise Conflict(
            "cart_checked_out",
            "This cart was already checked out: see the order, or GET /cart for a new cart.",
            order_id=str(order.id),
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
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        checkout_input(order, method, settings.hold_grace_seconds),
        id=order.workflow_id,
        task_queue=settings.task_queue,
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


@router.get("/checkout/return", response_class=HTMLResponse, include_in_schema=False)
async def back_from_bank() -> str:
    # Where the bank's 3-D Secure page sends the customer; the app reads the order's status itself.
    return (
        "<!doctype html><title>Kassa</title>"
        "<p>Thank you. You can return to the app: your order is updating.</p>"
    )
