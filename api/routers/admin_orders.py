"""Any customer's orders, for staff: support and admins read them and cancel unpaid ones."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from activities import orders
from activities.orders import OrderView
from activities.roles import Permission
from api.deps import EngineDep, SessionDep, TemporalDep, requires
from api.routers.orders import cancel_unpaid, order_before_workflow_call
from kassa.errors import Invalid
from kassa.tables import User
from workflows.checkout import CANCELLED_BY_STAFF

router = APIRouter(prefix="/admin/orders", tags=["admin"])

ORDER_STATUSES = ("CREATED", *orders.ALLOWED_FROM)


@router.get("")
async def list_orders(
    staff: Annotated[User, requires(Permission.ORDERS_READ_ANY)],
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[OrderView]:
    """Newest first, of every customer; `status` keeps one state."""
    if status is not None and status not in ORDER_STATUSES:
        raise Invalid("unknown_status", f"status is one of {', '.join(ORDER_STATUSES)}.")
    found = await orders.list_orders(session, None, limit, status)
    return [await orders.view_order(session, order) for order in found]


@router.get("/{order_id}")
async def get_order(
    order_id: uuid.UUID, staff: Annotated[User, requires(Permission.ORDERS_READ_ANY)], session: SessionDep
) -> OrderView:
    return await orders.view_order(session, await orders.owned_order(session, None, order_id))


@router.post("/{order_id}/cancel")
async def cancel(
    order_id: uuid.UUID, staff: Annotated[User, requires(Permission.ORDERS_CANCEL_ANY)], engine: EngineDep, temporal: TemporalDep
) -> JSONResponse:
    order = await order_before_workflow_call(engine, None, order_id)
    return await cancel_unpaid(temporal, order, CANCELLED_BY_STAFF)
