from fastapi import APIRouter
from pydantic import BaseModel

from activities import inventory
from activities.inventory import StockLevel
from api.deps import AdminUser, SessionDep
from api.fields import Count, SkuPath

router = APIRouter(prefix="/admin", tags=["admin"])


class StockCount(BaseModel):
    on_hand: Count


@router.put("/stock/{sku}")
async def set_stock(
    sku: SkuPath, body: StockCount, admin: AdminUser, session: SessionDep
) -> StockLevel:
    return await inventory.set_on_hand(session, sku, body.on_hand)
