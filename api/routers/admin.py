from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from activities import inventory
from activities.inventory import StockLevel
from api.deps import AdminUser, SessionDep

router = APIRouter(prefix="/admin", tags=["admin"])


class StockCount(BaseModel):
    on_hand: int


@router.put("/stock/{sku}")
async def set_stock(
    sku: Annotated[str, Path(min_length=1, max_length=64)], body: StockCount, admin: AdminUser, session: SessionDep
) -> StockLevel:
    return await inventory.set_on_hand(session, sku, body.on_hand)
