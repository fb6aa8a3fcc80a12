"""A payment that lands after its order ended, and the reconciliation that finds it: shared by
the tests."""

import asyncio
import uuid

import httpx
from temporalio.client import WorkflowHandle

from activities.providers import make_provider
from activities.providers.protocol import NewPayment
from kassa.db import session_scope
from kassa.tables import Payment, utcnow
from tests.conftest import Kassa
from workflows.money_back import ReconcileWorkflow


async def late_success(kassa: Kassa, order_id: str, amount: int) -> None:
    """A success for the order at the acquirer that the checkout never took (an attempt whose
    answer was lost)."""
    bank = make_provider(kassa.settings)
    intent = await bank.create_payment(
        NewPayment(
            order_id=uuid.UUID(order_id),
            amount=amount,
            currency="RUB",
            idempotency_key=f"{order_id}-late",
            return_url=kassa.settings.return_url,
            capture=True,
            payment_method="tok_success",
            description="a late success",
        )
    )
    await bank.aclose()
    async with session_scope(kassa.engine) as session:
        session.add(
            Payment(
                intent_id=intent.payment_id,
                order_id=uuid.UUID(order_id),
                attempt=2,
                status="succeeded",
                amount=amount,
                currency="RUB",
                created_at=utcnow(),
            )
        )


async def reconcile(kassa: Kassa) -> None:
    handle: WorkflowHandle = await kassa.temporal.start_workflow(
        ReconcileWorkflow.run,
        id=f"reconcile-test-{uuid.uuid4()}",
        task_queue=kassa.settings.task_queue,
    )
    await handle.result()


async def events_reach(
    http: httpx.AsyncClient, order_id: str, reason: str, within: float = 20
) -> dict:
    for _ in range(int(within * 10)):
        order = (await http.get(f"/orders/{order_id}")).json()
        if order["events"][-1]["reason"] == reason:
            return order
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {reason} on the timeline of {order_id}")
