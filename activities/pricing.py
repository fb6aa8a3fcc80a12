"""Pricing: what a basket costs, as pure functions of the catalog's prices, a promo code's terms
and the points the customer redeems. The cart view and `create_order` both call `price_basket`,
so a cart and the order it becomes show the same numbers. Nothing here reads the database.

Rounding, to the kopeck (prices include VAT):
- a line costs unit price × quantity, exactly;
- a percent discount is rounded down (never more off than the code says); a fixed discount is
  at most what the lines in the code's scope cost; no discount takes an order below 1 ₽ (a card
  payment needs an amount);
- redeemed points are capped at 30 % of what is left after the discount, rounded down;
- the discount is shared out over the lines in scope, and the points over all lines, in
  proportion to what each line still costs, by the largest remainder (ties: the earlier SKU),
  so the lines' shares add up exactly to the totals and no line goes below zero;
- each line's VAT is taken from what it costs after its shares, half up (money.vat_included);
  the basket's VAT is the sum of its lines'.
"""

from dataclasses import dataclass, fields
from typing import Any

from kassa.errors import Conflict
from kassa.money import CURRENCY, vat_included
from kassa.tables import Product

# Points may pay at most this share of an order (after its promo discount).
POINTS_SHARE_PERCENT = 30
# The least a discount leaves to pay: the acquirer takes no payment of zero.
MIN_TOTAL = 100
PROMO_APPLIED, MIN_ORDER_NOT_MET, NOT_IN_SCOPE = "applied", "min_order_not_met", "not_in_scope"


@dataclass(frozen=True)
class BasketLine:
    """A line to price: the catalog's price now, and what a promo's scope looks at."""

    sku: str
    title: str
    brand: str
    categories: tuple[str, ...]  # the product's category and its ancestors, leaf first
    quantity: int
    unit_price: int
    vat_rate: int  # percent, included in the price


@dataclass(frozen=True)
class PromoTerms:
    code: str
    kind: str  # percent | fixed
    value: int  # percent, or kopecks
    min_order: int  # kopecks of the lines in scope
    brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # slugs: a line is in scope if any of its ancestry is here

    def covers(self, line: BasketLine) -> bool:
        if not self.brands and not self.categories:
            return True
        return line.brand in self.brands or any(slug in self.categories for slug in line.categories)


@dataclass(frozen=True)
class PricedLine:
    sku: str
    title: str
    quantity: int
    unit_price: int
    line_total: int  # unit price × quantity
    discount: int  # this line's share of the promo discount
    points: int  # this line's share of the points redeemed
    vat: int  # inside line_total - discount - points


@dataclass(frozen=True)
class Totals:
    """What a cart or an order costs; the same names in both."""

    subtotal: int
    discount: int
    points: int  # loyalty points redeemed, 1 point = 1 kopeck
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
    promo_status: str | None  # None without a promo; applied | min_order_not_met | not_in_scope


def basket_lines(
    quantities: dict[str, int], products: dict[str, Product], ancestry: dict[str, tuple[str, ...]]
) -> list[BasketLine]:
    lines = []
    for sku in sorted(quantities):
        product = products[sku]
        if product.currency != CURRENCY:
            raise Conflict(
                "currency_mismatch",
                f"{sku} is priced in {product.currency}; the cart is in {CURRENCY}.",
            )
        lines.append(
            BasketLine(
                sku,
                product.title,
                product.brand,
                ancestry.get(sku, ()),
                quantities[sku],
                product.price,
                product.vat_rate,
            )
        )
    return lines


def share_out(amount: int, weights: list[int]) -> list[int]:
    """`amount` split in proportion to `weights` (0 <= amount <= sum of weights), by the largest
    remainder: the shares sum to `amount` and none exceeds its weight."""
    whole = sum(weights)
    if amount == 0 or whole == 0:
        return [0] * len(weights)
    shares = [amount * weight // whole for weight in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % whole), i))
    for i in by_remainder[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def promo_discount(promo: PromoTerms, lines: list[BasketLine]) -> tuple[int, str]:
    """The discount a promo gives these lines, and whether it applied (or why not)."""
    in_scope = sum(line.unit_price * line.quantity for line in lines if promo.covers(line))
    if in_scope == 0:
        return 0, NOT_IN_SCOPE
    if in_scope < promo.min_order:
        return 0, MIN_ORDER_NOT_MET
    if promo.kind == "percent":
        return in_scope * promo.value // 100, PROMO_APPLIED
    return min(promo.value, in_scope), PROMO_APPLIED


def points_cap(amount_after_discount: int) -> int:
    return amount_after_discount * POINTS_SHARE_PERCENT // 100


def price_basket(
    lines: list[BasketLine], promo: PromoTerms | None = None, redeem_points: int = 0
) -> PricedBasket:
    """What `lines` cost with `promo` (terms already known to be usable) and up to
    `redeem_points`."""
    if redeem_points < 0:
        raise ValueError("redeem_points must not be negative")
    totals = [line.unit_price * line.quantity for line in lines]
    subtotal = sum(totals)
    discount, promo_status = promo_discount(promo, lines) if promo else (0, None)
    discount = min(discount, max(subtotal - MIN_TOTAL, 0))
    in_scope = [
        total if promo and promo.covers(line) else 0
        for line, total in zip(lines, totals, strict=True)
    ]
    line_discounts = share_out(discount, in_scope)
    after_discount = [total - off for total, off in zip(totals, line_discounts, strict=True)]
    points = min(redeem_points, points_cap(subtotal - discount))
    line_points = share_out(points, after_discount)
    priced = []
    for line, total, off, paid_in_points in zip(
        lines, totals, line_discounts, line_points, strict=True
    ):
        vat = vat_included(total - off - paid_in_points, line.vat_rate)
        priced.append(
            PricedLine(
                line.sku,
                line.title,
                line.quantity,
                line.unit_price,
                total,
                off,
                paid_in_points,
                vat,
            )
        )
    return PricedBasket(
        subtotal=subtotal,
        discount=discount,
        points=points,
        vat=sum(line.vat for line in priced),
        total=subtotal - discount - points,
        currency=CURRENCY,
        lines=priced,
        promo_status=promo_status,
    )
