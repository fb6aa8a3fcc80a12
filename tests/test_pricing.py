"""Pricing properties (hypothesis): totals never negative, VAT consistent with each line's rate,
shares adding up exactly; and on the real database, a cart and the order it becomes show the
same numbers."""

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import carts, loyalty, orders, promos
from activities.pricing import (
    MIN_ORDER_NOT_MET,
    MIN_TOTAL,
    NOT_IN_SCOPE,
    POINTS_SHARE_PERCENT,
    PROMO_APPLIED,
    BasketLine,
    PromoTerms,
    points_cap,
    price_basket,
    share_out,
)
from kassa.db import session_scope
from kassa.money import vat_included
from kassa.tables import Category, OrderLine, Product, Stock
from tests.conftest import Kassa

BRANDS = ("Acme", "Apple", "Sony")
CATEGORIES = ("phones", "audio", "home")

lines_strategy = st.lists(
    st.builds(
        BasketLine,
        sku=st.text("ABCDEFGH", min_size=1, max_size=4),
        title=st.just("item"),
        brand=st.sampled_from(BRANDS),
        categories=st.sampled_from(CATEGORIES).map(lambda leaf: (leaf, "all")),
        quantity=st.integers(1, 99),
        unit_price=st.integers(0, 50_000_000),
        vat_rate=st.sampled_from((0, 10, 20)),
    ),
    max_size=8,
    unique_by=lambda line: line.sku,
).map(lambda lines: sorted(lines, key=lambda line: line.sku))


def promo_terms(kind: str, value: st.SearchStrategy[int]) -> st.SearchStrategy[PromoTerms]:
    """A promo of this kind, scoped to any brands and categories (none: the whole basket)."""
    return st.builds(
        PromoTerms,
        code=st.just(kind.upper()),
        kind=st.just(kind),
        value=value,
        min_order=st.integers(0, 10_000_000),
        brands=st.lists(st.sampled_from(BRANDS), max_size=2).map(tuple),
        categories=st.lists(st.sampled_from((*CATEGORIES, "all")), max_size=2).map(tuple),
    )


promo_strategy = st.one_of(
    st.none(),
    promo_terms("percent", st.integers(1, 100)),
    promo_terms("fixed", st.integers(1, 100_000_000)),
)


@given(lines=lines_strategy, promo=promo_strategy, redeem=st.integers(0, 10**10))
def test_totals_are_never_negative_and_add_up(
    lines: list[BasketLine], promo: PromoTerms | None, redeem: int
) -> None:
    priced = price_basket(lines, promo, redeem)
    assert priced.subtotal == sum(line.unit_price * line.quantity for line in lines)
    assert 0 <= priced.discount <= priced.subtotal
    assert 0 <= priced.points <= min(redeem, points_cap(priced.subtotal - priced.discount))
    assert priced.total == priced.subtotal - priced.discount - priced.points >= 0
    assert (
        priced.total >= min(priced.subtotal, MIN_TOTAL) * (100 - POINTS_SHARE_PERCENT) // 100
    )  # a card payment needs an amount
    assert sum(line.discount for line in priced.lines) == priced.discount
    assert sum(line.points for line in priced.lines) == priced.points
    for line in priced.lines:
        assert line.line_total == line.unit_price * line.quantity
        assert 0 <= line.discount + line.points <= line.line_total


@given(lines=lines_strategy, promo=promo_strategy, redeem=st.integers(0, 10**10))
def test_vat_is_each_lines_rate_of_what_it_costs(
    lines: list[BasketLine], promo: PromoTerms | None, redeem: int
) -> None:
    priced = price_basket(lines, promo, redeem)
    assert priced.vat == sum(line.vat for line in priced.lines)
    for line, basket_line in zip(priced.lines, lines, strict=True):
        paid = line.line_total - line.discount - line.points
        assert line.vat == vat_included(paid, basket_line.vat_rate)
        assert 0 <= line.vat <= paid * basket_line.vat_rate // 100 + 1
    assert 0 <= priced.vat <= priced.total


@given(lines=lines_strategy, percent=st.integers(1, 100))
def test_percent_discount_is_rounded_down_on_the_lines_in_scope(
    lines: list[BasketLine], percent: int
) -> None:
    promo = PromoTerms("AUDIO", "percent", percent, 0, categories=("audio",))
    priced = price_basket(lines, promo)
    in_scope = sum(line.unit_price * line.quantity for line in lines if "audio" in line.categories)
    assert priced.discount == min(in_scope * percent // 100, max(priced.subtotal - MIN_TOTAL, 0))
    assert priced.promo_status == (PROMO_APPLIED if in_scope else NOT_IN_SCOPE)
    for line, basket_line in zip(priced.lines, lines, strict=True):
        if "audio" not in basket_line.categories:
            assert line.discount == 0


@given(
    amount_and_weights=st.lists(st.integers(0, 10**9), min_size=1, max_size=10).flatmap(
        lambda weights: st.tuples(st.integers(0, sum(weights)), st.just(weights))
    )
)
def test_share_out_is_exact_and_within_each_weight(
    amount_and_weights: tuple[int, list[int]],
) -> None:
    amount, weights = amount_and_weights
    shares = share_out(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))


def test_minimum_order_counts_the_lines_in_scope() -> None:
    phone = BasketLine("P", "phone", "Apple", ("phones",), 1, 90_000, 20)
    buds = BasketLine("B", "buds", "Sony", ("audio",), 1, 20_000, 20)
    promo = PromoTerms("SONY", "fixed", 5_000, 30_000, brands=("Sony",))
    assert price_basket([buds, phone], promo).promo_status == MIN_ORDER_NOT_MET
    two_buds = BasketLine("B", "buds", "Sony", ("audio",), 2, 20_000, 20)
    priced = price_basket([two_buds, phone], promo)
    assert (priced.discount, priced.promo_status) == (5_000, PROMO_APPLIED)
    assert [line.discount for line in priced.lines] == [5_000, 0]


def test_rounding_rule_example() -> None:
    """The README's worked example: 3 × 333.33 ₽ at 10 % VAT, 15 % off, 100 points."""
    line = BasketLine("X", "x", "Acme", ("home",), 3, 33_333, 10)
    priced = price_basket([line], PromoTerms("P15", "percent", 15, 0), 10_000)
    assert (priced.subtotal, priced.discount, priced.points, priced.total) == (
        99_999,
        14_999,
        10_000,
        75_000,
    )
    assert priced.vat == 6_818  # 75 000 × 10/110 = 6 818.18 → 6 818


# --- the cart and its order, on the real database ---------------------------------------------

baskets_strategy = st.lists(
    st.tuples(
        st.integers(1, 5_000_000),
        st.sampled_from((0, 10, 20)),
        st.sampled_from(BRANDS),
        st.integers(1, 5),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(basket=baskets_strategy, percent=st.integers(1, 60), redeem=st.integers(0, 3_000_000))
async def test_the_order_shows_the_numbers_of_its_cart(
    kassa: Kassa, basket: list[tuple[int, int, str, int]], percent: int, redeem: int
) -> None:
    customer = await kassa.customer()
    code = f"P{uuid.uuid4().hex[:10]}"
    async with session_scope(kassa.engine) as session:
        await promos.create(
            session,
            {"code": code, "kind": "percent", "value": percent, "brands": ["Apple", "Sony"]},
        )
        await session.exec(
            insert(Category)
            .values(slug="audio", name="Аудио", name_en="Audio")
            .on_conflict_do_nothing()
        )
        for price, vat_rate, brand, quantity in basket:
            sku = f"PR-{uuid.uuid4().hex[:10]}"
            session.add(
                Product(
                    sku=sku,
                    title=sku,
                    brand=brand,
                    category="audio",
                    price=price,
                    vat_rate=vat_rate,
                )
            )
            await session.flush()
            session.add(Stock(sku=sku, on_hand=10))
            await session.flush()
            await carts.set_item(session, customer.user.id, sku, quantity, add=True)
        await _give_points(session, customer.user.id, redeem)
    async with session_scope(kassa.engine) as session:
        cart = await carts.current_cart(session, customer.user.id)
        in_scope = any(brand != "Acme" for _, _, brand, _ in basket)
        if in_scope:
            await carts.apply_promo(session, customer.user.id, code)
            cart = await carts.current_cart(session, customer.user.id)
        view = await carts.view_cart(session, cart, redeem)

    async def placed_then_undone() -> None:
        """The order as Pay Now makes it, compared inside its transaction, then undone: its promo
        use and points go back with it."""
        async with session_scope(kassa.engine) as session:
            locked = await orders.lock_cart(session, customer.user.id, cart.id, cart.version)
            order = await orders.order_from_locked_cart(
                session, uuid.uuid4(), "wf", locked, cart.version, None, redeem
            )
            order_lines = list(
                await session.exec(select(OrderLine).where(OrderLine.order_id == order.id))
            )
            shown = (view.subtotal, view.discount, view.points, view.vat, view.total)
            assert (order.subtotal, order.discount, order.points, order.vat, order.total) == shown
            assert sorted(
                (line.sku, line.line_total, line.discount, line.points, line.vat)
                for line in order_lines
            ) == sorted((i.sku, i.line_total, i.discount, i.points, i.vat) for i in view.items)
            raise _Undone

    with pytest.raises(_Undone):
        await placed_then_undone()


class _Undone(Exception):
    pass


async def _give_points(session: AsyncSession, user_id: uuid.UUID, points: int) -> None:
    """Points as if earned: the account's balance, straight (earning is tested in test_loyalty)."""
    account = await loyalty.lock_account(session, user_id)
    account.balance = points
