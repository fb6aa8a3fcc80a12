"""The Temporal worker: runs the workflows and the services as their activities, keeps the
schedules in place, and serves its metrics."""

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
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.providers import make_provider
from activities.retention import RetentionAges
from activities.temporal.checkout_steps import CheckoutActivities
from activities.temporal.hold_sweep_steps import SweepActivities, SweepHoldsInput
from activities.temporal.money_steps import MoneyActivities
from activities.temporal.retention_steps import RetentionActivities
from kassa import metrics
from kassa.db import make_engine
from kassa.logs import ActivityLogContext
from kassa.settings import Settings
from kassa.temporal import connect
from kassa.tracing import configure_tracing
from workflows.checkout import CheckoutWorkflow
from workflows.hold_sweep import HoldSweepWorkflow
from workflows.money_back import LatePaymentWorkflow, ReconcileWorkflow, RefundWorkflow
from workflows.retention import RetentionWorkflow
from workflows.summaries import ActivitySummaries

log = logging.getLogger("kassa.worker")


RECONCILE_SCHEDULE = "kassa-reconcile-payments"
HOLD_SWEEP_SCHEDULE = "kassa-sweep-holds"
RETENTION_SCHEDULE = "kassa-retention"
WORKFLOWS = [
    CheckoutWorkflow,
    RefundWorkflow,
    LatePaymentWorkflow,
    ReconcileWorkflow,
    HoldSweepWorkflow,
    RetentionWorkflow,
]
# On shutdown (SIGTERM), running activities get this long to finish before they are cancelled.
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


def build_worker(
    client: Client,
    settings: Settings,
    checkout: CheckoutActivities,
    money: MoneyActivities,
    sweep: SweepActivities | None = None,
    retention: RetentionActivities | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            *checkout.all(),
            *money.all(),
            *(sweep.all() if sweep else []),
            *(retention.all() if retention else []),
        ],
        interceptors=[ActivityLogContext(), ActivitySummaries()],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


def schedules(settings: Settings) -> dict[str, Schedule]:
    """The schedules Kassa keeps, by id; each workflow id is fixed, so two runs never overlap."""
    return {
        # Every minute, find successes that no checkout took (a lost webhook, a race at expiry).
        RECONCILE_SCHEDULE: _every(
            timedelta(minutes=1),
            ScheduleActionStartWorkflow(
                ReconcileWorkflow.run,
                id="reconcile-payments",
                task_queue=settings.task_queue,
                static_summary="Payment reconciliation: successes that no checkout took",
            ),
        ),
        # The safety net under every checkout: holds whose workflow is gone, or long past due.
        HOLD_SWEEP_SCHEDULE: _every(
            timedelta(seconds=settings.hold_sweep_interval_seconds),
            ScheduleActionStartWorkflow(
                HoldSweepWorkflow.run,
                SweepHoldsInput(settings.hold_sweep_grace_seconds),
                id="sweep-holds",
                task_queue=settings.task_queue,
                static_summary=(
                    "Hold sweeper: holds whose checkout is gone or long past its deadline"
                ),
            ),
        ),
        # Every hour, the records that only grow are kept to their age (KASSA_*_RETENTION_DAYS).
        RETENTION_SCHEDULE: _every(
            timedelta(hours=1),
            ScheduleActionStartWorkflow(
                RetentionWorkflow.run,
                id="retention",
                task_queue=settings.task_queue,
                static_summary="Retention: old webhook events and login attempt counts deleted",
            ),
        ),
    }


def _every(period: timedelta, action: ScheduleActionStartWorkflow) -> Schedule:
    """Starts `action` every `period`; a start while the last run still goes on is skipped."""
    return Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=period)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Creates the schedules that do not exist yet; returns the ids this call created. Safe with
    any number of workers starting at once: the server keeps the first of each id."""
    created = []
    for schedule_id, schedule in schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, schedule)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            pass  # another worker made it
    return created


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime whose SDK metrics (polls, task latencies, slots…) Prometheus can
    scrape."""
    if not settings.temporal_metrics_port:
        return None
    address = f"{settings.host}:{settings.temporal_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def main(settings: Settings) -> None:
    if not settings.database_url:
        raise SystemExit(
            "kassa worker: set KASSA_DATABASE_URL (or start everything with `kassa dev`)."
        )
    engine = make_engine(settings.database_url)
    provider = make_provider(settings)
    client = await connect(
        settings,
        interceptors=configure_tracing(settings, "worker"),
        runtime=metrics_runtime(settings),
    )
    checkout = CheckoutActivities(engine, provider, settings.return_url)
    worker = build_worker(
        client,
        settings,
        checkout,
        MoneyActivities(engine, provider),
        SweepActivities(engine, client),
        RetentionActivities(engine, RetentionAges.from_settings(settings)),
    )
    for schedule_id in await ensure_schedules(client, settings):
        log.info("schedule created", extra={"schedule_id": schedule_id})
    if settings.worker_metrics_port:  # once connected: compose's health check reads it
        metrics.serve(settings.host, settings.worker_metrics_port)
    # SIGTERM (kassa dev, docker stop) lets running activities finish instead of cutting them off.
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    log.info(
        "worker started",
        extra={
            "task_queue": settings.task_queue,
            "temporal": settings.temporal_target,
            "metrics_port": settings.worker_metrics_port,
            "temporal_metrics_port": settings.temporal_metrics_port,
        },
    )
    async with worker:
        await stop.wait()
        log.info(
            "worker stopping: finishing running activities",
            extra={"grace_seconds": GRACEFUL_SHUTDOWN.total_seconds()},
        )
    log.info("worker stopped")
    await provider.aclose()
    await engine.dispose()
