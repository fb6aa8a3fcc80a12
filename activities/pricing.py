"""Pricing: what a basket costs, computed on the server from the catalog, never from the client."""

from dataclasses import dataclass, fields
from typing import Any

from kassa.errors import Conflict
from kassa.money import CURRENCY, vat_included
from kassa.tables import Product


@dataclass(frozen=True)
class PricedLine:
    sku: str
    title: str
    quantity: int
    unit_price: int
    line_total: int


@dataclass(frozen=True)
class Totals:
    """What a cart or an order costs; the same names in both."""

    subtotal: int
    # Promo codes and loyalty points arrive with the cart issue; until then nothing is taken off.
    discount: int
    points: int
    vat: int
    total: int
    currency: str

    @staticmethod
    def of(source: object) -> dict[str, Any]:
        """The totals of anything that carries them (a priced basket, an order row)."""
        return {field.name: getattr(source, field.name) for field in fields(Totals)}


@dataclass(frozen=True)
class PricedBasket(Totals):
    lines: list[PricedLine]


def price_basket(quantities: dict[str, int], products: dict[str, Product]) -> PricedBasket:
    lines = []
    vat = 0
    for sku in sorted(quantities):
        product = products[sku]
        if product.currency != CURRENCY:
            raise Conflict("currency_mismatch", f"{sku} is priced in {product.currency}; the cart is in {CURRENCY}.")
        line_total = product.price * quantities[sku]
        vat += vat_included(line_total, product.vat_rate)
        lines.append(PricedLine(sku, product.title, quantities[sku], product.price, line_total))
    subtotal = sum(line.line_total for line in lines)
    return PricedBasket(subtotal, discount=0, points=0, vat=vat, total=subtotal, currency=CURRENCY, lines=lines)
