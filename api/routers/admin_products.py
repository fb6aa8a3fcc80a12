"""Products, for admins: create and change them. Stock is PUT /admin/stock/{sku}."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from activities import catalog
from activities.catalog import ProductChange, ProductDetails
from activities.roles import Permission
from api.deps import SessionDep, requires
from api.fields import Count, SkuPath, Storable, Text
from api.problems import answers
from kassa.tables import User

router = APIRouter(prefix="/admin/products", tags=["admin"])

MAX_PRICE = 2_000_000_000  # kopecks: 20 million roubles, and within the column's integer

Line = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"), Storable]
Kopecks = Annotated[Count, Field(ge=1, le=MAX_PRICE)]
AttributeName = Annotated[Text, StringConstraints(min_length=1, max_length=32)]
AttributeValue = Annotated[Text, StringConstraints(min_length=1, max_length=64)]
ImageUrl = Annotated[str, StringConstraints(max_length=500, pattern=r"^https://\S+$"), Storable]


def _known_vat(rate: int) -> int:
    if rate not in (0, 10, 20):
        raise ValueError("VAT in Russia is 0, 10 or 20 percent")
    return rate


class ProductFields(BaseModel):
    """Only what is sent changes; `"old_price": null` ends a discount."""

    title: Line | None = None
    description: Annotated[Text, Field(max_length=5000)] | None = None
    brand: Annotated[Line, StringConstraints(max_length=128)] | None = None
    category: (
        Annotated[Text, Field(max_length=128, description="a leaf category's slug")] | None
    ) = None
    attributes: Annotated[dict[AttributeName, AttributeValue], Field(max_length=30)] | None = None
    price: Kopecks | None = None
    old_price: Kopecks | None = None
    vat_rate: Annotated[Count, AfterValidator(_known_vat)] | None = None
    images: Annotated[list[ImageUrl], Field(max_length=10)] | None = None
    max_per_order: (
        Annotated[Count, Field(ge=1, le=99, description="how many one order may take")] | None
    ) = None

    def change(self) -> ProductChange:
        # "old_price": null sent on purpose ends a discount; a field left out changes nothing.
        end_discount = "old_price" in self.model_fields_set and self.old_price is None
        return ProductChange(
            **{name: getattr(self, name) for name in ProductFields.model_fields},
            end_discount=end_discount,
        )


class NewProduct(ProductFields):
    sku: Sku
    on_hand: Annotated[Count, Field(ge=0, le=10_000_000)] = 0


@router.post("", status_code=201, responses=answers(409))
async def create_product(
    body: NewProduct,
    admin: Annotated[User, requires(Permission.CATALOG_WRITE)],
    session: SessionDep,
) -> ProductDetails:
    return await catalog.create_product(session, body.sku, body.change(), body.on_hand)


@router.patch("/{sku}", responses=answers(409))
async def update_product(
    sku: SkuPath,
    body: ProductFields,
    admin: Annotated[User, requires(Permission.CATALOG_WRITE)],
    session: SessionDep,
) -> ProductDetails:
    return await catalog.update_product(session, sku, body.change())
