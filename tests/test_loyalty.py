"""Loyalty points through the gateway and the workflow: earned on PAID at the tier's rate, held
by an order that redeems them, given back when it fails, burnt when it is paid, and on a refund
the accrual reversed and the spent points returned; never spent twice, never negative."""

import asyncio
import uuid

import httpx
import pytest
from sqlmodel import col, select

from activities import loyalty
from activities.loyalty import PointsUnavailable
from kassa.db import session_scope
from kassa.tables import LoyaltyAccount, Order, OrderEvent
from tests.conftest import Customer, Kassa, ledger_balances
from tests.flow import CARD, CARD_3DS, CARD_DECLINED, order_reaches
from tests.late_payments import events_reach, late_success, reconcile


async def checkout(
    http: httpx.AsyncClient, cart: dict, method: dict, points: int
) -> httpx.Response:
    return await http.post(
        "/checkout", json={"cart_id": cart["id"], "payment_method": method, "redeem_points": points}
    )


async def earn(kassa: Kassa, customer: Customer, spend: int) -> str:
    """Points the honest way: a paid order of `spend` kopecks (its id)."""
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=spend), 1))
    async with customer.http() as http:
        paid = (await checkout(http, cart, CARD, 0)).json()
    assert paid["status"] == "PAID", paid
    return paid["order_id"]


async def points_of(customer: Customer) -> dict:
    async with customer.http() as http:
        answer = await http.get("/me/loyalty")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_points_redeemed_by_a_failed_order_come_back(kassa: Kassa) -> None:
    customer = await kassa.customer()
    await earn(kassa, customer, 1_000_000)
    earned = await points_of(customer)
    assert (earned["balance"], earned["tier"], earned["rate_percent"]) == (30_000, "base", 3)
    assert [m["kind"] for m in earned["history"]] == ["accrued"]
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=100_000), 1))
    async with customer.http() as http:
        preview = (await http.get("/cart", params={"redeem_points": 20_000})).json()
        assert (preview["points"], preview["total"], preview["points_max"]) == (
            20_000,
            80_000,
            30_000,
        )
        declined = await checkout(http, cart, CARD_DECLINED, 20_000)
        assert declined.status_code == 402, declined.text
        order_id = declined.json()["order_id"]
        held = await points_of(customer)
        assert (held["balance"], held["held"], held["available"]) == (30_000, 20_000, 10_000)
        for _ in range(2):
            await http.post(f"/orders/{order_id}/pay", json={"payment_method": CARD_DECLINED})
        order = await order_reaches(http, order_id, "PAYMENT_FAILED")
        assert (order["points"], order["total"]) == (20_000, 80_000)
    back = await points_of(customer)
    assert (back["balance"], back["held"], back["available"]) == (30_000, 0, 30_000)
    assert [m["kind"] for m in back["history"]][:2] == ["released", "held"]


async def test_points_redeemed_paid_and_refunded_come_back_and_the_accrual_is_reversed(
    kassa: Kassa,
) -> None:
    customer = await kassa.customer()
    await earn(kassa, customer, 3_000_000)  # 90 000 points at the base rate; now silver (5 %)
    assert (await points_of(customer))["tier"] == "silver"
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=100_000), 1))
    async with customer.http() as http:
        # 50 000 asked, capped at 30 % of the order: 30 000 redeemed, 70 000 paid.
        paid = await checkout(http, cart, CARD, 50_000)
        assert paid.json()["status"] == "PAID", paid.text
        order_id = paid.json()["order_id"]
        order = (await http.get(f"/orders/{order_id}")).json()
    assert (order["points"], order["total"]) == (30_000, 70_000)
    assert (await points_of(customer))[
        "balance"
    ] == 90_000 - 30_000 + 3_500  # 5 % of the 70 000 paid
    async with session_scope(kassa.engine) as session:
        events = await session.exec(
            select(OrderEvent)
            .where(OrderEvent.order_id == uuid.UUID(order_id))
            .order_by(col(OrderEvent.id))
        )
        moved = {event.status: event.detail for event in events}
    assert moved["CREATED"] == {"points_held": 30_000}
    assert moved["PAID"] == {"points_burnt": 30_000, "points_accrued": 3_500}
    admin = await kassa.account("admin")
    async with admin.http() as http:
        half = await http.post(
            f"/admin/orders/{order_id}/refund",
            json={"amount": 35_000},
            headers={"Idempotency-Key": f"half-{order_id}"},
        )
        assert half.status_code == 200, half.text
        assert (await points_of(customer))[
            "balance"
        ] == 63_500 - 1_750  # half the accrual goes with half the money
        rest = await http.post(
            f"/admin/orders/{order_id}/refund",
            json={},
            headers={"Idempotency-Key": f"rest-{order_id}"},
        )
        assert rest.json()["order_status"] == "REFUNDED", rest.text
        ledger = (await http.get("/admin/ledger", params={"order_id": order_id})).json()
    after = await points_of(customer)
    assert (after["balance"], after["held"]) == (
        90_000,
        0,
    )  # the spent points back, the accrual reversed
    kinds = [m["kind"] for m in after["history"]]
    assert kinds[:6] == ["returned", "reversed", "reversed", "accrued", "burnt", "held"]
    points_ledger = sorted(
        (
            t["kind"],
            next(p["amount"] for p in t["postings"] if p["account"] == "loyalty_points_owed"),
        )
        for t in ledger
        if t["kind"].startswith("points")
    )
    assert points_ledger == [
        ("points_accrued", -3_500),
        ("points_burnt", 30_000),
        ("points_returned", -30_000),
        ("points_reversed", 1_750),
        ("points_reversed", 1_750),
    ]
    await ledger_balances(kassa)


async def test_more_points_than_the_balance_are_refused(kassa: Kassa) -> None:
    customer = await kassa.customer()
    await earn(kassa, customer, 100_000)  # 3 000 points
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=100_000), 1))
    async with customer.http() as http:
        refused = await checkout(http, cart, CARD, 3_001)
        assert refused.status_code == 409 and refused.json()["code"] == "not_enough_points", (
            refused.text
        )
        assert refused.json()["available"] == 3_000
        preview = await http.get("/cart", params={"redeem_points": 3_001})
        assert preview.status_code == 409 and preview.json()["code"] == "not_enough_points"
    assert (await points_of(customer))["held"] == 0


async def test_two_concurrent_orders_cannot_hold_the_same_points(kassa: Kassa) -> None:
    """The guard itself, raced: ten orders of one customer each try to hold 8 000 of 10 000 points
    at once. (Through the gateway one customer has one checkout at a time: the cart is locked.)"""
    customer = await kassa.customer()
    cart = await customer.cart_with((await kassa.product(on_hand=5), 1))
    async with session_scope(kassa.engine) as session:
        await loyalty.lock_account(session, customer.user.id)
        (await session.get_one(LoyaltyAccount, customer.user.id)).balance = 10_000
        racers = [
            Order(
                id=uuid.uuid4(),
                user_id=customer.user.id,
                cart_id=uuid.UUID(cart["id"]),
                cart_version=1000 + i,
                workflow_id="race",
                subtotal=30_000,
                points=8_000,
                vat=0,
                total=22_000,
                currency="RUB",
            )
            for i in range(10)
        ]
        session.add_all(racers)

    async def hold(order: Order) -> bool:
        try:
            async with session_scope(kassa.engine) as session:
                await loyalty.hold(session, order)
            return True
        except PointsUnavailable:
            return False

    held = await asyncio.gather(*(hold(order) for order in racers))
    assert held.count(True) == 1
    async with session_scope(kassa.engine) as session:
        account = await session.get_one(LoyaltyAccount, customer.user.id)
        assert (account.balance, account.held) == (10_000, 8_000)


@pytest.mark.parametrize("points_gone_meanwhile", [False, True])
async def test_a_late_payment_takes_its_points_again_or_is_refunded(
    kassa: Kassa, points_gone_meanwhile: bool
) -> None:
    """The rule: a late success completes its ended order only if the points it was priced with
    can be spent again (and its promo use taken again); if not, the payment is refunded."""
    customer = await kassa.customer()
    earning_order = await earn(kassa, customer, 1_000_000)  # 30 000 points
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=100_000), 1))
    async with customer.http() as http:
        late = (await checkout(http, cart, CARD_3DS, 30_000)).json()["order_id"]
        assert (await http.post(f"/orders/{late}/cancel")).status_code == 200
        if points_gone_meanwhile:
            # The order that earned them is refunded: its accrual, the 30 000, is taken back.
            admin = await kassa.account("admin")
            async with admin.http() as staff:
                refund = await staff.post(
                    f"/admin/orders/{earning_order}/refund",
                    json={},
                    headers={"Idempotency-Key": f"r-{late}"},
                )
                assert refund.status_code == 200, refund.text
            assert (await points_of(customer))["balance"] == 0
        await late_success(kassa, late, 70_000)
        await reconcile(kassa)
        if points_gone_meanwhile:
            order = await events_reach(http, late, "refunded_late_payment")
            assert order["status"] == "CANCELLED"
            assert (await points_of(customer))["balance"] == 0
        else:
            order = await order_reaches(http, late, "PAID")
            assert order["reason"] == "late_payment"
            account = await points_of(customer)
            assert (account["balance"], account["held"]) == (
                2_100,
                0,
            )  # 30 000 spent, 3 % of 70 000 earned
    await ledger_balances(kassa)


async def test_a_reversal_never_takes_points_an_unpaid_order_holds(kassa: Kassa) -> None:
    """Never negative: a refund's reversal takes back only what is available, not what is held."""
    customer = await kassa.customer()
    earning_order = await earn(kassa, customer, 1_000_000)  # 30 000 points
    cart = await customer.cart_with((await kassa.product(on_hand=5, price=100_000), 1))
    async with customer.http() as http:
        holding = (await checkout(http, cart, CARD_3DS, 25_000)).json()["order_id"]
        admin = await kassa.account("admin")
        async with admin.http() as staff:
            refund = await staff.post(
                f"/admin/orders/{earning_order}/refund",
                json={},
                headers={"Idempotency-Key": f"r-{holding}"},
            )
            assert refund.json()["order_status"] == "REFUNDED", refund.text
        account = await points_of(customer)
        assert (account["balance"], account["held"]) == (
            25_000,
            25_000,
        )  # 5 000 reversed, 25 000 still held
        assert (account["history"][0]["kind"], account["history"][0]["points"]) == (
            "reversed",
            5_000,
        )
        assert (await http.post(f"/orders/{holding}/cancel")).status_code == 200
    account = await points_of(customer)
    assert (account["balance"], account["held"], account["available"]) == (25_000, 0, 25_000)
    await ledger_balances(kassa)
