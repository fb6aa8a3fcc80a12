"""Accounts as people see them: one's own profile; and the admin's list of accounts and changes
to them."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import throttling, tokens
from activities.roles import ROLES
from kassa.errors import Conflict, Invalid, NotFound
from kassa.tables import User, utcnow


@dataclass(frozen=True)
class Profile:
    id: uuid.UUID
    email: str
    role: str
    display_name: str | None
    phone: str | None
    # Set while too many wrong passwords lock the account: a login then answers as to a wrong
    # password (it must not tell others the account exists), so the owner learns it here.
    locked_until: datetime | None

    @classmethod
    def of(cls, user: User) -> "Profile":
        locked_until = (
            user.locked_until if user.locked_until and user.locked_until > utcnow() else None
        )
        return cls(user.id, user.email, user.role, user.display_name, user.phone, locked_until)


@dataclass(frozen=True)
class AccountView(Profile):
    """What an admin sees of an account."""

    status: str
    failed_logins: int
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> "AccountView":
        return cls(
            **vars(Profile.of(user)),
            status=user.status,
            failed_logins=user.failed_logins,
            created_at=user.created_at,
        )


async def update_profile(
    session: AsyncSession, user_id: uuid.UUID, changes: dict[str, str | None]
) -> User:
    """`changes` of display_name and phone (None clears one). Idempotent."""
    user = await session.get_one(User, user_id)
    for name in ("display_name", "phone"):
        if name in changes:
            setattr(user, name, changes[name])
    session.add(user)
    return user


async def list_accounts(
    session: AsyncSession,
    limit: int,
    email: str | None = None,
    role: str | None = None,
    status: str | None = None,
) -> list[User]:
    """Newest first; `email` matches the start of the address."""
    query = select(User).order_by(col(User.created_at).desc()).limit(limit)
    if email:
        # The prefix is matched literally: % and _ in it are not wildcards.
        query = query.where(col(User.email).startswith(email.strip().lower(), autoescape=True))
    if role is not None:
        query = query.where(User.role == role)
    if status is not None:
        query = query.where(User.status == status)
    return list(await session.exec(query))


async def change_account(
    session: AsyncSession,
    admin_id: uuid.UUID,
    user_id: uuid.UUID,
    role: str | None = None,
    status: str | None = None,
    unlock: bool = False,
) -> User:
    """An admin's change: role, block or unblock (blocking ends every login), lift a lockout.
    Idempotent."""
    if user_id == admin_id and (role is not None or status is not None):
        # Else the last admin could demote or block themselves, and no one could undo it.
        raise Conflict(
            "own_account", "Admins do not change their own role or status: ask another admin."
        )
    if role is not None and role not in ROLES:
        raise Invalid("invalid_role", f"Role must be one of {', '.join(ROLES)}.")
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("user_not_found", "No such account: GET /admin/users lists them.")
    if role is not None:
        user.role = role
    if status is not None:
        user.status = status
        if status == "blocked":
            await tokens.revoke_all(session, user.id, "blocked")
    if unlock:
        user.failed_logins, user.locked_until = 0, None
        await throttling.forget_account(session, user.email)
    session.add(user)
    return user
