"""A customer's delivery addresses: at most one default, the only one Pay Now can name is one's
own."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import Conflict, NotFound
from kassa.tables import Address, User, utcnow

MAX_ADDRESSES = 20


class AddressFields(TypedDict):
    """What a customer types for a new address."""

    recipient: str
    phone: str | None
    country: str
    city: str
    postal_code: str
    line1: str
    line2: str | None


@dataclass(frozen=True)
class AddressView:
    id: uuid.UUID
    recipient: str
    phone: str | None
    country: str
    city: str
    postal_code: str
    line1: str
    line2: str | None
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, address: Address) -> "AddressView":
        return cls(**{name: getattr(address, name) for name in cls.__dataclass_fields__})


async def list_addresses(session: AsyncSession, user_id: uuid.UUID) -> list[Address]:
    """The default first, then the newest."""
    query = (
        select(Address)
        .where(Address.user_id == user_id, col(Address.deleted_at).is_(None))
        .order_by(col(Address.is_default).desc(), col(Address.created_at).desc())
    )
    return list(await session.exec(query))


async def owned_address(
    session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID
) -> Address:
    """The address if it is this customer's and not deleted; 404 otherwise, so a stranger learns
    nothing."""
    address = await session.get(Address, address_id)
    if address is None or address.user_id != user_id or address.deleted_at is not None:
        raise NotFound("address_not_found", "No such address: GET /me/addresses lists yours.")
    return address


async def _lock_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    # One change to an account's addresses at a time: the count and the one default never race.
    await session.exec(select(User.id).where(User.id == user_id).with_for_update())


async def add_address(
    session: AsyncSession, user_id: uuid.UUID, fields: AddressFields, is_default: bool
) -> Address:
    """The first address is the default; a later one becomes it when asked. Not idempotent: each
    call adds one."""
    await _lock_account(session, user_id)
    live = await list_addresses(session, user_id)
    if len(live) >= MAX_ADDRESSES:
        raise Conflict("too_many_addresses", f"Up to {MAX_ADDRESSES} addresses: delete one first.")
    is_default = is_default or not live
    if is_default:
        await session.exec(
            update(Address)
            .where(col(Address.user_id) == user_id, col(Address.is_default))
            .values(is_default=False)
        )
    address = Address(user_id=user_id, is_default=is_default, **fields)
    session.add(address)
    await session.flush()
    return address


async def delete_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> None:
    """Hidden, not removed: orders that name it keep it. Deleting the default leaves none."""
    await _lock_account(session, user_id)
    address = await owned_address(session, user_id, address_id)
    address.deleted_at, address.is_default = utcnow(), False
    session.add(address)
