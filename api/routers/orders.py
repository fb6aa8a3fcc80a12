"""The customer's orders: status and timeline from the database; pay and cancel through the workflow."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities import orders
from activities.orders import OrderView
from activities.roles import Permission
from api.deps import EngineDep, SessionDep, TemporalDep, requires
from api.problems import problem
from api.routers.checkout import PaymentMethodIn, payment_answer, refusal_problem
from kassa.db import session_scope
from kassa.errors import Conflict
from kassa.tables import Order, User
from workflows.checkout import CANCELLED_BY_CUSTOMER, CheckoutWorkflow

router = APIRouter(prefix="/orders", tags=["orders"])


class PayRequest(BaseModel):
    payment_method: PaymentMethodIn


async def order_before_workflow_call(engine: AsyncEngine, customer_id: uuid.UUID | None, order_id: uuid.UUID) -> Order:
    """The customer's order (None: any order, for staff). A short read, closed before the workflow
    call: no connection is held while it runs."""
    async with session_scope(engine) as session:
        return await orders.owned_order(session, customer_id, order_id)


def _closed(status: str) -> Conflict:
    return Conflict("order_closed", f"The order is {status}: it takes no more changes.", order_status=status)


@router.get("")
async def list_orders(
    user: Annotated[User, requires(Permission.SHOP)], session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[OrderView]:
    return [await orders.view_order(session, order) for order in await orders.list_orders(session, user.id, limit)]


@router.get("/{order_id}")
async def get_order(order_id: uuid.UUID, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep) -> OrderView:
    return await orders.view_order(session, await orders.owned_order(session, user.id, order_id))


@router.post("/{order_id}/pay")
async def pay_again(
    order_id: uuid.UUID,
    body: PayRequest,
    user: Annotated[User, requires(Permission.SHOP)],
    engine: EngineDep,
    temporal: TemporalDep,
) -> JSONResponse:
    order = await order_before_workflow_call(engine, user.id, order_id)
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, order.workflow_id)
    try:
        state = await handle.execute_update(CheckoutWorkflow.retry_payment, body.payment_method.as_workflow_value())
    except WorkflowUpdateFailedError as refused:
        return refusal_problem(refused)
    except RPCError:
        # The run ended as the request came in ("aborted by closing workflow"): paid by the
        # webhook of the last attempt, perhaps. Its final state is the answer.
        try:
            state = await handle.query(CheckoutWorkflow.status)
        except RPCError:
            raise _closed(order.status) from None
        if state.status != "PAID":
            raise _closed(state.status) from None
    return payment_answer(state, created=False)


@router.post("/{order_id}/cancel")
async def cancel(
    order_id: uuid.UUID, user: Annotated[User, requires(Permission.SHOP)], engine: EngineDep, temporal: TemporalDep
) -> JSONResponse:
    order = await order_before_workflow_call(engine, user.id, order_id)
    return await cancel_unpaid(temporal, order, CANCELLED_BY_CUSTOMER)


async def cancel_unpaid(temporal: Client, order: Order, reason: str) -> JSONResponse:
    """Cancel through the order's workflow, which refuses a paid or ended order: the customer's way, and support's."""
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, order.workflow_id)
    try:
        state = await handle.execute_update(CheckoutWorkflow.cancel, reason)
    except WorkflowUpdateFailedError as refused:
        return refusal_problem(refused)
    except RPCError:
        raise _closed(order.status) from None
    if state.status != "CANCELLED":
        return problem(409, "order_not_cancellable", f"The order became {state.status} first.", order_status=state.status)
    return JSONResponse({"order_id": state.order_id, "status": state.status})
