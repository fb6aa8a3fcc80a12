"""The caller's own account: profile for every account, delivery addresses for those who shop."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from activities import accounts, addresses, loyalty
from activities.accounts import Profile
from activities.addresses import AddressView
from activities.loyalty import LoyaltyView
from activities.roles import Permission
from api.deps import CurrentUser, SessionDep, requires
from api.fields import AddressLine, NameLine
from api.problems import answers
from kassa.tables import User

router = APIRouter(prefix="/me", tags=["me"])


Phone = Annotated[
    str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, like +79161234567")
]


class ProfileChange(BaseModel):
    """Only the fields sent change; null clears one."""

    display_name: NameLine | None = None
    phone: Phone | None = None


class NewAddress(BaseModel):
    recipient: NameLine
    phone: Phone | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, like RU")]
    city: NameLine
    postal_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{1,15}$")]
    line1: AddressLine
    line2: AddressLine | None = None
    is_default: bool = Field(default=False, strict=True)


@router.get("")
async def get_profile(user: CurrentUser) -> Profile:
    return Profile.of(user)


@router.patch("")
async def change_profile(body: ProfileChange, user: CurrentUser, session: SessionDep) -> Profile:
    changes = body.model_dump(include=body.model_fields_set)
    return Profile.of(await accounts.update_profile(session, user.id, changes))


@router.get("/addresses")
async def list_addresses(
    user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> list[AddressView]:
    return [AddressView.of(address) for address in await addresses.list_addresses(session, user.id)]


@router.post("/addresses", status_code=201, responses=answers(409))
async def add_address(
    body: NewAddress, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> AddressView:
    fields = addresses.AddressFields(
        recipient=body.recipient,
        phone=body.phone,
        country=body.country,
        city=body.city,
        postal_code=body.postal_code,
        line1=body.line1,
        line2=body.line2,
    )
    return AddressView.of(await addresses.add_address(session, user.id, fields, body.is_default))


@router.delete("/addresses/{address_id}", status_code=204, response_class=Response)
async def delete_address(
    address_id: uuid.UUID, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> Response:
    await addresses.delete_address(session, user.id, address_id)
    return Response(status_code=204)


@router.get("/loyalty")
async def get_loyalty(
    user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> LoyaltyView:
    return await loyalty.view(session, user.id)
