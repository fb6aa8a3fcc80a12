"""Promo codes, for admins: create one, list them with their held and final uses."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from activities import promos
from activities.promos import PromoView
from activities.roles import Permission
from api.deps import SessionDep, requires
from api.fields import Count, Moment, Text
from api.problems import answers
from kassa.tables import User

router = APIRouter(prefix="/admin/promo-codes", tags=["admin"])

Slug = Annotated[Text, Field(min_length=1, max_length=128)]
Limit = Annotated[Count, Field(ge=1, le=100_000_000)]


class NewPromo(BaseModel):
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{3,32}$")]
    kind: Literal["percent", "fixed"]
    value: Annotated[Count, Field(ge=1, le=100_000_000)]  # percent 1..100, or kopecks
    min_order: Annotated[Count, Field(ge=0, le=10_000_000_000)] = 0
    starts_at: Annotated[Moment | None, Field(description="none: from now on")] = None
    ends_at: Annotated[
        Moment | None, Field(description="must come after starts_at; none: no end")
    ] = None
    max_uses: Limit | None = None
    max_uses_per_customer: Limit | None = None
    brands: Annotated[list[Slug], Field(max_length=100)] = []
    categories: Annotated[list[Slug], Field(max_length=100)] = []

    @model_validator(mode="after")
    def _consistent(self) -> "NewPromo":
        if self.kind == "percent" and self.value > 100:
            raise ValueError("a percent discount is at most 100")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must come after starts_at")
        return self


@router.post("", status_code=201, responses=answers(409))
async def create_promo(
    body: NewPromo, admin: Annotated[User, requires(Permission.PROMOS_MANAGE)], session: SessionDep
) -> PromoView:
    return PromoView.of(await promos.create(session, body.model_dump()))


@router.get("")
async def list_promos(
    admin: Annotated[User, requires(Permission.PROMOS_MANAGE)],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PromoView]:
    return [PromoView.of(promo) for promo in await promos.list_promos(session, limit)]
