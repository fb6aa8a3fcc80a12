from typing import Annotated, Any

from fastapi import APIRouter, Query

from activities import catalog
from activities.catalog import ProductView
from api.deps import SessionDep
from api.fields import SkuPath, Text

router = APIRouter(prefix="/catalog", tags=["catalog"])


@router.get("/products")
async def list_products(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Text | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    page = await catalog.list_products(session, limit, cursor)
    # Search and facets come with the catalog issue; the shape is already the search's.
    return {"items": page.items, "facets": {}, "next_cursor": page.next_cursor}


@router.get("/products/{sku}")
async def get_product(sku: SkuPath, session: SessionDep) -> ProductView:
    return await catalog.get_product(session, sku)
