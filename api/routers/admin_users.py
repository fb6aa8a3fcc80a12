"""Accounts, for admins: find them; change a role, block or unblock, lift a lockout."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from activities import accounts
from activities.accounts import AccountView
from activities.roles import Permission
from api.deps import SessionDep, requires
from api.fields import Text
from api.problems import answers
from kassa.tables import User

router = APIRouter(prefix="/admin/users", tags=["admin"])

AccountStatus = Literal["active", "blocked"]


class AccountChange(BaseModel):
    """Only what is sent changes."""

    role: Annotated[Text, Field(max_length=16)] | None = None
    status: AccountStatus | None = None
    unlock: bool = Field(default=False, strict=True, description="true lifts a lockout")


@router.get("")
async def list_users(
    admin: Annotated[User, requires(Permission.USERS_MANAGE)],
    session: SessionDep,
    email: Annotated[
        Text | None, Query(max_length=254, description="the start of the address")
    ] = None,
    role: Annotated[Text | None, Query(max_length=16)] = None,
    status: AccountStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[AccountView]:
    return [
        AccountView.of(user)
        for user in await accounts.list_accounts(session, limit, email, role, status)
    ]


@router.patch("/{user_id}", responses=answers(409))
async def change_user(
    user_id: uuid.UUID,
    body: AccountChange,
    admin: Annotated[User, requires(Permission.USERS_MANAGE)],
    session: SessionDep,
) -> AccountView:
    user = await accounts.change_account(
        session, admin.id, user_id, body.role, body.status, body.unlock
    )
    return AccountView.of(user)
