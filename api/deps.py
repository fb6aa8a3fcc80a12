"""What a route needs, as dependencies: settings, a database session, Temporal, the caller."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.auth import read_access_token
from kassa.db import session_scope
from kassa.errors import Forbidden, Unauthorized
from kassa.settings import Settings
from kassa.tables import User


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


async def get_session(engine: Annotated[AsyncEngine, Depends(get_engine)]) -> AsyncIterator[AsyncSession]:
    async with session_scope(engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

_bearer = HTTPBearer(auto_error=False)


async def get_current_user(
    engine: EngineDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise Unauthorized("not_authenticated", "Log in and send `Authorization: Bearer <access_token>`.")
    assert settings.jwt_secret
    user_id = read_access_token(credentials.credentials, settings.jwt_secret)
    # Its own short transaction: routes that wait on a workflow must not hold a connection meanwhile.
    async with session_scope(engine) as session:
        user = await session.get(User, user_id)
    if user is None or user.status != "active":
        raise Unauthorized("invalid_token", "The account behind this token is gone or blocked: log in again.")
    return user


async def get_admin(user: Annotated[User, Depends(get_current_user)]) -> User:
    if user.role != "admin":
        raise Forbidden("admin_only", "This needs an admin account.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
AdminUser = Annotated[User, Depends(get_admin)]
