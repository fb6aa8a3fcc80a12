"""RetentionWorkflow: on a schedule, delete the records kept past their age
(activities/retention.py)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.temporal.retention_steps import Forgotten, RetentionActivities
    from workflows.retries import DATABASE_RETRY


@workflow.defn
class RetentionWorkflow:
    @workflow.run
    async def run(self) -> Forgotten:
        return await workflow.execute_activity_method(
            RetentionActivities.forget_old_records,
            # Batches of 5,000, each a heartbeat: the first run on a large table takes a while.
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=DATABASE_RETRY,
        )
