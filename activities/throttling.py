"""Login throttling and lockout limits.

Attempts are counted per account (by e-mail, whether the account exists or not, so the answer
tells nothing) and per client address, in fixed windows, in PostgreSQL: the limits hold across
api processes. An attempt is counted *before* its password is checked, in a transaction of its
own, so a burst of concurrent guesses cannot slip past the limit; a right password gives the
attempt back.
"""

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.settings import Settings
from kassa.tables import LoginAttempts, utcnow

ACCOUNT, ADDRESS = "account", "address"


@dataclass(frozen=True)
class LoginLimits:
    window: timedelta
    attempts_per_account: int
    attempts_per_address: int
    lockout_failures: int  # consecutive wrong passwords that lock the account
    lockout: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "LoginLimits":
        return cls(
            timedelta(seconds=settings.login_window_seconds),
            settings.login_attempts_per_account,
            settings.login_attempts_per_address,
            settings.lockout_failures,
            timedelta(seconds=settings.lockout_seconds),
        )


async def count_attempt(
    session: AsyncSession, limits: LoginLimits, email: str, client_address: str
) -> int | None:
    """Counts one attempt for the account and for the address; the seconds to wait if either is
    over its limit (the attempt must then not be tried), else None."""
    now = utcnow()
    waits = []
    # Always account first, then address: concurrent attempts lock the rows in one order.
    for scope, subject, limit in (
        (ACCOUNT, email, limits.attempts_per_account),
        (ADDRESS, client_address, limits.attempts_per_address),
    ):
        window_over = col(LoginAttempts.window_started_at) <= now - limits.window
        counted = await session.exec(
            insert(LoginAttempts)
            .values(scope=scope, subject=subject, attempts=1, window_started_at=now)
            .on_conflict_do_update(
                index_elements=["scope", "subject"],
                set_={
                    "attempts": case((window_over, 1), else_=col(LoginAttempts.attempts) + 1),
                    "window_started_at": case(
                        (window_over, now), else_=col(LoginAttempts.window_started_at)
                    ),
                },
            )
            .returning(col(LoginAttempts.attempts), col(LoginAttempts.window_started_at))
        )
        attempts, window_started_at = counted.one()
        if attempts > limit:
            waits.append(
                max(1, math.ceil((window_started_at + limits.window - now).total_seconds()))
            )
    return max(waits, default=None)


async def forgive(session: AsyncSession, email: str, client_address: str) -> None:
    """A right password: the account's count starts over, and the address gets this attempt back,
    so people behind one address are not throttled for logging in."""
    await forget_account(session, email)
    await session.exec(
        update(LoginAttempts)
        .where(col(LoginAttempts.scope) == ADDRESS, col(LoginAttempts.subject) == client_address)
        .values(attempts=func.greatest(col(LoginAttempts.attempts) - 1, 0))
    )


async def forget_account(session: AsyncSession, email: str) -> None:
    await session.exec(
        delete(LoginAttempts).where(
            col(LoginAttempts.scope) == ACCOUNT, col(LoginAttempts.subject) == email
        )
    )
