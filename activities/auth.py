"""Auth & ID: accounts, password hashes (argon2), access tokens, who may check out."""

import re
import uuid
from datetime import datetime, timedelta, timezone

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import Conflict, Forbidden, Invalid, Unauthorized
from kassa.tables import User

ROLES = ("customer", "admin")
CHECKOUT_ROLES = ("customer", "admin")
MIN_PASSWORD_LENGTH = 8
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_hasher = PasswordHasher()


def _normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise Invalid("invalid_email", "Give a valid e-mail address, like name@example.com.")
    return email


def _check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= 256:
        raise Invalid("weak_password", f"Choose a password of {MIN_PASSWORD_LENGTH} to 256 characters.")


async def register(session: AsyncSession, email: str, password: str, role: str = "customer") -> User:
    """Idempotent only in refusing a second account for the same e-mail (409)."""
    email = _normalize_email(email)
    _check_password(password)
    if role not in ROLES:
        raise Invalid("invalid_role", f"Role must be one of {', '.join(ROLES)}.")
    created = await session.exec(
        insert(User)
        .values(id=uuid.uuid4(), email=email, password_hash=_hasher.hash(password), role=role, status="active")
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(User.id)
    )
    user_id = created.scalar_one_or_none()
    if user_id is None:
        raise Conflict("email_taken", "An account with this e-mail exists: log in instead.")
    return await session.get_one(User, user_id)


async def create_admin(session: AsyncSession, email: str, password: str) -> User:
    """Creates the admin, or makes an existing account of that e-mail an admin with this password."""
    email = _normalize_email(email)
    _check_password(password)
    user = (await session.exec(select(User).where(User.email == email))).one_or_none()
    if user is None:
        return await register(session, email, password, role="admin")
    user.role, user.password_hash = "admin", _hasher.hash(password)
    session.add(user)
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    user = (await session.exec(select(User).where(User.email == email.strip().lower()))).one_or_none()
    try:
        if user is None:
            # Spend the same time as a real check, so timing does not reveal which e-mails exist.
            _hasher.hash(password)
            raise VerifyMismatchError
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        raise Unauthorized("invalid_credentials", "E-mail or password is wrong.") from None
    if user.status != "active":
        raise Forbidden("account_blocked", "This account is blocked: contact support.")
    return user


def issue_access_token(user: User, secret: str, lifetime: timedelta) -> str:
    now = datetime.now(timezone.utc)
    claims = {"sub": str(user.id), "role": user.role, "iat": now, "exp": now + lifetime, "typ": "access"}
    return jwt.encode(claims, secret, algorithm="HS256")


def read_access_token(token: str, secret: str) -> uuid.UUID:
    """The user id of a valid, unexpired access token."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "typ"]})
        if claims["typ"] != "access":
            raise jwt.InvalidTokenError
        return uuid.UUID(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token_expired", "The access token has expired: log in again.") from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized("invalid_token", "The access token is not valid: log in again.") from None


async def verify_customer(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The account may check out: it exists, is active, and its role allows buying."""
    user = await session.get(User, user_id)
    if user is None or user.status != "active" or user.role not in CHECKOUT_ROLES:
        raise Forbidden("customer_not_allowed", "This account may not check out: contact support.")
    return user
