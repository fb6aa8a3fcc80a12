"""The customer's orders: status and timeline from the database; pay and cancel through the
workflow."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities import orders
from activities.orders import OrderView
from activities.roles import Permission
from api.deps import EngineDep, ProviderDep, SessionDep, TemporalDep, requires
from api.fields import PaymentMethodIn
from api.problems import answers
from api.workflow_calls import (
    CancelAnswer,
    CheckoutHandle,
    PaymentAnswer,
    cancel_unpaid,
    order_before_workflow_call,
    order_closed,
    payment_answer,
    refusal_problem,
)
from kassa.statuses import OrderStatus
from kassa.tables import User
from workflows.checkout import CANCELLED_BY_CUSTOMER, CheckoutWorkflow

router = APIRouter(prefix="/orders", tags=["orders"])


class PayRequest(BaseModel):
    payment_method: PaymentMethodIn


@router.get("")
async def list_orders(
    user: Annotated[User, requires(Permission.SHOP)],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[OrderView]:
    return [
        await orders.view_order(session, order)
        for order in await orders.list_orders(session, user.id, limit)
    ]


@router.get("/{order_id}")
async def get_order(
    order_id: uuid.UUID, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> OrderView:
    return await orders.view_order(session, await orders.owned_order(session, user.id, order_id))


@router.post("/{order_id}/pay", response_model=PaymentAnswer, responses=answers(402, 409))
async def pay_again(
    order_id: uuid.UUID,
    body: PayRequest,
    user: Annotated[User, requires(Permission.SHOP)],
    engine: EngineDep,
    temporal: TemporalDep,
    provider: ProviderDep,
) -> JSONResponse:
    method = body.payment_method.for_provider(provider.capabilities)
    order = await order_before_workflow_call(engine, user.id, order_id)
    handle: CheckoutHandle = temporal.get_workflow_handle_for(
        CheckoutWorkflow.run, order.workflow_id
    )
    try:
        state = await handle.execute_update(CheckoutWorkflow.retry_payment, method)
    except WorkflowUpdateFailedError as refused:
        return refusal_problem(refused)
    except RPCError:
        # The run ended as the request came in ("aborted by closing workflow"): paid by the
        # webhook of the last attempt, perhaps. Its final state is the answer.
        try:
            state = await handle.query(CheckoutWorkflow.status)
        except RPCError:
            raise order_closed(order.status) from None
        if state.status != OrderStatus.PAID:
            raise order_closed(state.status) from None
    return payment_answer(state, created=False)


@router.post("/{order_id}/cancel", response_model=CancelAnswer, responses=answers(409))
async def cancel(
    order_id: uuid.UUID,
    user: Annotated[User, requires(Permission.SHOP)],
    engine: EngineDep,
    temporal: TemporalDep,
) -> JSONResponse:
    order = await order_before_workflow_call(engine, user.id, order_id)
    return await cancel_unpaid(temporal, order, CANCELLED_BY_CUSTOMER)
