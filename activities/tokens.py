"""Access and refresh tokens.

An access token is a short-lived JWT (HS256) that names its key in the `kid` header, so keys
rotate without logging anyone out: new tokens are signed with the current key, and tokens signed
with a previous key are still read until they expire. It names its login too (`sid`), so ending
the login ends its access tokens at once.

A refresh token is random and stored only as its SHA-256. It is good for one refresh, which
spends it and issues the next one of the same family (the login). A spent token shown again was
copied, by someone or from somewhere: the whole family is revoked.
"""

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.db import session_scope
from kassa.errors import Unauthorized
from kassa.settings import Settings
from kassa.tables import RefreshToken, TokenFamily, User, utcnow

ALGORITHM = "HS256"


def key_id(key: str) -> str:
    """The key's name in the `kid` header: part of its SHA-256, which tells nothing of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    signing_key: str
    verification_keys: dict[str, str]  # by kid: the signing key and the previous ones

    @classmethod
    def of(cls, current: str, previous: Sequence[str] = ()) -> "Keyring":
        return cls(current, {key_id(key): key for key in (current, *previous)})


@dataclass(frozen=True)
class TokenPolicy:
    keyring: Keyring
    access_lifetime: timedelta
    refresh_lifetime: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenPolicy":
        assert settings.jwt_secret
        return cls(
            Keyring.of(settings.jwt_secret, settings.jwt_previous_secrets),
            timedelta(seconds=settings.access_token_seconds),
            timedelta(seconds=settings.refresh_token_seconds),
        )


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lasts
    token_type: str = "bearer"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    family_id: uuid.UUID


def issue_access_token(
    keyring: Keyring, user_id: uuid.UUID, family_id: uuid.UUID, lifetime: timedelta
) -> str:
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "sid": str(family_id),
        "iat": now,
        "exp": now + lifetime,
        "typ": "access",
    }
    return jwt.encode(
        claims,
        keyring.signing_key,
        algorithm=ALGORITHM,
        headers={"kid": key_id(keyring.signing_key)},
    )


def read_access_token(keyring: Keyring, token: str) -> AccessClaims:
    """The claims of a token signed by one of our keys with our algorithm, unexpired."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = keyring.verification_keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidTokenError
        # Only HS256: `none`, and a public-key algorithm fed our secret as its key, are refused
        # here.
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["sub", "sid", "exp", "typ"]}
        )
        if claims["typ"] != "access":
            raise jwt.InvalidTokenError
        return AccessClaims(uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"])))
    except jwt.ExpiredSignatureError:
        raise Unauthorized(
            "token_expired", "The access token has expired: refresh it, or log in again."
        ) from None
    except (jwt.InvalidTokenError, ValueError):
        raise Unauthorized(
            "invalid_token", "The access token is not valid: log in again."
        ) from None


async def signed_in_user(session: AsyncSession, claims: AccessClaims) -> User:
    """The account of a valid access token, if its login is still live and the account active."""
    row = (
        await session.exec(
            select(User, TokenFamily.revoked_at)
            .join(TokenFamily, col(TokenFamily.user_id) == col(User.id))
            .where(TokenFamily.id == claims.family_id, User.id == claims.user_id)
        )
    ).one_or_none()
    if row is not None and row[1] is not None:
        raise Unauthorized(
            "token_revoked", "This login has ended (logged out or revoked): log in again."
        )
    if row is None or row[0].status != "active":
        raise Unauthorized(
            "invalid_token", "The account behind this token is gone or blocked: log in again."
        )
    return row[0]


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


async def start_family(session: AsyncSession, policy: TokenPolicy, user_id: uuid.UUID) -> TokenPair:
    """A new login: its family and its first pair."""
    family = TokenFamily(user_id=user_id)
    session.add(family)
    await session.flush()
    return await _next_pair(session, policy, user_id, family.id)


async def _next_pair(
    session: AsyncSession, policy: TokenPolicy, user_id: uuid.UUID, family_id: uuid.UUID
) -> TokenPair:
    now = utcnow()
    # Expired tokens of the family are dead whether spent or not: no need to keep them for reuse
    # detection.
    await session.exec(
        delete(RefreshToken).where(
            col(RefreshToken.family_id) == family_id, col(RefreshToken.expires_at) < now
        )
    )
    refresh_token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            token_hash=_digest(refresh_token),
            family_id=family_id,
            issued_at=now,
            expires_at=now + policy.refresh_lifetime,
        )
    )
    access_token = issue_access_token(policy.keyring, user_id, family_id, policy.access_lifetime)
    return TokenPair(access_token, refresh_token, int(policy.access_lifetime.total_seconds()))


_INVALID_REFRESH = (
    "invalid_refresh_token",
    "The refresh token is unknown, expired or its login has ended: log in again.",
)


async def rotate(engine: AsyncEngine, policy: TokenPolicy, refresh_token: str) -> TokenPair:
    """A new pair for a live refresh token, which this spends. Not idempotent, by design: the same
    token twice is a reuse, and revokes its family (the revocation is kept although this
    refuses)."""
    async with session_scope(engine) as session:
        now = utcnow()
        token_hash = _digest(refresh_token)
        # Spent in one guarded UPDATE: of two concurrent refreshes with one token, one spends it.
        family_id = (
            await session.exec(
                update(RefreshToken)
                .where(
                    col(RefreshToken.token_hash) == token_hash,
                    col(RefreshToken.spent_at).is_(None),
                    col(RefreshToken.expires_at) > now,
                )
                .values(spent_at=now)
                .returning(col(RefreshToken.family_id))
            )
        ).scalar_one_or_none()
        if family_id is not None:
            family = await session.get_one(TokenFamily, family_id)
            user = await session.get_one(User, family.user_id)
            if family.revoked_at is None and user.status == "active":
                return await _next_pair(session, policy, user.id, family.id)
            refusal = Unauthorized(*_INVALID_REFRESH)
        else:
            known = await session.get(RefreshToken, token_hash)
            if known is not None and known.spent_at is not None:
                await revoke_family(session, known.family_id, "reuse")
                refusal = Unauthorized(
                    "refresh_token_reused",
                    "This refresh token was used before, so it may have been copied:"
                    " this login has ended. Log in again.",
                )
            else:
                refusal = Unauthorized(*_INVALID_REFRESH)
    raise refusal


async def log_out(session: AsyncSession, refresh_token: str) -> None:
    """Ends the login of this refresh token (spent or not). Idempotent: a login ends once."""
    known = await session.get(RefreshToken, _digest(refresh_token))
    if known is None:
        raise Unauthorized(*_INVALID_REFRESH)
    await revoke_family(session, known.family_id, "logout")


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, reason: str) -> None:
    await _revoke(session, col(TokenFamily.id) == family_id, reason)


async def revoke_all(session: AsyncSession, user_id: uuid.UUID, reason: str) -> None:
    """Ends every login of the account."""
    await _revoke(session, col(TokenFamily.user_id) == user_id, reason)


async def _revoke(session: AsyncSession, families: ColumnElement[bool], reason: str) -> None:
    # Idempotent: the first revocation and its reason stand.
    await session.exec(
        update(TokenFamily)
        .where(families, col(TokenFamily.revoked_at).is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
