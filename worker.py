"""The Temporal worker: runs CheckoutWorkflow and the services as its activities."""

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

from activities.checkout import CheckoutActivities
from activities.payments import AcquirerClient
from kassa.db import make_engine
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings
from kassa.temporal import connect
from workflows.checkout import CheckoutWorkflow

log = logging.getLogger("kassa.worker")


def build_worker(client: Client, settings: Settings, activities: CheckoutActivities) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CheckoutWorkflow],
        activities=activities.all(),
    )


def checkout_activities(settings: Settings) -> tuple[CheckoutActivities, AcquirerClient]:
    assert settings.database_url and settings.acquirer_api_key
    acquirer = AcquirerClient(settings.acquirer_base_url, settings.acquirer_api_key)
    activities = CheckoutActivities(make_engine(settings.database_url), acquirer, f"{settings.api_base_url}/checkout/return")
    return activities, acquirer


async def main() -> None:
    configure_logging()
    settings = get_settings()
    if not settings.database_url:
        raise SystemExit("kassa worker: set KASSA_DATABASE_URL (or start everything with `kassa dev`).")
    activities, acquirer = checkout_activities(settings)
    client = await connect(settings)
    log.info("worker started", extra={"task_queue": settings.task_queue, "temporal": settings.temporal_target})
    try:
        await build_worker(client, settings, activities).run()
    finally:
        await acquirer.aclose()


if __name__ == "__main__":
    asyncio.run(main())
