"""The Temporal worker: runs CheckoutWorkflow and the services as its activities."""

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.worker import Worker

from activities.checkout import CheckoutActivities
from activities.money import MoneyActivities
from activities.payments import AcquirerClient
from kassa.db import make_engine
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings
from kassa.temporal import connect
from workflows.checkout import CheckoutWorkflow
from workflows.refunds import LatePaymentWorkflow, ReconcileWorkflow, RefundWorkflow

log = logging.getLogger("kassa.worker")


RECONCILE_SCHEDULE = "kassa-reconcile-payments"
WORKFLOWS = [CheckoutWorkflow, RefundWorkflow, LatePaymentWorkflow, ReconcileWorkflow]


def build_worker(client: Client, settings: Settings, checkout: CheckoutActivities, money: MoneyActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[*checkout.all(), *money.all()],
        # On shutdown, running activities get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    """Every minute, find successes that no checkout took (a lost webhook, a race at expiry)."""
    try:
        await client.create_schedule(
            RECONCILE_SCHEDULE,
            Schedule(
                action=ScheduleActionStartWorkflow(ReconcileWorkflow.run, id="reconcile-payments", task_queue=settings.task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        pass  # another worker made it


async def main() -> None:
    configure_logging()
    settings = get_settings()
    if not settings.database_url or not settings.acquirer_api_key:
        raise SystemExit("kassa worker: set KASSA_DATABASE_URL (or start everything with `kassa dev`).")
    engine = make_engine(settings.database_url)
    acquirer = AcquirerClient(settings.acquirer_base_url, settings.acquirer_api_key)
    checkout = CheckoutActivities(engine, acquirer, f"{settings.api_base_url}/checkout/return")
    client = await connect(settings)
    worker = build_worker(client, settings, checkout, MoneyActivities(engine, acquirer))
    await ensure_reconcile_schedule(client, settings)
    # SIGTERM (kassa dev, docker stop) lets running activities finish instead of cutting them off.
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    log.info("worker started", extra={"task_queue": settings.task_queue, "temporal": settings.temporal_target})
    async with worker:
        await stop.wait()
        log.info("worker stopping: finishing running activities")
    await acquirer.aclose()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
