"""Retention: the records that only grow, kept as long as they serve.

webhook_events  — a processed event serves to answer the provider's redelivery as a duplicate
                  (Stripe retries for 3 days); kept `webhook_events` long. An event not yet
                  processed is kept whatever its age: its news is still to be told.
login_attempts  — a row counts attempts in its window; once the window is over it counts
                  nothing, and is kept `login_attempts` longer for whoever looks into an attack.

Each function deletes one batch in the caller's transaction and says how many rows went, so that
no delete holds many rows' locks for long; the caller repeats until a batch comes back short.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.settings import Settings
from kassa.tables import LoginAttempts, WebhookEvent


@dataclass(frozen=True)
class RetentionAges:
    webhook_events: timedelta
    login_attempts: timedelta  # after the row's window is over
    login_window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetentionAges":
        return cls(
            timedelta(days=settings.webhook_event_retention_days),
            timedelta(days=settings.login_attempt_retention_days),
            timedelta(seconds=settings.login_window_seconds),
        )


async def forget_webhook_events(
    session: AsyncSession, received_before: datetime, limit: int
) -> int:
    """Deletes up to `limit` processed events received before `received_before`. Idempotent."""
    old = (
        select(WebhookEvent.id)
        .where(
            col(WebhookEvent.received_at) < received_before,
            col(WebhookEvent.processed_at).is_not(None),
        )
        .limit(limit)
        # An event the inbox holds right now (a redelivery) is left for the next round.
        .with_for_update(skip_locked=True)
    )
    deleted = await session.exec(delete(WebhookEvent).where(col(WebhookEvent.id).in_(old)))
    return deleted.rowcount


async def forget_login_attempts(
    session: AsyncSession, window_started_before: datetime, limit: int
) -> int:
    """Deletes up to `limit` counts whose window started before `window_started_before`.
    Idempotent."""
    old = (
        select(LoginAttempts.scope, LoginAttempts.subject)
        .where(col(LoginAttempts.window_started_at) < window_started_before)
        .limit(limit)
        .with_for_update(skip_locked=True)  # a login counting in it now: the next round
    )
    key = tuple_(col(LoginAttempts.scope), col(LoginAttempts.subject))
    deleted = await session.exec(delete(LoginAttempts).where(key.in_(old)))
    return deleted.rowcount
