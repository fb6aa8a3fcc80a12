"""What a route needs, as dependencies: settings, a database session, Temporal, the caller and
what it may do."""

import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from argon2 import PasswordHasher
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities import tokens
from activities.auth import password_hasher
from activities.providers.protocol import PaymentProvider
from activities.roles import Permission, allows
from activities.throttling import LoginLimits
from activities.tokens import AccessClaims, TokenPolicy
from kassa.db import session_scope
from kassa.errors import Forbidden, Unauthorized
from kassa.settings import Settings
from kassa.tables import User


# Every dependency is `async def`: FastAPI runs a plain `def` one in its thread pool, a hop to a
# thread and back for each, on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


async def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


async def get_provider(request: Request) -> PaymentProvider:
    return request.app.state.provider


async def get_session(
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> AsyncIterator[AsyncSession]:
    async with session_scope(engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
# Committed before the answer is sent (scope "function"): a client that got its 200 reads what it
# wrote.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]
ProviderDep = Annotated[PaymentProvider, Depends(get_provider)]


async def get_token_policy(settings: SettingsDep) -> TokenPolicy:
    return TokenPolicy.from_settings(settings)


async def get_password_hasher(settings: SettingsDep) -> PasswordHasher:
    return password_hasher(settings)


async def get_login_limits(settings: SettingsDep) -> LoginLimits:
    return LoginLimits.from_settings(settings)


async def get_client_address(request: Request) -> str:
    # The X-Forwarded-For address only from a proxy in KASSA_TRUSTED_PROXIES (api/main.py).
    return request.client.host if request.client else "unknown"


TokenPolicyDep = Annotated[TokenPolicy, Depends(get_token_policy)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
LoginLimitsDep = Annotated[LoginLimits, Depends(get_login_limits)]
ClientAddressDep = Annotated[str, Depends(get_client_address)]

_bearer = HTTPBearer(auto_error=False)


async def get_access_claims(
    policy: TokenPolicyDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    """The bearer token's claims, checked by signature and expiry alone (no database)."""
    if credentials is None:
        raise Unauthorized(
            "not_authenticated", "Log in and send `Authorization: Bearer <access_token>`."
        )
    return tokens.read_access_token(policy.keyring, credentials.credentials)


AccessClaimsDep = Annotated[AccessClaims, Depends(get_access_claims)]


async def require_metrics_reader(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """/metrics tells business volumes: in production only to the scraper that holds
    KASSA_METRICS_TOKEN (compared in constant time); in dev and test to anyone."""
    if settings.env != "production":
        return
    presented = (credentials.credentials if credentials else "").encode()
    expected = (settings.metrics_token or "").encode()
    if not (expected and hmac.compare_digest(presented, expected)):
        raise Unauthorized(
            "metrics_token_required",
            "Scrape /metrics with `Authorization: Bearer <KASSA_METRICS_TOKEN>`"
            + ("." if expected else "; set KASSA_METRICS_TOKEN on the api first."),
        )


async def get_current_user(engine: EngineDep, claims: AccessClaimsDep) -> User:
    # Its own short transaction: routes that wait on a workflow must not hold a connection
    # meanwhile.
    async with session_scope(engine) as session:
        return await tokens.signed_in_user(session, claims)


CurrentUser = Annotated[User, Depends(get_current_user)]


def permitted(user: User, permission: Permission) -> User:
    """The user, if their role has `permission`; 403 if not."""
    if not allows(user.role, permission):
        raise Forbidden(
            "not_permitted",
            f"A {user.role} account may not do this: it needs the {permission} permission.",
        )
    return user


def requires(permission: Permission) -> Any:
    """The caller, if their role has `permission` (403 if not):
    `user: Annotated[User, requires(Permission.X)]`."""

    async def permitted_user(user: CurrentUser) -> User:
        return permitted(user, permission)

    return Depends(permitted_user)
