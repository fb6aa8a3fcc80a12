import uuid
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field

from activities import auth
from api.deps import CurrentUser, SessionDep, SettingsDep
from api.fields import Text

router = APIRouter(tags=["auth"])


class Credentials(BaseModel):
    email: Text = Field(max_length=254)
    password: Text = Field(max_length=256)


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    role: str


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    expires_in: int
    token_type: str = "bearer"


@router.post("/auth/register", status_code=201)
async def register(body: Credentials, session: SessionDep) -> Account:
    user = await auth.register(session, body.email, body.password)
    return Account(user.id, user.email, user.role)


@router.post("/auth/login")
async def login(body: Credentials, session: SessionDep, settings: SettingsDep) -> AccessToken:
    user = await auth.authenticate(session, body.email, body.password)
    assert settings.jwt_secret
    lifetime = timedelta(seconds=settings.access_token_seconds)
    return AccessToken(auth.issue_access_token(user, settings.jwt_secret, lifetime), settings.access_token_seconds)


@router.get("/me")
async def me(user: CurrentUser) -> Account:
    return Account(user.id, user.email, user.role)
