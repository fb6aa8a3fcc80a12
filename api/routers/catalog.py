"""The storefront's catalog: search with facets and cursor paging, product pages, the category
tree."""

from typing import Annotated

from fastapi import APIRouter, Query

from activities import catalog, search
from activities.catalog import CategoryView, ProductDetails
from activities.search import SearchQuery
from api.deps import SessionDep
from api.fields import SkuPath, Text
from kassa.errors import Invalid

router = APIRouter(prefix="/catalog", tags=["catalog"])

MAX_KOPECKS = 10**12  # far above any price; keeps a bound parameter a plain integer


@router.get("/products")
async def search_products(
    session: SessionDep,
    q: Annotated[Text, Query(max_length=200, description="words to find, Russian or English")] = "",
    category: Annotated[
        Text | None, Query(max_length=128, description="a category slug: it and its subtree")
    ] = None,
    brand: Annotated[list[Text], Query(max_length=50, description="one or more brands")] = [],  # noqa: B006 — FastAPI copies a default per request
    price_min: Annotated[int | None, Query(ge=0, le=MAX_KOPECKS, description="kopecks")] = None,
    price_max: Annotated[int | None, Query(ge=0, le=MAX_KOPECKS, description="kopecks")] = None,
    attr: Annotated[
        list[Text], Query(max_length=20, description="name:value, e.g. colour:black")
    ] = [],  # noqa: B006 — FastAPI copies a default per request
    in_stock: bool = False,
    sort: Annotated[Text, Query(max_length=32, description=", ".join(search.SORTS))] = "relevance",
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> search.SearchResult:
    query = SearchQuery(
        q,
        category,
        tuple(brand),
        price_min,
        price_max,
        _attributes(attr),
        in_stock,
        sort,
        cursor,
        limit,
    )
    return await search.search(session, query)


def _attributes(filters: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for spelled in filters:
        name, colon, value = spelled.partition(":")
        if not (colon and name and value):
            raise Invalid(
                "invalid_attribute",
                f"attr must be name:value (colour:black), not {spelled[:40]!r}.",
            )
        pairs.append((name, value))
    return tuple(pairs)


@router.get("/products/{sku}")
async def get_product(sku: SkuPath, session: SessionDep) -> ProductDetails:
    return await catalog.get_product(session, sku)


@router.get("/categories")
async def category_tree(session: SessionDep) -> list[CategoryView]:
    return await catalog.category_tree(session)
