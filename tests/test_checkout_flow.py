"""Pay Now end to end: gateway → workflow → PostgreSQL and the acquirer, webhooks back."""

from tests.conftest import Kassa
from tests.flow import (
    CARD,
    CARD_3DS,
    CARD_DECLINED,
    authenticate_3ds,
    cart_reopened,
    order_reaches,
    pay_now,
)


async def test_frictionless_card_pays_and_commits_stock(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5, price=129_900)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    assert cart["total"] == 259_800 and cart["items"][0]["line_total"] == 259_800
    async with customer.http() as http:
        response = await pay_now(http, cart, CARD)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["status"] == "PAID" and answer["payment"]["status"] == "succeeded"
        order = await order_reaches(http, answer["order_id"], "PAID")
        assert order["total"] == 259_800
        assert [e["status"] for e in order["events"]] == ["CREATED", "PENDING_PAYMENT", "PAID"]
        assert order["reservation_id"] and order["hold_expires_at"]
        next_cart = (await http.get("/cart")).json()
        assert next_cart["id"] != cart["id"] and next_cart["items"] == []
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)


async def test_3ds_approve_pays(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        response = await pay_now(http, cart, CARD_3DS)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["status"] == "PENDING_PAYMENT" and answer["payment_url"]
        assert (await kassa.stock(sku)).reserved == 1
        await authenticate_3ds(answer["payment_url"], approve=True)
        await order_reaches(http, answer["order_id"], "PAID")
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)


async def test_decline_then_retry_pays(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        declined = await pay_now(http, cart, CARD_DECLINED)
        assert declined.status_code == 402, declined.text
        problem = declined.json()
        assert problem["code"] == "payment_declined" and problem["retry_allowed"] is True
        order_id = problem["order_id"]
        assert (await http.get(f"/orders/{order_id}")).json()["status"] == "PENDING_PAYMENT"
        retried = await http.post(f"/orders/{order_id}/pay", json={"payment_method": CARD})
        assert retried.status_code == 200, retried.text
        order = await order_reaches(http, order_id, "PAID")
        assert order["payment"]["attempt"] == 2
    assert (await kassa.stock(sku)).on_hand == 2


async def test_three_declines_fail_the_order_and_give_the_cart_back(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        order_id = (await pay_now(http, cart, CARD_DECLINED)).json()["order_id"]
        retries = [
            await http.post(f"/orders/{order_id}/pay", json={"payment_method": CARD_DECLINED})
            for _ in range(2)
        ]
        for response in retries:
            assert response.status_code == 402, response.text
        assert (
            retries[-1].json()["order_status"] == "PAYMENT_FAILED"
            and retries[-1].json()["retry_allowed"] is False
        )
        order = await order_reaches(http, order_id, "PAYMENT_FAILED")
        assert order["reason"] == "card_declined"
        fourth = await http.post(f"/orders/{order_id}/pay", json={"payment_method": CARD})
        assert fourth.status_code == 409
        reopened = await cart_reopened(http)
        assert reopened["id"] == cart["id"] and reopened["version"] == cart["version"] + 1
        assert reopened["status"] == "open" and reopened["items"][0]["sku"] == sku
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)


async def test_cancel_releases_stock(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=2)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with customer.http() as http:
        answer = (await pay_now(http, cart, CARD_3DS)).json()
        assert (await kassa.stock(sku)).reserved == 2
        cancelled = await http.post(f"/orders/{answer['order_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        order = await order_reaches(http, answer["order_id"], "CANCELLED")
        assert order["payment"]["status"] == "canceled"
        again = await http.post(f"/orders/{answer['order_id']}/cancel")
        assert again.status_code == 409
    assert (await kassa.stock(sku)).reserved == 0


async def test_out_of_stock_names_the_skus_and_holds_nothing(kassa: Kassa) -> None:
    plenty, scarce = await kassa.product(on_hand=10), await kassa.product(on_hand=1)
    customer = await kassa.customer()
    cart = await customer.cart_with((plenty, 2), (scarce, 1))
    rival = await kassa.customer()
    rival_cart = await rival.cart_with((scarce, 1))
    async with rival.http() as http:
        assert (await pay_now(http, rival_cart, CARD_3DS)).status_code == 201
    async with customer.http() as http:
        response = await pay_now(http, cart, CARD)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "out_of_stock" and response.json()["skus"] == [scarce]
        # Refused by the gateway's availability check, before any order was made.
        assert (await http.get("/orders")).json() == []
    assert (await kassa.stock(plenty)).reserved == 0
    assert (await kassa.stock(scarce)).reserved == 1
