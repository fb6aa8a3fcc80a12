"""Any customer's orders, for staff: support and admins find and read them (with the link to
their run in Temporal UI) and cancel unpaid ones."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.service import RPCError

from activities import operations, orders
from activities.operations import OrderDossier, OrderFilter
from activities.roles import Permission
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep, requires
from api.fields import Moment
from api.problems import answers
from api.workflow_calls import CancelAnswer, cancel_unpaid, order_before_workflow_call
from kassa.errors import Invalid
from kassa.settings import Settings
from kassa.statuses import OrderStatus
from kassa.tables import Order, User
from workflows.checkout import CANCELLED_BY_STAFF

router = APIRouter(prefix="/admin/orders", tags=["admin"])

ORDER_STATUSES = list(OrderStatus)


@dataclass(frozen=True)
class OrderSummary:
    id: uuid.UUID
    status: OrderStatus
    reason: str | None
    customer_id: uuid.UUID
    total: int
    currency: str
    hold_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    workflow_id: str
    workflow_url: str | None


@dataclass(frozen=True)
class OrderList:
    items: list[OrderSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class WorkflowLink:
    id: str
    run_id: str | None
    status: str | None  # RUNNING, COMPLETED, TERMINATED…; None when Temporal did not answer
    url: str | None  # the run in Temporal UI


@dataclass(frozen=True)
class AdminOrder(OrderDossier):
    workflow: WorkflowLink


def workflow_url(settings: Settings, workflow_id: str, run_id: str | None = None) -> str | None:
    if settings.temporal_ui_base_url is None:
        return None
    namespace, workflow = quote(settings.temporal_namespace, safe=""), quote(workflow_id, safe="")
    path = f"{settings.temporal_ui_base_url}/namespaces/{namespace}/workflows/{workflow}"
    return f"{path}/{quote(run_id, safe='')}/history" if run_id else path


def _summary(settings: Settings, order: Order) -> OrderSummary:
    return OrderSummary(
        order.id,
        OrderStatus(order.status),
        order.reason,
        order.user_id,
        order.total,
        order.currency,
        order.hold_expires_at,
        order.created_at,
        order.updated_at,
        order.workflow_id,
        workflow_url(settings, order.workflow_id),
    )


async def _workflow_link(temporal: Client, settings: Settings, workflow_id: str) -> WorkflowLink:
    try:
        described = await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError:
        # Gone from Temporal's retention, or Temporal is down: the link without its run.
        return WorkflowLink(workflow_id, None, None, workflow_url(settings, workflow_id))
    status = described.status.name if described.status else None
    return WorkflowLink(
        workflow_id, described.run_id, status, workflow_url(settings, workflow_id, described.run_id)
    )


@router.get("")
async def list_orders(
    staff: Annotated[User, requires(Permission.ORDERS_READ_ANY)],
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    customer_id: uuid.UUID | None = None,
    created_from: Moment | None = None,
    created_before: Moment | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OrderList:
    """Newest first, of every customer; `status`, `customer_id` and the creation time
    (`created_from` ≤ t < `created_before`, ISO 8601 with a zone) narrow it; `next_cursor` pages
    on."""
    if status is not None and status not in ORDER_STATUSES:
        raise Invalid("unknown_status", f"status is one of {', '.join(ORDER_STATUSES)}.")
    wanted = OrderStatus(status) if status is not None else None
    page = await operations.search_orders(
        session, OrderFilter(wanted, customer_id, created_from, created_before), limit, cursor
    )
    return OrderList([_summary(settings, order) for order in page.items], page.next_cursor)


@router.get("/{order_id}")
async def get_order(
    order_id: uuid.UUID,
    staff: Annotated[User, requires(Permission.ORDERS_READ_ANY)],
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> AdminOrder:
    """The order, its timeline, every payment attempt, refunds, ledger, and its run in Temporal
    UI."""
    dossier = await operations.order_dossier(
        session, await orders.owned_order(session, None, order_id)
    )
    return AdminOrder(
        **vars(dossier), workflow=await _workflow_link(temporal, settings, dossier.workflow_id)
    )


@router.post("/{order_id}/cancel", response_model=CancelAnswer, responses=answers(409))
async def cancel(
    order_id: uuid.UUID,
    staff: Annotated[User, requires(Permission.ORDERS_CANCEL_ANY)],
    engine: EngineDep,
    temporal: TemporalDep,
) -> JSONResponse:
    order = await order_before_workflow_call(engine, None, order_id)
    return await cancel_unpaid(temporal, order, CANCELLED_BY_STAFF)
