"""The cart a customer expects: limits per SKU, prices as of now with a notice when they changed,
lines that ran out flagged, and a version bumped by every change so a stale Pay Now is refused."""

from kassa.db import session_scope
from kassa.tables import Product, Stock
from tests.conftest import Kassa
from tests.flow import CARD, pay_now


async def test_a_sku_limit_caps_the_quantity_in_the_cart(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=50)
    async with (await kassa.account("admin")).http() as http:
        limited = await http.patch(f"/admin/products/{sku}", json={"max_per_order": 2})
        assert limited.status_code == 200 and limited.json()["max_per_order"] == 2, limited.text
        not_a_limit = await http.patch(f"/admin/products/{sku}", json={"max_per_order": 0})
        assert not_a_limit.status_code == 422 and not_a_limit.json()["code"] == "invalid_request"
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    assert cart["items"][0]["max_quantity"] == 2
    async with customer.http() as http:
        for answer in (
            await http.post("/cart/items", json={"sku": sku, "quantity": 1}),
            await http.patch(f"/cart/items/{sku}", json={"quantity": 3}),
        ):
            assert answer.status_code == 422 and answer.json()["code"] == "quantity_limit", (
                answer.text
            )
            assert answer.json()["limit"] == 2
        assert (await http.get("/cart")).json()["version"] == cart[
            "version"
        ]  # refusals changed nothing


async def test_a_limit_lowered_after_adding_refuses_pay_now_and_gives_a_new_version(
    kassa: Kassa,
) -> None:
    sku = await kassa.product(on_hand=50)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 3))
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Product, sku)).max_per_order = 2
    async with customer.http() as http:
        refused = await pay_now(http, cart, CARD)
        assert refused.status_code == 409 and refused.json()["code"] == "quantity_limit", (
            refused.text
        )
        fixed = (await http.patch(f"/cart/items/{sku}", json={"quantity": 2})).json()
        assert (await pay_now(http, fixed, CARD)).json()["status"] == "PAID"


async def test_a_price_change_since_adding_is_shown_with_the_price_now(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5, price=10_000)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    assert cart["items"][0]["price_changed"] is False
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Product, sku)).price = 12_500
    async with customer.http() as http:
        seen = (await http.get("/cart")).json()
        line = seen["items"][0]
        assert (line["unit_price"], line["price_when_added"], line["price_changed"]) == (
            12_500,
            10_000,
            True,
        )
        assert seen["total"] == 25_000
        # Touching the line is seeing its price: the notice goes.
        changed = (await http.patch(f"/cart/items/{sku}", json={"quantity": 1})).json()
        assert changed["items"][0]["price_changed"] is False and changed["total"] == 12_500
        paid = await pay_now(http, changed, CARD)
        order = (await http.get(f"/orders/{paid.json()['order_id']}")).json()
    assert order["total"] == 12_500 and order["lines"][0]["unit_price"] == 12_500


async def test_a_line_that_ran_out_is_flagged(kassa: Kassa) -> None:
    sku, other = await kassa.product(on_hand=3), await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2), (other, 1))
    assert [line["out_of_stock"] for line in cart["items"]] == [False, False]
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Stock, sku)).on_hand = 1
    async with customer.http() as http:
        cart = (await http.get("/cart")).json()
        flagged = {line["sku"]: (line["out_of_stock"], line["available"]) for line in cart["items"]}
        assert flagged == {sku: (True, 1), other: (False, 3)}
        refused = await pay_now(http, cart, CARD)
        assert refused.status_code == 409 and refused.json()["code"] == "out_of_stock"


async def test_every_change_bumps_the_version_and_a_stale_pay_now_is_refused(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=10)
    customer = await kassa.customer()
    reviewed = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        versions = [reviewed["version"]]
        versions += [
            (await change).json()["version"]
            for change in (
                http.post("/cart/items", json={"sku": sku, "quantity": 1}),
                http.patch(f"/cart/items/{sku}", json={"quantity": 1}),
            )
        ]
        assert versions == sorted(set(versions)) and len(versions) == 3
        stale = await http.post(
            "/checkout",
            json={
                "cart_id": reviewed["id"],
                "cart_version": reviewed["version"],
                "payment_method": CARD,
            },
        )
        assert (
            stale.status_code == 409
            and stale.json()["code"] == "cart_changed"
            and stale.json()["version"] == versions[-1]
        )
        current = await http.post(
            "/checkout",
            json={"cart_id": reviewed["id"], "cart_version": versions[-1], "payment_method": CARD},
        )
        assert current.status_code == 201 and current.json()["status"] == "PAID", current.text
