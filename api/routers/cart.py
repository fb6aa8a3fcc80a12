from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from activities import carts
from activities.carts import CartView
from activities.roles import Permission
from api.deps import SessionDep, requires
from api.fields import Quantity, SkuPath, Text
from api.problems import answers
from kassa.tables import User

router = APIRouter(prefix="/cart", tags=["cart"])


class NewItem(BaseModel):
    sku: Annotated[Text, Field(min_length=1, max_length=64)]
    quantity: Quantity


class QuantityChange(BaseModel):
    quantity: Quantity


class PromoEntry(BaseModel):
    code: Annotated[Text, Field(min_length=1, max_length=32)]


@router.get("", responses=answers(409))
async def get_cart(
    user: Annotated[User, requires(Permission.SHOP)],
    session: SessionDep,
    redeem_points: Annotated[
        int, Query(ge=0, le=1_000_000_000, description="preview: the cart with these points")
    ] = 0,
) -> CartView:
    return await carts.view_cart(session, await carts.current_cart(session, user.id), redeem_points)


@router.post("/promo", responses=answers(404, 409))
async def apply_promo(
    body: PromoEntry, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> CartView:
    return await carts.apply_promo(session, user.id, body.code)


@router.delete("/promo", responses=answers(404, 409))
async def remove_promo(
    user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> CartView:
    return await carts.remove_promo(session, user.id)


@router.post("/items", responses=answers(404, 409))
async def add_item(
    body: NewItem, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> CartView:
    return await carts.set_item(session, user.id, body.sku, body.quantity, add=True)


@router.patch("/items/{sku}", responses=answers(409))
async def change_quantity(
    sku: SkuPath,
    body: QuantityChange,
    user: Annotated[User, requires(Permission.SHOP)],
    session: SessionDep,
) -> CartView:
    return await carts.set_item(session, user.id, sku, body.quantity, add=False)


@router.delete("/items/{sku}", responses=answers(409))
async def remove_item(
    sku: SkuPath, user: Annotated[User, requires(Permission.SHOP)], session: SessionDep
) -> CartView:
    return await carts.remove_item(session, user.id, sku)
