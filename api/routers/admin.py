import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError

from activities import inventory, ledger, orders
from activities.inventory import StockLevel
from activities.ledger import TransactionView
from activities.roles import Permission
from activities.temporal.money_steps import RefundDone, RefundPaymentInput
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep, requires
from api.fields import Count, SkuPath
from api.problems import answers
from kassa.db import session_scope
from kassa.errors import Conflict
from kassa.tables import User
from workflows.money_back import RefundWorkflow, refund_workflow_id

router = APIRouter(prefix="/admin", tags=["admin"])


class StockCount(BaseModel):
    on_hand: Count


@router.put("/stock/{sku}")
async def set_stock(
    sku: SkuPath,
    body: StockCount,
    admin: Annotated[User, requires(Permission.STOCK_WRITE)],
    session: SessionDep,
) -> StockLevel:
    return await inventory.set_on_hand(session, sku, body.on_hand)


class RefundRequest(BaseModel):
    amount: Annotated[Count, Field(ge=1)] | None = (
        None  # kopecks; none: everything charged that is left
    )


@router.post("/orders/{order_id}/refund", responses=answers(409))
async def refund_order(
    order_id: uuid.UUID,
    body: RefundRequest,
    admin: Annotated[User, requires(Permission.REFUNDS)],
    engine: EngineDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: Annotated[
        str,
        Header(alias="Idempotency-Key", min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_-]+$"),
    ],
) -> RefundDone:
    """A refund per Idempotency-Key: the same key again returns the same refund, never a second."""
    async with session_scope(engine) as session:
        await orders.owned_order(session, None, order_id)
    request = RefundPaymentInput(
        order_id, f"admin-{idempotency_key}", "requested_by_admin", body.amount
    )
    try:
        return await temporal.execute_workflow(
            RefundWorkflow.run,
            request,
            id=refund_workflow_id(order_id, request.idempotency_key),
            task_queue=settings.task_queue,
            static_summary=f"Refund of order {order_id}, asked by admin {admin.id}",
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        # Spelled out: mypy does not infer it from `RefundWorkflow.run` alone.
        handle: WorkflowHandle[RefundWorkflow, RefundDone] = temporal.get_workflow_handle_for(
            RefundWorkflow.run, refund_workflow_id(order_id, request.idempotency_key)
        )
        return await handle.result()
    except WorkflowFailureError as failed:
        cause = failed.cause.cause if isinstance(failed.cause, ActivityError) else failed.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise Conflict(cause.type, cause.message) from None
        raise


@router.get("/ledger")
async def ledger_of(
    admin: Annotated[User, requires(Permission.LEDGER_READ)],
    session: SessionDep,
    order_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TransactionView]:
    return await ledger.transactions(session, order_id, limit)
