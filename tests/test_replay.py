"""Determinism: recorded checkout histories must replay on today's workflow code.

`tests/histories/*.json` are real runs recorded from the dev server, one per way a checkout ends,
each started as the gateway starts it (the placed order as the run's input), and
`checkout-paid-in-one-step.json`, a paid run of the `paid-in-one-step` patch's path (the others
were recorded before it and replay the path without it). They hold the markers
of patches retired since (`workflow.deprecate_patch`, then removed): a deprecated marker with no
call left in the code is skipped on replay, so runs started by the previous release still replay.
A change to CheckoutWorkflow that would break running checkouts in production fails here.
`KASSA_RECORD_HISTORIES=1 make test` records the endings that have no history yet; it never
overwrites one (a run of today's path would drop the replay of the path older runs took): after
an intended, versioned change, add the new path's history under a name of its own, as
`checkout-paid-in-one-step.json` was, and delete a file only when no run of its path is left.
"""

import json
import os
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.conftest import Kassa
from tests.flow import CARD, pay_now
from worker import WORKFLOWS
from workflows.checkout import CheckoutWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def test_recorded_histories_replay() -> None:
    recorded = sorted(HISTORIES.glob("*.json"))
    assert recorded, "no recorded histories in tests/histories"
    replayer = Replayer(workflows=[CheckoutWorkflow])
    for path in recorded:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_this_sessions_checkouts_replay(kassa: Kassa) -> None:
    """Every finished checkout of this test session, replayed; one per final status is kept when
    recording."""
    customer = await kassa.customer()
    async with customer.http() as http:
        paid = await pay_now(
            http, await customer.cart_with((await kassa.product(on_hand=1), 1)), CARD
        )
        assert paid.status_code == 201, paid.text
    query = f'TaskQueue = "{kassa.settings.task_queue}" AND ExecutionStatus = "Completed"'
    histories = [
        history async for history in kassa.temporal.list_workflows(query, limit=60).map_histories()
    ]
    replayer = Replayer(workflows=WORKFLOWS)
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{history.workflow_id}: {result.replay_failure}"
    for history in histories:
        record(history)


def record(history: WorkflowHistory) -> None:
    """With KASSA_RECORD_HISTORIES set, keep this run as the recorded history of its ending, if
    that ending has none yet."""
    if not os.environ.get("KASSA_RECORD_HISTORIES"):
        return
    if not history.workflow_id.startswith("checkout-"):
        return
    result = json.loads(
        history.events[-1].workflow_execution_completed_event_attributes.result.payloads[0].data
    )
    HISTORIES.mkdir(exist_ok=True)
    recorded = HISTORIES / f"checkout-{result['status'].lower()}.json"
    if not recorded.exists():
        recorded.write_text(history.to_json())
