"""The Temporal worker: runs CheckoutWorkflow and the services as its activities."""

import asyncio
import logging
import signal
from datetime import timedelta

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
        # On shutdown, running activities get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def main() -> None:
    configure_logging()
    settings = get_settings()
    if not settings.database_url or not settings.acquirer_api_key:
        raise SystemExit("kassa worker: set KASSA_DATABASE_URL (or start everything with `kassa dev`).")
    engine = make_engine(settings.database_url)
    acquirer = AcquirerClient(settings.acquirer_base_url, settings.acquirer_api_key)
    activities = CheckoutActivities(engine, acquirer, f"{settings.api_base_url}/checkout/return")
    worker = build_worker(await connect(settings), settings, activities)
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
