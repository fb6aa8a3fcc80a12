"""The retention activity (activities/retention.py), run by a schedule."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities import retention
from activities.retention import RetentionAges
from kassa.db import session_scope
from kassa.tables import utcnow

log = logging.getLogger("kassa.retention")

BATCH = 5000


@dataclass(frozen=True)
class Forgotten:
    webhook_events: int
    login_attempts: int


class RetentionActivities:
    def __init__(self, engine: AsyncEngine, ages: RetentionAges) -> None:
        self._engine = engine
        self._ages = ages

    @activity.defn
    async def forget_old_records(self) -> Forgotten:
        """Idempotent: what is gone stays gone, and a retry deletes what is left. The ages are the
        worker's settings: a changed age applies from the next run of a restarted worker."""
        now = utcnow()
        forgotten = Forgotten(
            webhook_events=await self._in_batches(
                retention.forget_webhook_events, now - self._ages.webhook_events
            ),
            login_attempts=await self._in_batches(
                retention.forget_login_attempts,
                now - self._ages.login_window - self._ages.login_attempts,
            ),
        )
        log.info(
            "old records deleted",
            extra={
                "webhook_events": forgotten.webhook_events,
                "login_attempts": forgotten.login_attempts,
            },
        )
        return forgotten

    async def _in_batches(
        self, forget: Callable[[AsyncSession, datetime, int], Awaitable[int]], before: datetime
    ) -> int:
        total = 0
        while True:
            async with session_scope(self._engine) as session:
                deleted = await forget(session, before, BATCH)
            total += deleted
            activity.heartbeat(total)
            if deleted < BATCH:
                return total

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [self.forget_old_records]
