from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from activities import carts
from activities.carts import CartView
from api.deps import CurrentUser, SessionDep
from api.fields import Count, SkuPath, Text

router = APIRouter(prefix="/cart", tags=["cart"])


class NewItem(BaseModel):
    sku: Annotated[Text, Field(min_length=1, max_length=64)]
    quantity: Count


class QuantityChange(BaseModel):
    quantity: Count


@router.get("")
async def get_cart(user: CurrentUser, session: SessionDep) -> CartView:
    return await carts.view_cart(session, await carts.current_cart(session, user.id))


@router.post("/items")
async def add_item(body: NewItem, user: CurrentUser, session: SessionDep) -> CartView:
    return await carts.set_item(session, user.id, body.sku, body.quantity, add=True)


@router.patch("/items/{sku}")
async def change_quantity(sku: SkuPath, body: QuantityChange, user: CurrentUser, session: SessionDep) -> CartView:
    return await carts.set_item(session, user.id, sku, body.quantity, add=False)


@router.delete("/items/{sku}")
async def remove_item(sku: SkuPath, user: CurrentUser, session: SessionDep) -> CartView:
    return await carts.remove_item(session, user.id, sku)
