"""The gateway places the order and holds its stock in one transaction, then starts its run: what
happens when it stops in between, and when the hold's conditional UPDATE finds the stock gone."""

import asyncio
import uuid

from sqlalchemy import text
from sqlmodel import col, select

from activities import inventory
from activities.inventory import StockLine
from activities.placement import Claim, Placement, PlaceOrder, claim_stock, place_order
from activities.temporal.hold_sweep_steps import CLAIM_ABANDONED, WORKFLOW_GONE
from kassa.db import autocommit_scope, session_scope
from kassa.tables import Cart, Order, Product, Reservation, utcnow
from tests.conftest import Customer, Kassa, until_a_lock_is_awaited
from tests.flow import CARD, CARD_3DS, order_reaches, pay_now
from tests.test_operations import _sweep
from workflows.checkout import checkout_workflow_id


def _tap(kassa: Kassa, customer: Customer, cart: dict) -> PlaceOrder:
    return PlaceOrder(
        uuid.uuid4(),
        checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"]),
        customer.user.id,
        uuid.UUID(cart["id"]),
        cart["version"],
        None,
        0,
        kassa.settings.hold_seconds,
    )


async def _claimed(kassa: Kassa, request: PlaceOrder) -> Placement | Claim:
    async with autocommit_scope(kassa.engine) as autocommit:
        return await claim_stock(autocommit, request)


async def _placed_without_a_run(kassa: Kassa, customer: Customer, cart: dict) -> str:
    """What a gateway that stopped between its commit and the workflow's start leaves behind."""
    request = _tap(kassa, customer, cart)
    placement = await place_order(kassa.engine, request, await _claimed(kassa, request))
    assert placement.placed_now and placement.order.status == "PENDING_PAYMENT"
    return str(placement.order.id)


async def test_a_tap_sent_again_starts_the_run_the_first_tap_never_started(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    order_id = await _placed_without_a_run(kassa, customer, cart)
    async with customer.http() as http:
        again = await pay_now(http, cart, CARD)
        assert again.status_code == 201, again.text
        assert (again.json()["order_id"], again.json()["status"]) == (order_id, "PAID")
    async with session_scope(kassa.engine) as session:
        orders = (
            await session.exec(select(Order).where(Order.cart_id == uuid.UUID(cart["id"])))
        ).all()
        reservations = (
            await session.exec(
                select(Reservation).where(Reservation.order_id == uuid.UUID(order_id))
            )
        ).all()
    assert [str(order.id) for order in orders] == [order_id]
    assert [reservation.status for reservation in reservations] == ["committed"]
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (1, 0)


async def test_a_tap_sent_again_takes_the_claim_its_first_try_left_without_an_order(
    kassa: Kassa,
) -> None:
    """The gateway stopped between the claim and the order (killed, or the database went away):
    the same tap again finds that claim and makes its order with it, rather than holding the
    stock twice (here there is no stock for a second hold)."""
    sku = await kassa.product(on_hand=2)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    first_try = await _claimed(kassa, _tap(kassa, customer, cart))
    assert isinstance(first_try, Claim) and (await kassa.stock(sku)).reserved == 2

    async with customer.http() as http:
        again = await pay_now(http, cart, CARD)
    assert again.status_code == 201 and again.json()["status"] == "PAID", again.text
    async with session_scope(kassa.engine) as session:
        holds = (
            await session.exec(
                select(Reservation).where(
                    col(Reservation.claim_key)
                    == checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
                )
            )
        ).all()
    assert [(hold.id, str(hold.order_id), hold.status) for hold in holds] == [
        (first_try.reservation_id, again.json()["order_id"], "committed")
    ]
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (0, 0)


async def test_twin_claims_under_one_key_hold_the_stock_once(kassa: Kassa) -> None:
    """Two tries of one tap claim at the same moment (both wait on a rival's row lock): the second
    finds the first's claim; the stock is held once."""
    sku = await kassa.product(on_hand=5)
    lines, key = [StockLine(sku, 2)], f"tap-{uuid.uuid4()}"

    async def claim() -> inventory.Claimed:
        async with autocommit_scope(kassa.engine) as autocommit:
            product = await autocommit.get_one(
                Product, sku
            )  # as the gateway holds the customer's cart
            claimed = await inventory.claim(autocommit, key, uuid.uuid4(), lines, utcnow())
        assert product.sku == sku  # still readable: the claim's second try expired nothing
        return claimed

    async with kassa.engine.connect() as rival:
        await rival.execute(
            text("SELECT 1 FROM stock WHERE sku = :sku FOR NO KEY UPDATE"), {"sku": sku}
        )
        twins = [asyncio.create_task(claim()) for _ in range(2)]
        await until_a_lock_is_awaited(kassa, "WITH earlier", count=2)
        await rival.commit()
        first, second = await asyncio.gather(*twins)
    assert first == second
    assert (await kassa.stock(sku)).reserved == 2


async def test_a_placement_whose_run_never_started_is_swept(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    order_id = await _placed_without_a_run(kassa, customer, cart)
    assert (await kassa.stock(sku)).reserved == 2

    swept = await _sweep(kassa)
    assert [hold.why for hold in swept.repaired if str(hold.order_id) == order_id] == [
        WORKFLOW_GONE
    ]
    assert (await kassa.stock(sku)).reserved == 0
    async with customer.http() as http:
        assert (await order_reaches(http, order_id, "EXPIRED"))["reason"] == "hold_swept"
        assert (await http.get("/cart")).json()["version"] == cart["version"] + 1


async def test_a_claim_whose_order_was_never_made_is_released_by_the_sweeper(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    claim_id = uuid.uuid4()
    async with autocommit_scope(kassa.engine) as autocommit:
        await inventory.claim(
            autocommit, f"tap-{claim_id}", claim_id, [StockLine(sku, 2)], utcnow()
        )
    assert (await kassa.stock(sku)).reserved == 2

    swept = await _sweep(kassa)
    assert [
        (hold.why, hold.order_id) for hold in swept.repaired if hold.reservation_id == claim_id
    ] == [(CLAIM_ABANDONED, None)]
    assert (await kassa.stock(sku)).reserved == 0


async def test_a_refused_order_gives_its_claim_back(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with customer.http() as http:
        refused = await http.post(
            "/checkout", json={"cart_id": cart["id"], "payment_method": CARD, "redeem_points": 500}
        )
    assert refused.status_code == 409 and refused.json()["code"] == "not_enough_points", (
        refused.text
    )
    assert (await kassa.stock(sku)).reserved == 0
    async with session_scope(kassa.engine) as session:
        assert (
            await session.exec(select(Order).where(col(Order.user_id) == customer.user.id))
        ).all() == []


async def test_the_hold_waits_for_a_rival_holding_the_row_and_decides_on_what_is_left(
    kassa: Kassa,
) -> None:
    """A rival has the SKU's row locked; the claim waits for it, then finds the stock gone: it
    holds nothing, and no order is made."""
    sku = await kassa.product(on_hand=2)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with kassa.engine.connect() as rival:
        await rival.execute(
            text("SELECT 1 FROM stock WHERE sku = :sku FOR NO KEY UPDATE"), {"sku": sku}
        )
        async with customer.http() as http:
            paying = asyncio.create_task(pay_now(http, cart, CARD_3DS))
            await until_a_lock_is_awaited(kassa, "WITH earlier")
            await rival.execute(
                text("UPDATE stock SET reserved = on_hand WHERE sku = :sku"), {"sku": sku}
            )
            await rival.commit()
            refused = await paying
        assert refused.status_code == 409 and refused.json()["code"] == "out_of_stock", refused.text
    async with session_scope(kassa.engine) as session:
        assert (
            await session.exec(select(Order).where(col(Order.user_id) == customer.user.id))
        ).all() == []
        assert (await session.get_one(Cart, uuid.UUID(cart["id"]))).status == "open"
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 2)  # the rival's two, none of ours
