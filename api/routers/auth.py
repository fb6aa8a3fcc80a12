"""Accounts and logins: register, log in (a token pair), refresh (the next pair), log out."""

from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from activities import auth, tokens
from activities.accounts import Profile
from activities.auth import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from activities.tokens import TokenPair
from api.deps import (
    ClientAddressDep,
    EngineDep,
    LoginLimitsDep,
    PasswordHasherDep,
    SessionDep,
    TokenPolicyDep,
)
from api.fields import Email, Text
from api.problems import answers
from kassa.db import session_scope

router = APIRouter(prefix="/auth", tags=["auth"])


class Credentials(BaseModel):
    email: Email
    password: Text = Field(max_length=MAX_PASSWORD_LENGTH)


class NewAccount(Credentials):
    # The account checks the length (`weak_password`); the schema states it.
    password: Text = Field(
        max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"minLength": MIN_PASSWORD_LENGTH}
    )


class RefreshRequest(BaseModel):
    refresh_token: Annotated[Text, Field(min_length=1, max_length=128)]


@router.post("/register", status_code=201, responses=answers(409))
async def register(body: NewAccount, session: SessionDep, hasher: PasswordHasherDep) -> Profile:
    return Profile.of(await auth.register(session, hasher, body.email, body.password))


@router.post("/login", responses=answers(401, 403, 429))
async def login(
    body: Credentials,
    engine: EngineDep,
    hasher: PasswordHasherDep,
    limits: LoginLimitsDep,
    policy: TokenPolicyDep,
    client_address: ClientAddressDep,
) -> TokenPair:
    user = await auth.log_in(engine, hasher, limits, body.email, body.password, client_address)
    async with session_scope(engine) as session:
        return await tokens.start_family(session, policy, user.id)


@router.post("/refresh", responses=answers(401))
async def refresh(body: RefreshRequest, engine: EngineDep, policy: TokenPolicyDep) -> TokenPair:
    return await tokens.rotate(engine, policy, body.refresh_token)


@router.post("/logout", status_code=204, response_class=Response, responses=answers(401))
async def logout(body: RefreshRequest, session: SessionDep) -> Response:
    await tokens.log_out(session, body.refresh_token)
    return Response(status_code=204)
