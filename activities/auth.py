"""Auth & ID: accounts, password hashes (argon2id), logging in, who may check out."""

import logging
import re
import uuid
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import case, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import throttling
from activities.roles import ROLES, Permission, allows
from activities.throttling import LoginLimits
from kassa.db import session_scope
from kassa.errors import Conflict, Forbidden, Invalid, TooManyRequests, Unauthorized
from kassa.settings import Settings
from kassa.tables import User, utcnow

log = logging.getLogger("kassa.auth")

MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 8, 256
# A local part this short ("al" of al@example.com) is in too many good passwords to forbid.
MIN_LOCAL_PART_IN_PASSWORD = 3
EMAIL_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def password_hasher(settings: Settings) -> PasswordHasher:
    return _hasher(
        settings.password_time_cost, settings.password_memory_cost, settings.password_parallelism
    )


@lru_cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > EMAIL_LENGTH or not _EMAIL.match(email):
        raise Invalid("invalid_email", "Give a valid e-mail address, like name@example.com.")
    return email


def _check_password(password: str, email: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Invalid(
            "weak_password",
            f"Choose a password of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters.",
        )
    local_part = email.split("@", 1)[0]
    if len(local_part) >= MIN_LOCAL_PART_IN_PASSWORD and local_part in password.lower():
        raise Invalid(
            "weak_password", "Choose a password that does not contain your e-mail address."
        )


async def register(
    session: AsyncSession, hasher: PasswordHasher, email: str, password: str, role: str = "customer"
) -> User:
    """Idempotent only in refusing a second account for the same e-mail (409)."""
    email = normalize_email(email)
    _check_password(password, email)
    if role not in ROLES:
        raise Invalid("invalid_role", f"Role must be one of {', '.join(ROLES)}.")
    created = await session.exec(
        insert(User)
        .values(
            id=uuid.uuid4(),
            email=email,
            password_hash=hasher.hash(password),
            role=role,
            status="active",
        )
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(col(User.id))
    )
    user_id = created.scalar_one_or_none()
    if user_id is None:
        raise Conflict("email_taken", "An account with this e-mail exists: log in instead.")
    return await session.get_one(User, user_id)


async def create_admin(
    session: AsyncSession, hasher: PasswordHasher, email: str, password: str
) -> User:
    """Creates the admin, or makes an existing account of that e-mail an admin with this
    password."""
    email = normalize_email(email)
    _check_password(password, email)
    user = (await session.exec(select(User).where(User.email == email))).one_or_none()
    if user is None:
        return await register(session, hasher, email, password, role="admin")
    user.role, user.password_hash = "admin", hasher.hash(password)
    session.add(user)
    return user


async def log_in(
    engine: AsyncEngine,
    hasher: PasswordHasher,
    limits: LoginLimits,
    email: str,
    password: str,
    client_address: str,
) -> User:
    """The account of these credentials; or 429 after too many attempts for the account or from the
    address, 403 for a blocked account (once the password is right), 401 for a wrong e-mail or
    password, and for any password while the account is locked: the answer must not tell an
    attacker that the e-mail has an account. The owner learns of the lock from the log line
    `account locked` (with the user id), and from `locked_until` on their profile.

    Three short transactions: the attempt is counted (and committed) first, the password is checked
    outside any, and the outcome is recorded: a wrong password counts towards the lockout even
    though the request is refused.
    """
    email = email.strip().lower()
    async with session_scope(engine) as session:
        wait = await throttling.count_attempt(session, limits, email, client_address)
        user = (await session.exec(select(User).where(User.email == email))).one_or_none()
    if wait is not None:
        raise TooManyRequests(
            "too_many_attempts",
            f"Too many login attempts: try again in {wait} s.",
            retry_after=wait,
        )
    # Hashed whatever the account's state, so that a locked one takes as long as a wrong password.
    right = _password_matches(hasher, user, password)
    if user is not None and user.locked_until is not None and user.locked_until > utcnow():
        log.info(
            "login refused: account locked",
            extra={"user_id": str(user.id), "locked_until": user.locked_until.isoformat()},
        )
        raise _wrong_credentials()
    async with session_scope(engine) as session:
        if user is not None and right:
            await throttling.forgive(session, email, client_address)
            await _reset_failures(session, user, hasher, password)
        elif user is not None:
            await _count_failure(session, user.id, limits)
    if user is None or not right:
        raise _wrong_credentials()
    if user.status != "active":
        raise Forbidden("account_blocked", "This account is blocked: contact support.")
    return user


def _wrong_credentials() -> Unauthorized:
    """One answer for a wrong e-mail, a wrong password and a locked account; it tells the owner of
    a locked account what to do without telling anyone else that the account exists."""
    return Unauthorized(
        "invalid_credentials",
        "E-mail or password is wrong. After many wrong passwords an account refuses every password"
        " for a while: try again later, or ask support.",
    )


def _password_matches(hasher: PasswordHasher, user: User | None, password: str) -> bool:
    try:
        if user is None:
            # Spend the same time as a real check, so timing does not reveal which e-mails exist.
            hasher.hash(password)
            return False
        return hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


async def _count_failure(session: AsyncSession, user_id: uuid.UUID, limits: LoginLimits) -> None:
    # One UPDATE, so concurrent failures all count; each lock starts the count over.
    locks = col(User.failed_logins) + 1 >= limits.lockout_failures
    locked_until = utcnow() + limits.lockout
    locked_now = (
        await session.exec(
            update(User)
            .where(col(User.id) == user_id)
            .values(
                failed_logins=case((locks, 0), else_=col(User.failed_logins) + 1),
                locked_until=case((locks, locked_until), else_=col(User.locked_until)),
            )
            .returning(col(User.locked_until) == locked_until)
        )
    ).scalar_one()
    if locked_now:
        log.warning(
            "account locked",
            extra={
                "user_id": str(user_id),
                "locked_until": locked_until.isoformat(),
                "failures": limits.lockout_failures,
            },
        )


async def _reset_failures(
    session: AsyncSession, user: User, hasher: PasswordHasher, password: str
) -> None:
    changes: dict[str, object] = {"failed_logins": 0, "locked_until": None}
    if hasher.check_needs_rehash(user.password_hash):
        # The costs in settings changed since this hash was made: the right password is at hand to
        # redo it.
        changes["password_hash"] = hasher.hash(password)
    await session.exec(update(User).where(col(User.id) == user.id).values(**changes))


async def verify_customer(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The account may check out: it exists, is active, and its role may shop."""
    user = await session.get(User, user_id)
    if user is None or user.status != "active" or not allows(user.role, Permission.SHOP):
        raise Forbidden("customer_not_allowed", "This account may not check out: contact support.")
    return user
