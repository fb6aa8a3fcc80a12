"""Pay Now: place the order (activities/placement.py), then start its CheckoutWorkflow (or attach
to it) and ask for the first payment (api/workflow_calls.py)."""

import logging
import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from activities import addresses, carts, inventory, tokens
from activities.placement import PlaceOrder, claim_stock, place_order
from activities.roles import Permission
from api.deps import AccessClaimsDep, EngineDep, ProviderDep, SettingsDep, TemporalDep, permitted
from api.fields import Count, PaymentMethodIn
from api.problems import answers
from api.workflow_calls import PaymentAnswer, ask_for_payment, payment_answer
from kassa.db import autocommit_scope
from kassa.errors import Conflict
from kassa.metrics import CHECKOUTS_STARTED, RESERVATION_CONFLICTS
from workflows.checkout import checkout_workflow_id

router = APIRouter(tags=["checkout"])
log = logging.getLogger("kassa.checkout")


class CheckoutRequest(BaseModel):
    cart_id: uuid.UUID
    payment_method: PaymentMethodIn
    redeem_points: Annotated[Count, Field(ge=0, le=1_000_000_000)] = 0
    address_id: uuid.UUID | None = None
    # The version the customer reviewed (GET /cart): a cart changed since is refused with 409.
    cart_version: Annotated[Count, Field(ge=1)] | None = None


@router.post(
    "/checkout",
    status_code=201,
    response_model=PaymentAnswer,
    responses=answers(401, 402, 403, 404, 409, 503),
)
async def pay_now(
    body: CheckoutRequest,
    access: AccessClaimsDep,
    engine: EngineDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    provider: ProviderDep,
) -> JSONResponse:
    method = body.payment_method.for_provider(provider.capabilities)
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
    state = await ask_for_payment(temporal, settings, order, method)
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


@router.get("/checkout/return", include_in_schema=False)
async def back_from_bank(
    payment_intent: Annotated[str | None, Query(max_length=128)] = None,
) -> RedirectResponse:
    # Where the provider's 3-D Secure page (or its own payment page) sends the customer: on to the
    # storefront, whose page finds the order being paid and follows its status. Only the intent
    # (the sandbox's and Stripe's) goes along: not Stripe's client secret.
    query = f"?{urlencode({'payment_intent': payment_intent})}" if payment_intent else ""
    return RedirectResponse(f"/#/return{query}", status_code=303)
