"""HoldSweepWorkflow: on a schedule, release the holds no checkout will release
(activities/temporal/hold_sweep_steps.py)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.temporal.hold_sweep_steps import SweepActivities, SweepHoldsInput, SweepResult
    from workflows.retries import DATABASE_RETRY


@workflow.defn
class HoldSweepWorkflow:
    @workflow.run
    async def run(self, request: SweepHoldsInput) -> SweepResult:
        return await workflow.execute_activity_method(
            SweepActivities.sweep_holds,
            request,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=DATABASE_RETRY,
        )
