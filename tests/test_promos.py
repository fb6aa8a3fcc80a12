"""Promo codes through the gateway: created by an admin, put on a cart, held by the order,
final when it is paid, given back when it fails; and a limit that holds under a crowd."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlmodel import select

from kassa.db import session_scope
from kassa.tables import Category, Order, OrderEvent, Product, PromoCode, utcnow
from tests.conftest import Customer, Kassa
from tests.flow import CARD, CARD_3DS, cart_reopened, pay_now
from tests.late_payments import events_reach, late_success, reconcile
from tests.test_flash_sale import _buyers


async def new_promo(kassa: Kassa, **terms: Any) -> str:
    code = f"T{uuid.uuid4().hex[:12]}".upper()
    admin = await kassa.account("admin")
    async with admin.http() as http:
        created = await http.post(
            "/admin/promo-codes", json={"code": code, "kind": "percent", "value": 10} | terms
        )
    assert created.status_code == 201, created.text
    return code


async def promo_row(kassa: Kassa, code: str) -> PromoCode:
    async with session_scope(kassa.engine) as session:
        return await session.get_one(PromoCode, code)


async def product_of(kassa: Kassa, brand: str, price: int, on_hand: int = 1000) -> str:
    sku = await kassa.product(on_hand=on_hand, price=price)
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Product, sku)).brand = brand
    return sku


async def apply(customer: Customer, code: str) -> dict:
    async with customer.http() as http:
        answer = await http.post("/cart/promo", json={"code": code})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_admin_creates_promo_codes_and_bad_terms_are_refused(kassa: Kassa) -> None:
    code = await new_promo(
        kassa, kind="fixed", value=50_000, min_order=100_000, max_uses=5, brands=["Sony"]
    )
    admin = await kassa.account("admin")
    async with admin.http() as http:
        listed = {p["code"]: p for p in (await http.get("/admin/promo-codes")).json()}
        assert listed[code]["value"] == 50_000 and listed[code]["uses_held"] == 0
        again = await http.post(
            "/admin/promo-codes", json={"code": code.lower(), "kind": "percent", "value": 5}
        )
        assert again.status_code == 409 and again.json()["code"] == "promo_exists"
        for bad in (
            {"code": "NEW1", "kind": "percent", "value": 150},
            {"code": "NEW1", "kind": "percent", "value": 0},
            {"code": "NEW1", "kind": "bogo", "value": 5},
            {"code": "a b", "kind": "percent", "value": 5},
            {
                "code": "NEW1",
                "kind": "percent",
                "value": 5,
                "starts_at": "2030-01-02T00:00:00Z",
                "ends_at": "2030-01-01T00:00:00Z",
            },
            {
                "code": "NEW1",
                "kind": "percent",
                "value": 5,
                "ends_at": "2030-01-01T00:00:00",
            },  # no time zone
            {"code": "NEW1", "kind": "percent", "value": 5, "max_uses": 0},
        ):
            refused = await http.post("/admin/promo-codes", json=bad)
            assert refused.status_code == 422 and refused.json()["code"] == "invalid_request", (
                bad,
                refused.text,
            )


async def test_brand_promo_discounts_its_lines_and_the_paid_order_keeps_the_use(
    kassa: Kassa,
) -> None:
    sony, acme = await product_of(kassa, "Sony", 30_000), await product_of(kassa, "Acme", 50_000)
    code = await new_promo(kassa, value=10, brands=["Sony"], max_uses=3)
    customer = await kassa.customer()
    before = await customer.cart_with((sony, 2), (acme, 1))
    cart = await apply(customer, code.lower())
    assert cart["version"] == before["version"] + 1
    assert cart["promo"] == {"code": code, "status": "applied", "discount": 6_000}
    assert (cart["subtotal"], cart["discount"], cart["total"]) == (110_000, 6_000, 104_000)
    assert {i["sku"]: i["discount"] for i in cart["items"]} == {sony: 6_000, acme: 0}
    async with customer.http() as http:
        answer = await http.post(
            "/checkout",
            json={"cart_id": cart["id"], "cart_version": cart["version"], "payment_method": CARD},
        )
        assert answer.status_code == 201 and answer.json()["status"] == "PAID", answer.text
        order = (await http.get(f"/orders/{answer.json()['order_id']}")).json()
    assert (order["subtotal"], order["discount"], order["vat"], order["total"]) == (
        cart["subtotal"],
        cart["discount"],
        cart["vat"],
        cart["total"],
    )
    assert order["promo_code"] == code
    async with session_scope(kassa.engine) as session:
        events = await session.exec(
            select(OrderEvent).where(OrderEvent.order_id == uuid.UUID(order["id"]))
        )
        moved = {event.status: event.detail for event in events}
    assert moved["CREATED"] == {"promo_held": code} and moved["PAID"]["promo_final"] == code
    promo = await promo_row(kassa, code)
    assert (promo.uses_held, promo.uses_final) == (0, 1)


async def test_a_promo_that_does_not_apply_shows_why_and_pay_now_is_refused(kassa: Kassa) -> None:
    sony = await product_of(kassa, "Sony", 30_000)
    code = await new_promo(kassa, kind="fixed", value=10_000, min_order=60_000, brands=["Sony"])
    customer = await kassa.customer()
    await customer.cart_with((sony, 1))
    cart = await apply(customer, code)
    assert (
        cart["promo"] == {"code": code, "status": "min_order_not_met", "discount": 0}
        and cart["total"] == 30_000
    )
    async with customer.http() as http:
        refused = await pay_now(http, cart, CARD)
        assert refused.status_code == 409 and refused.json()["code"] == "promo_unavailable", (
            refused.text
        )
        assert refused.json()["promo_status"] == "min_order_not_met"
        cart = (await http.post("/cart/items", json={"sku": sony, "quantity": 1})).json()
        assert cart["promo"]["status"] == "applied" and cart["total"] == 50_000
        other = await product_of(kassa, "Acme", 70_000)
        cart = (await http.post("/cart/items", json={"sku": other, "quantity": 1})).json()
        assert (
            cart["discount"] == 10_000 and cart["total"] == 120_000
        )  # Acme is out of the code's scope
        removed = await http.delete("/cart/promo")
        assert removed.status_code == 200 and removed.json()["promo"] is None
        assert removed.json()["version"] == cart["version"] + 1 and removed.json()["discount"] == 0
        again = await http.delete("/cart/promo")
        assert again.status_code == 404 and again.json()["code"] == "promo_not_on_cart"


async def test_unknown_expired_and_future_codes_are_refused(kassa: Kassa) -> None:
    now = utcnow()
    expired = await new_promo(
        kassa,
        starts_at=(now - timedelta(days=2)).isoformat(),
        ends_at=(now - timedelta(days=1)).isoformat(),
    )
    future = await new_promo(kassa, starts_at=(now + timedelta(days=1)).isoformat())
    customer = await kassa.customer()
    cart = await customer.cart_with((await kassa.product(on_hand=5), 1))
    async with customer.http() as http:
        for code, status, answer_code in (
            ("NO-SUCH-CODE", 404, "promo_not_found"),
            (expired, 409, "promo_unavailable"),
            (future, 409, "promo_unavailable"),
            ("x" * 33, 422, "invalid_request"),
        ):
            refused = await http.post("/cart/promo", json={"code": code})
            assert refused.status_code == status and refused.json()["code"] == answer_code, (
                refused.text
            )
        assert (await http.get("/cart")).json()["version"] == cart[
            "version"
        ]  # refusals changed nothing


async def test_a_failed_order_gives_its_use_back(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=50, price=40_000)
    code = await new_promo(kassa, max_uses=1)
    first, second = await kassa.customer(), await kassa.customer()
    await first.cart_with((sku, 1))
    cart = await apply(first, code)
    async with first.http() as http:
        waiting = await pay_now(http, cart, CARD_3DS)
        assert waiting.status_code == 201, waiting.text
    assert (await promo_row(kassa, code)).uses_held == 1
    async with first.http() as http:
        being_paid = (await http.get("/cart")).json()
        assert being_paid["status"] == "checked_out" and being_paid["promo"]["status"] == "applied"
        assert being_paid["discount"] == 4_000
    await second.cart_with((sku, 1))
    async with second.http() as http:
        used_up = await http.post("/cart/promo", json={"code": code})
        assert used_up.status_code == 409 and used_up.json()["promo_status"] == "used_up"
    async with first.http() as http:
        assert (await http.post(f"/orders/{waiting.json()['order_id']}/cancel")).status_code == 200
        assert (await promo_row(kassa, code)).uses_held == 0
        reopened = await cart_reopened(http)
        assert (
            reopened["promo"]["status"] == "applied"
        )  # the use is back: the customer may pay again
        assert (await pay_now(http, reopened, CARD)).json()["status"] == "PAID"
    promo = await promo_row(kassa, code)
    assert (promo.uses_held, promo.uses_final) == (0, 1)


async def test_a_customer_uses_a_code_at_most_its_per_customer_limit(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=50, price=40_000)
    code = await new_promo(kassa, max_uses_per_customer=1)
    customer = await kassa.customer()
    await customer.cart_with((sku, 1))
    async with customer.http() as http:
        assert (await pay_now(http, await apply(customer, code), CARD)).json()["status"] == "PAID"
        await http.post("/cart/items", json={"sku": sku, "quantity": 1})
        again = await http.post("/cart/promo", json={"code": code})
        assert again.status_code == 409 and again.json()["promo_status"] == "customer_limit_reached"
    other = await kassa.customer()
    await other.cart_with((sku, 1))
    assert (await apply(other, code))["promo"]["status"] == "applied"


BUYERS, USES = 100, 10


async def test_a_hundred_checkouts_for_ten_uses_make_exactly_ten_discounted_orders(
    kassa: Kassa,
) -> None:
    sku = await kassa.product(on_hand=BUYERS, price=20_000)
    code = await new_promo(kassa, value=25, max_uses=USES)
    tokens = await _buyers(kassa, BUYERS)

    async def cart_with_promo(token: str) -> dict:
        async with kassa.http(token) as http:
            await http.post("/cart/items", json={"sku": sku, "quantity": 1})
            cart = (await http.post("/cart/promo", json={"code": code})).json()
            assert cart["discount"] == 5_000, cart
            return cart

    async def buy(token: str, cart: dict) -> tuple[int, dict]:
        async with kassa.http(token) as http:
            answer = await pay_now(http, cart, CARD)
            return answer.status_code, answer.json()

    # Every cart takes the code before anyone pays: once its uses are gone, a cart cannot take it.
    carts = await asyncio.gather(*(cart_with_promo(token) for token in tokens))
    answers = await asyncio.gather(
        *(buy(token, cart) for token, cart in zip(tokens, carts, strict=True))
    )
    statuses = [status for status, _ in answers]
    assert statuses.count(201) == USES and statuses.count(409) == BUYERS - USES
    assert {body["code"] for status, body in answers if status == 409} == {"promo_unavailable"}
    promo = await promo_row(kassa, code)
    assert (promo.uses_held, promo.uses_final) == (0, USES)
    paid_ids = [uuid.UUID(body["order_id"]) for status, body in answers if status == 201]
    async with session_scope(kassa.engine) as session:
        paid = [await session.get_one(Order, order_id) for order_id in paid_ids]
    assert all(order.status == "PAID" and order.discount == 5_000 for order in paid)
    # A refused buyer sees why in the cart; without the code, paying again is at full price.
    loser = tokens[statuses.index(409)]
    async with kassa.http(loser) as http:
        cart = (await http.get("/cart")).json()
        assert (
            cart["promo"] == {"code": code, "status": "used_up", "discount": 0}
            and cart["total"] == 20_000
        )
        cart = (await http.delete("/cart/promo")).json()
        assert (await pay_now(http, cart, CARD)).json()["status"] == "PAID"
    assert (await kassa.stock(sku)).on_hand == BUYERS - USES - 1


async def test_a_late_payment_whose_promo_use_went_to_another_order_is_refunded(
    kassa: Kassa,
) -> None:
    """The rule: a late success completes its ended order only if it can take its promo use
    again."""
    sku = await kassa.product(on_hand=10, price=40_000)
    code = await new_promo(kassa, max_uses=1)
    late, rival = await kassa.customer(), await kassa.customer()
    await late.cart_with((sku, 1))
    async with late.http() as http:
        order_id = (await pay_now(http, await apply(late, code), CARD_3DS)).json()["order_id"]
        assert (await http.post(f"/orders/{order_id}/cancel")).status_code == 200
    await rival.cart_with((sku, 1))
    async with rival.http() as http:
        assert (await pay_now(http, await apply(rival, code), CARD)).json()["status"] == "PAID"
    await late_success(kassa, order_id, 36_000)
    await reconcile(kassa)
    async with late.http() as http:
        order = await events_reach(http, order_id, "refunded_late_payment")
    assert order["status"] == "CANCELLED"
    promo = await promo_row(kassa, code)
    assert (promo.uses_held, promo.uses_final) == (0, 1)


async def test_a_category_scope_covers_the_subtree_and_unknown_categories_are_refused(
    kassa: Kassa,
) -> None:
    parent, leaf = f"audio-{uuid.uuid4().hex[:8]}", f"earbuds-{uuid.uuid4().hex[:8]}"
    async with session_scope(kassa.engine) as session:
        session.add(Category(slug=parent, name="Аудио", name_en="Audio"))
        await session.flush()
        session.add(Category(slug=leaf, name="Наушники", name_en="Earbuds", parent=parent))
    inside, outside = (
        await kassa.product(on_hand=10, price=40_000),
        await kassa.product(on_hand=10, price=60_000),
    )
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Product, inside)).category = leaf
    code = await new_promo(kassa, value=25, categories=[parent])
    customer = await kassa.customer()
    await customer.cart_with((inside, 1), (outside, 1))
    cart = await apply(customer, code)
    assert {i["sku"]: i["discount"] for i in cart["items"]} == {inside: 10_000, outside: 0}
    admin = await kassa.account("admin")
    async with admin.http() as http:
        refused = await http.post(
            "/admin/promo-codes",
            json={
                "code": "NOSUCHCAT",
                "kind": "percent",
                "value": 5,
                "categories": ["no-such-category"],
            },
        )
    assert refused.status_code == 422 and refused.json()["code"] == "unknown_category", refused.text
