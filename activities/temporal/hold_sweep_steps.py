"""The hold sweeper's activity: a safety net under the checkout, run by a schedule.

A checkout releases its own hold when the order is not paid. If its workflow is gone (terminated
by hand, failed on a bug) or stuck long past the hold's deadline (workers down for a long time),
nobody would: the stock stays held for ever. Nor would anyone release stock the gateway claimed
for a tap if it stopped before making the order. The sweeper finds such holds and releases them, one
metric increment and one warning line per repair.
"""

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities import operations
from activities.operations import HeldReservation
from kassa.db import session_scope
from kassa.metrics import CHECKOUTS_ENDED, HOLDS_REPAIRED

log = logging.getLogger("kassa.sweeper")

WORKFLOW_GONE, DEADLINE_LONG_PAST, CLAIM_ABANDONED = (
    "workflow_gone",
    "deadline_long_past",
    "claim_abandoned",
)


@dataclass(frozen=True)
class SweepHoldsInput:
    # A hold past its deadline by more than this, with its workflow still running, is stuck.
    grace_seconds: int
    # Younger holds are left alone: their checkout may be starting right now.
    min_age_seconds: int = 60
    limit: int = 500


@dataclass(frozen=True)
class RepairedHold:
    order_id: uuid.UUID | None
    reservation_id: uuid.UUID
    why: str


@dataclass(frozen=True)
class SweepResult:
    checked: int
    repaired: list[RepairedHold] = field(default_factory=list)


class SweepActivities:
    def __init__(self, engine: AsyncEngine, temporal: Client) -> None:
        self._engine = engine
        self._temporal = temporal

    @activity.defn
    async def sweep_holds(self, request: SweepHoldsInput) -> SweepResult:
        """Idempotent: a hold is released once; a repeated sweep finds it settled."""
        now = datetime.now(UTC)
        async with session_scope(self._engine) as session:
            held = await operations.held_reservations(
                session, now - timedelta(seconds=request.min_age_seconds), request.limit
            )
        repaired = []
        for hold in held:
            activity.heartbeat(str(hold.reservation_id))
            why = await self._why_left_behind(hold, now - timedelta(seconds=request.grace_seconds))
            if why is None:
                continue
            async with session_scope(self._engine) as session:
                repair = await operations.release_left_hold(session, hold.reservation_id, why)
            if repair is not None:
                HOLDS_REPAIRED.labels(why).inc()
                if repair.ended:  # the order ended here, not in its checkout
                    CHECKOUTS_ENDED.labels(repair.ended).inc()
                log.warning(
                    "hold released by the sweeper",
                    extra={
                        "order_id": hold.order_id,
                        "reservation_id": hold.reservation_id,
                        "workflow_id": hold.workflow_id,
                        "why": why,
                    },
                )
                repaired.append(RepairedHold(hold.order_id, hold.reservation_id, why))
        return SweepResult(len(held), repaired)

    async def _why_left_behind(self, hold: HeldReservation, overdue_before: datetime) -> str | None:
        """Why no checkout will release this hold, or None while one still may."""
        if hold.workflow_id is None:
            return CLAIM_ABANDONED  # the gateway claimed stock for a tap, and made no order of it
        handle = self._temporal.get_workflow_handle(hold.workflow_id)
        try:
            running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            if running and hold.hold_expires_at < overdue_before:
                # Stopped first, so it cannot act on the order after we ended it.
                await handle.terminate(reason="hold sweeper: the hold's deadline passed long ago")
                return DEADLINE_LONG_PAST
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            running = False
        return None if running else WORKFLOW_GONE

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [self.sweep_holds]
