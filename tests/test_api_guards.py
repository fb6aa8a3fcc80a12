"""The gateway's guards (design §5): bad input gets a clear 4xx problem with a `code`, never a 500,
and changes nothing. Every refused request is followed by a re-read of what it could have
changed."""

import json
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.utils import base64url_decode, base64url_encode
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import text

from activities.tokens import Keyring, TokenPolicy, issue_access_token, key_id, revoke_family
from api.main import API_DATABASE_NAME
from kassa.db import session_scope
from tests.conftest import PASSWORD, Customer, Kassa
from tests.flow import CARD, CARD_3DS, CARD_DECLINED, order_reaches, pay_now

HOUR = timedelta(hours=1)


def _forged(claims: dict[str, Any], key: str, algorithm: str, kid: str) -> str:
    # Forged with keys too short for the algorithm on purpose: PyJWT's warning about it is not news.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _with_alg(token: str, alg: str) -> str:
    """The token with another `alg` in its header, the rest (and so its signature) as it was."""
    header, rest = token.split(".", 1)
    claimed = json.loads(base64url_decode(header)) | {"alg": alg}
    return base64url_encode(json.dumps(claimed).encode()).decode() + "." + rest


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["code"] == code, problem
    assert problem["type"] and problem["title"] and problem["detail"]
    return problem


async def cart_of(customer: Customer) -> dict[str, Any]:
    async with customer.http() as http:
        response = await http.get("/cart")
    assert response.status_code == 200, response.text
    return response.json()


async def order_of(customer: Customer, order_id: str) -> dict[str, Any]:
    async with customer.http() as http:
        response = await http.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def orders_of(customer: Customer) -> list[dict[str, Any]]:
    async with customer.http() as http:
        response = await http.get("/orders")
    assert response.status_code == 200, response.text
    return response.json()


async def cancel(customer: Customer, order_id: str) -> None:
    async with customer.http() as http:
        assert (await http.post(f"/orders/{order_id}/cancel")).status_code == 200
        await order_reaches(http, order_id, "CANCELLED")


async def admin_token(kassa: Kassa) -> str:
    return (await kassa.account("admin")).token


@dataclass
class Shopper:
    """A customer with one line in an open cart, shared by the tests that only send refused
    requests."""

    customer: Customer
    sku: str
    cart: dict[str, Any]


@pytest.fixture(scope="module")
async def shopper(kassa: Kassa) -> Shopper:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    return Shopper(customer, sku, await customer.cart_with((sku, 1)))


async def assert_untouched(kassa: Kassa, shopper: Shopper) -> None:
    assert await cart_of(shopper.customer) == shopper.cart
    stock = await kassa.stock(shopper.sku)
    assert (stock.on_hand, stock.reserved) == (5, 0)
    assert await orders_of(shopper.customer) == []


# --- authentication ---------------------------------------------------------------------------

ANY_CHECKOUT = {"cart_id": str(uuid.uuid4()), "payment_method": CARD}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/cart", None),
        ("POST", "/cart/items", {"sku": "X", "quantity": 1}),
        ("POST", "/checkout", ANY_CHECKOUT),
        ("GET", "/orders", None),
        ("GET", f"/orders/{uuid.uuid4()}", None),
        ("GET", "/me", None),
        ("PUT", "/admin/stock/X", {"on_hand": 1}),
    ],
)
async def test_no_token_is_401(
    kassa: Kassa, method: str, path: str, body: dict[str, Any] | None
) -> None:
    async with kassa.http() as http:
        response = await http.request(method, path, json=body)
        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        basic = await http.request(
            method, path, json=body, headers={"Authorization": "Basic dXNlcjpwYXNz"}
        )
        assert_problem(basic, 401, "not_authenticated")


async def test_forged_expired_and_revoked_tokens_are_401_and_change_nothing(
    kassa: Kassa, shopper: Shopper
) -> None:
    user = shopper.customer.user
    keyring = TokenPolicy.from_settings(kassa.settings).keyring
    secret, our_kid = keyring.signing_key, {"kid": key_id(keyring.signing_key)}
    # A live login of the shopper's, so that each token below is refused for its one defect.
    live = jwt.decode(await kassa.token_for(user), options={"verify_signature": False})
    claims = {"sub": live["sub"], "sid": live["sid"], "typ": "access", "exp": 4_102_444_800}
    family_id = uuid.UUID(live["sid"])
    valid = jwt.encode(claims, secret, headers=our_kid)
    header, _, signature = valid.split(".")
    someone_else = base64url_encode(
        json.dumps(claims | {"sub": str(uuid.uuid4())}).encode()
    ).decode()
    revoked = await kassa.token_for(user)
    async with session_scope(kassa.engine) as session:
        await revoke_family(
            session,
            uuid.UUID(jwt.decode(revoked, options={"verify_signature": False})["sid"]),
            "logout",
        )
    tokens = {
        "garbage": ("not.a.token", "invalid_token"),
        "tampered claims": (f"{header}.{someone_else}.{signature}", "invalid_token"),
        "another secret": (
            issue_access_token(Keyring.of("another-secret-" + "x" * 32), user.id, family_id, HOUR),
            "invalid_token",
        ),
        "unknown kid": (jwt.encode(claims, secret, headers={"kid": "0" * 16}), "invalid_token"),
        "no kid": (jwt.encode(claims, secret), "invalid_token"),
        "unsigned (alg none)": (
            jwt.encode(claims, None, algorithm="none", headers=our_kid),
            "invalid_token",
        ),
        "HS512 with our secret": (
            _forged(claims, secret, "HS512", our_kid["kid"]),
            "invalid_token",
        ),
        # HS/RS confusion: a verifier that trusts the header's alg would check this HMAC with our
        # secret as an RSA "public key"; ours takes HS256 only.
        "RS256 header, HMAC body": (_with_alg(valid, "RS256"), "invalid_token"),
        # The other confusion: the public part of the key (here its kid) used as the HMAC secret.
        "kid as secret": (
            _forged(claims, our_kid["kid"], "HS256", our_kid["kid"]),
            "invalid_token",
        ),
        "not an access token": (
            jwt.encode(claims | {"typ": "refresh"}, secret, headers=our_kid),
            "invalid_token",
        ),
        "subject not a user id": (
            jwt.encode(claims | {"sub": "admin"}, secret, headers=our_kid),
            "invalid_token",
        ),
        "no such account": (
            issue_access_token(keyring, uuid.uuid4(), family_id, HOUR),
            "invalid_token",
        ),
        "no such login": (
            issue_access_token(keyring, user.id, uuid.uuid4(), HOUR),
            "invalid_token",
        ),
        "expired": (issue_access_token(keyring, user.id, family_id, -HOUR), "token_expired"),
        "revoked (logged out)": (revoked, "token_revoked"),
    }
    async with kassa.http(valid) as http:
        assert (await http.get("/cart")).status_code == 200, (
            "each token below differs from this good one in one way"
        )
    for name, (token, code) in tokens.items():
        async with kassa.http(token) as http:
            for method, path, body in [
                ("GET", "/cart", None),
                ("POST", "/cart/items", {"sku": shopper.sku, "quantity": 1}),
                ("DELETE", f"/cart/items/{shopper.sku}", None),
                ("POST", "/checkout", {"cart_id": shopper.cart["id"], "payment_method": CARD}),
                ("GET", "/orders", None),
                ("PUT", f"/admin/stock/{shopper.sku}", {"on_hand": 0}),
            ]:
                response = await http.request(method, path, json=body)
                assert response.status_code == 401, (name, path, response.text)
                assert_problem(response, 401, code)
    await assert_untouched(kassa, shopper)


# --- someone else's cart and order: 404, as if it did not exist --------------------------------


async def test_someone_elses_cart_is_not_found(kassa: Kassa, shopper: Shopper) -> None:
    intruder = await kassa.customer()
    intruder_cart = await intruder.cart_with((shopper.sku, 1))
    async with intruder.http() as http:
        theirs = await pay_now(http, shopper.cart, CARD)
        nobodys = await pay_now(http, {"id": str(uuid.uuid4())}, CARD)
    assert assert_problem(theirs, 404, "cart_not_found") == assert_problem(
        nobodys, 404, "cart_not_found"
    )
    assert await cart_of(intruder) == intruder_cart and await orders_of(intruder) == []
    await assert_untouched(kassa, shopper)


async def test_someone_elses_order_is_not_found_and_stays_as_it_is(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=3)
    owner, intruder = await kassa.customer(), await kassa.customer()
    async with owner.http() as http:
        # Declined once: the order waits for another method, so a `pay` by its owner would be taken.
        declined = await pay_now(http, await owner.cart_with((sku, 2)), CARD_DECLINED)
    order_id = assert_problem(declined, 402, "payment_declined")["order_id"]
    before = await order_of(owner, order_id)
    assert before["status"] == "PENDING_PAYMENT"

    async with intruder.http() as http:
        for unknown in (order_id, str(uuid.uuid4())):
            assert_problem(await http.get(f"/orders/{unknown}"), 404, "order_not_found")
            assert_problem(
                await http.post(f"/orders/{unknown}/pay", json={"payment_method": CARD}),
                404,
                "order_not_found",
            )
            assert_problem(await http.post(f"/orders/{unknown}/cancel"), 404, "order_not_found")
        assert (await http.get("/orders")).json() == []

    assert await order_of(owner, order_id) == before
    assert (await kassa.stock(sku)).reserved == 2
    await cancel(owner, order_id)
    assert (await kassa.stock(sku)).reserved == 0


# --- the cart ---------------------------------------------------------------------------------


MINE = "<the shopper's SKU>"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"sku": "NO-SUCH-SKU", "quantity": 1}, 404, "unknown_sku"),
        ({"quantity": 1}, 422, "invalid_request"),
        ({"sku": "SKU"}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ([], 422, "invalid_request"),
        ({"sku": "", "quantity": 1}, 422, "invalid_request"),
        ({"sku": "S" * 65, "quantity": 1}, 422, "invalid_request"),
        ({"sku": 42, "quantity": 1}, 422, "invalid_request"),
        ({"sku": "NO\u0000SKU", "quantity": 1}, 422, "invalid_request"),
        # Quantities are whole numbers sent as numbers: no strings, booleans or fractions.
        ({"sku": MINE, "quantity": "1"}, 422, "invalid_request"),
        ({"sku": MINE, "quantity": True}, 422, "invalid_request"),
        ({"sku": MINE, "quantity": 1.5}, 422, "invalid_request"),
        ({"sku": MINE, "quantity": 1.0}, 422, "invalid_request"),
        ({"sku": MINE, "quantity": None}, 422, "invalid_request"),
        ({"sku": MINE, "quantity": 0}, 422, "invalid_quantity"),
        ({"sku": MINE, "quantity": -1}, 422, "invalid_quantity"),
        ({"sku": MINE, "quantity": 100}, 422, "invalid_quantity"),
        ({"sku": MINE, "quantity": 10**9}, 422, "invalid_quantity"),
        ({"sku": MINE, "quantity": 10**30}, 422, "invalid_quantity"),
        # One is in the cart already: 99 more makes 100.
        ({"sku": MINE, "quantity": 99}, 422, "invalid_quantity"),
        ({"sku": MINE, "quantity": 5}, 409, "not_enough_stock"),
    ],
)
async def test_bad_cart_item_is_refused_and_changes_nothing(
    kassa: Kassa, shopper: Shopper, body: Any, status: int, code: str
) -> None:
    if isinstance(body, dict) and body.get("sku") == MINE:
        body = body | {"sku": shopper.sku}
    async with shopper.customer.http() as http:
        assert_problem(await http.post("/cart/items", json=body), status, code)
    await assert_untouched(kassa, shopper)


@pytest.mark.parametrize(
    ("quantity", "status", "code"),
    [
        ("2", 422, "invalid_request"),
        (True, 422, "invalid_request"),
        (2.5, 422, "invalid_request"),
        (None, 422, "invalid_request"),
        (0, 422, "invalid_quantity"),
        (-1, 422, "invalid_quantity"),
        (100, 422, "invalid_quantity"),
        (10**9, 422, "invalid_quantity"),
        (6, 409, "not_enough_stock"),
    ],
)
async def test_bad_quantity_change_is_refused_and_changes_nothing(
    kassa: Kassa, shopper: Shopper, quantity: Any, status: int, code: str
) -> None:
    async with shopper.customer.http() as http:
        assert_problem(
            await http.patch(f"/cart/items/{shopper.sku}", json={"quantity": quantity}),
            status,
            code,
        )
    await assert_untouched(kassa, shopper)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"sku": "X", "quantity": 1',
        b"{'sku': 'X', 'quantity': 1}",
        b'{"sku": "X", "quantity": 01}',
        b'{"sku": "X\xc3\x28", "quantity": 1}',
        b"[" * 20_000 + b"]" * 20_000,
    ],
    ids=["truncated", "single quotes", "leading zero", "not utf-8", "nested too deep"],
)
async def test_malformed_json_is_400(kassa: Kassa, shopper: Shopper, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    async with shopper.customer.http() as http:
        for path in ("/cart/items", "/checkout", "/auth/register"):
            assert_problem(
                await http.post(path, content=raw, headers=headers), 400, "malformed_json"
            )
    await assert_untouched(kassa, shopper)


@pytest.mark.parametrize("bad", [b"\\ud800", b"\\u0000"], ids=["lone surrogate", "nul"])
async def test_text_that_cannot_be_stored_is_422(
    kassa: Kassa, shopper: Shopper, bad: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    bodies = {
        "/cart/items": b'{"sku": "A' + bad + b'B", "quantity": 1}',
        "/auth/register": b'{"email": "a'
        + bad
        + b'b@example.com", "password": "long enough password"}',
        "/auth/login": b'{"email": "someone@example.com", "password": "long enough ' + bad + b'"}',
    }
    async with shopper.customer.http() as http:
        for path, body in bodies.items():
            assert_problem(
                await http.post(path, content=body, headers=headers), 422, "invalid_request"
            )
        assert_problem(
            await http.patch("/cart/items/A%00B", json={"quantity": 1}), 422, "invalid_request"
        )
        assert_problem(await http.delete("/cart/items/A%00B"), 422, "invalid_request")
        assert_problem(await http.get("/catalog/products/A%00B"), 422, "invalid_request")
        assert_problem(
            await http.get("/catalog/products", params={"cursor": "A\x00B"}), 422, "invalid_request"
        )
    await assert_untouched(kassa, shopper)


async def test_oversized_body_is_413(kassa: Kassa, shopper: Shopper) -> None:
    big = {"sku": shopper.sku, "quantity": 1, "padding": "x" * 70_000}
    async with shopper.customer.http() as http:
        assert_problem(await http.post("/cart/items", json=big), 413, "body_too_large")
        assert_problem(await http.post("/webhooks/sandbox", json=big), 413, "body_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: the body arrives chunked, and is counted as it comes.
            yield b'{"sku": "' + shopper.sku.encode() + b'", "quantity": 1, "padding": "'
            for _ in range(20):
                yield b"x" * 4096
            yield b'"}'

        chunked = await http.post(
            "/cart/items", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(chunked, 413, "body_too_large")
    await assert_untouched(kassa, shopper)


async def test_small_chunked_body_is_read(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"sku": "' + sku.encode()
        yield b'", "quantity": 2}'

    async with customer.http() as http:
        response = await http.post(
            "/cart/items", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert [(line["sku"], line["quantity"]) for line in response.json()["items"]] == [(sku, 2)]


async def test_item_not_in_cart_is_404(kassa: Kassa, shopper: Shopper) -> None:
    other = await kassa.product(on_hand=5)
    async with shopper.customer.http() as http:
        for sku in (other, "NO-SUCH-SKU"):
            assert_problem(await http.delete(f"/cart/items/{sku}"), 404, "item_not_in_cart")
        assert_problem(
            await http.patch(f"/cart/items/{other}", json={"quantity": 1}), 404, "item_not_in_cart"
        )
        assert_problem(
            await http.patch("/cart/items/NO-SUCH-SKU", json={"quantity": 1}), 404, "unknown_sku"
        )
    await assert_untouched(kassa, shopper)


async def test_cart_is_locked_while_its_checkout_runs(kassa: Kassa) -> None:
    sku, other = await kassa.product(on_hand=5), await kassa.product(on_hand=5)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 2))
    async with customer.http() as http:
        answer = (await pay_now(http, cart, CARD_3DS)).json()
        assert answer["status"] == "PENDING_PAYMENT", answer
        locked = (await http.get("/cart")).json()
        assert (locked["id"], locked["version"], locked["status"]) == (
            cart["id"],
            cart["version"],
            "checked_out",
        )
        for response in (
            await http.post("/cart/items", json={"sku": other, "quantity": 1}),
            await http.post("/cart/items", json={"sku": sku, "quantity": 1}),
            await http.patch(f"/cart/items/{sku}", json={"quantity": 1}),
            await http.delete(f"/cart/items/{sku}"),
        ):
            assert_problem(response, 409, "cart_locked")
        assert (await http.get("/cart")).json() == locked
        assert (await kassa.stock(sku)).reserved == 2 and (await kassa.stock(other)).reserved == 0
        assert (await http.get(f"/orders/{answer['order_id']}")).json()["lines"][0]["quantity"] == 2
    await cancel(customer, answer["order_id"])


# --- checkout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"payment_method": None}, 422, "invalid_request"),
        ({"payment_method": "tok_success"}, 422, "invalid_request"),
        ({"payment_method": {"type": "paypal", "token": "tok_success"}}, 422, "invalid_request"),
        ({"payment_method": {"type": "card", "token": "4242424242424242"}}, 422, "invalid_request"),
        ({"payment_method": {"type": "card", "token": "tok_" + "x" * 100}}, 422, "invalid_request"),
        ({"payment_method": {"type": "card"}}, 422, "invalid_request"),
        ({"cart_id": "not-a-uuid"}, 422, "invalid_request"),
        ({"cart_id": None}, 422, "invalid_request"),
        ({"cart_id": str(uuid.uuid4())}, 404, "cart_not_found"),
        ({"redeem_points": 100}, 409, "not_enough_points"),  # a new customer has no points
        ({"cart_version": 999}, 409, "cart_changed"),
        ({"cart_version": 0}, 422, "invalid_request"),
        ({"redeem_points": -1}, 422, "invalid_request"),
        ({"redeem_points": "0"}, 422, "invalid_request"),
        ({"address_id": str(uuid.uuid4())}, 404, "address_not_found"),
    ],
)
async def test_bad_checkout_is_refused_and_holds_nothing(
    kassa: Kassa, shopper: Shopper, change: dict[str, Any], status: int, code: str
) -> None:
    body = {"cart_id": shopper.cart["id"], "payment_method": CARD} | change
    body = {name: value for name, value in body.items() if value is not None}
    async with shopper.customer.http() as http:
        assert_problem(await http.post("/checkout", json=body), status, code)
    await assert_untouched(kassa, shopper)


async def test_empty_cart_checkout_is_409(kassa: Kassa) -> None:
    customer = await kassa.customer()
    cart = await cart_of(customer)
    async with customer.http() as http:
        assert_problem(await pay_now(http, cart, CARD), 409, "empty_cart")
    assert await cart_of(customer) == cart and await orders_of(customer) == []


async def test_paid_cart_cannot_be_checked_out_again(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    cart = await customer.cart_with((sku, 1))
    async with customer.http() as http:
        assert (await pay_now(http, cart, CARD)).json()["status"] == "PAID"
        again = await pay_now(http, cart, CARD)
    problem = assert_problem(again, 409, "cart_checked_out")
    assert (
        len(await orders_of(customer)) == 1
        and problem["order_id"] == (await orders_of(customer))[0]["id"]
    )
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (4, 0)


# --- accounts ---------------------------------------------------------------------------------


async def test_register_login_and_me(kassa: Kassa) -> None:
    email = f"New-{uuid.uuid4().hex[:12]}@Example.com"
    async with kassa.http() as http:
        for body, status, code in [
            ({"email": "not-an-email", "password": PASSWORD}, 422, "invalid_email"),
            ({"email": "a@b", "password": PASSWORD}, 422, "invalid_email"),
            ({"email": email, "password": "short"}, 422, "weak_password"),
            ({"email": email}, 422, "invalid_request"),
            ({"password": PASSWORD}, 422, "invalid_request"),
            ({"email": "x" * 250 + "@example.com", "password": PASSWORD}, 422, "invalid_request"),
            ({"email": email, "password": 12345678}, 422, "invalid_request"),
        ]:
            assert_problem(await http.post("/auth/register", json=body), status, code)
        # None of those made an account.
        assert_problem(
            await http.post("/auth/login", json={"email": email, "password": PASSWORD}),
            401,
            "invalid_credentials",
        )

        created = await http.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        account = created.json()
        assert account["email"] == email.lower() and account["role"] == "customer"
        for same in (email, email.lower(), f"  {email.upper()} "):
            taken = await http.post(
                "/auth/register", json={"email": same, "password": "another password"}
            )
            assert_problem(taken, 409, "email_taken")

        wrong = await http.post("/auth/login", json={"email": email, "password": "wrong password"})
        nobody = await http.post(
            "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        assert assert_problem(wrong, 401, "invalid_credentials") == assert_problem(
            nobody, 401, "invalid_credentials"
        )

        login = await http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()
    assert (
        token["token_type"] == "bearer"
        and token["expires_in"] == kassa.settings.access_token_seconds
    )
    async with kassa.http(token["access_token"]) as http:
        me = await http.get("/me")
    assert me.status_code == 200 and me.json() == account


# --- admin ------------------------------------------------------------------------------------


async def test_stock_count_is_for_admins_and_guarded(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    async with customer.http() as http:
        assert_problem(
            await http.put(f"/admin/stock/{sku}", json={"on_hand": 50}), 403, "not_permitted"
        )
    assert (await kassa.stock(sku)).on_hand == 5

    async with customer.http() as http:
        answer = (await pay_now(http, await customer.cart_with((sku, 2)), CARD_3DS)).json()
    async with kassa.http(await admin_token(kassa)) as http:
        for path, body, status, code in [
            (f"/admin/stock/{sku}", {"on_hand": 1}, 409, "below_reserved"),
            (f"/admin/stock/{sku}", {"on_hand": -1}, 422, "invalid_on_hand"),
            (f"/admin/stock/{sku}", {"on_hand": 10**8}, 422, "invalid_on_hand"),
            (f"/admin/stock/{sku}", {"on_hand": "7"}, 422, "invalid_request"),
            (f"/admin/stock/{sku}", {}, 422, "invalid_request"),
            ("/admin/stock/NO-SUCH-SKU", {"on_hand": 1}, 404, "unknown_sku"),
            ("/admin/stock/A%00B", {"on_hand": 1}, 422, "invalid_request"),
        ]:
            assert_problem(await http.put(path, json=body), status, code)
        stock = await kassa.stock(sku)
        assert (stock.on_hand, stock.reserved) == (5, 2)

        counted = await http.put(f"/admin/stock/{sku}", json={"on_hand": 2})
        assert counted.status_code == 200, counted.text
        assert counted.json() == {"sku": sku, "on_hand": 2, "reserved": 2, "available": 0}
    await cancel(customer, answer["order_id"])
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (2, 0)


# --- catalog ----------------------------------------------------------------------------------


async def test_catalog_pages_and_shows_what_is_available(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=4, price=99_900)
    seen: list[str] = []
    async with kassa.http() as http:
        cursor: str | None = None
        while True:
            page = await http.get(
                "/catalog/products", params={"limit": 3} | ({"cursor": cursor} if cursor else {})
            )
            assert page.status_code == 200, page.text
            body = page.json()
            assert set(body) >= {"items", "facets", "next_cursor"} and len(body["items"]) <= 3
            seen += [item["sku"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        for params in ({"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "c" * 513}):
            assert_problem(
                await http.get("/catalog/products", params=params), 422, "invalid_request"
            )
        assert_problem(await http.get("/catalog/products/NO-SUCH-SKU"), 404, "unknown_sku")
        product = (await http.get(f"/catalog/products/{sku}")).json()
    assert len(seen) == len(set(seen)) and sku in seen
    assert product.items() >= {
        "sku": sku, "title": f"Test item {sku}", "brand": "Acme", "category": "test",
        "price": 99_900, "currency": "RUB", "available": 4,
    }.items()  # fmt: skip

    customer = await kassa.customer()
    async with customer.http() as http:
        answer = (await pay_now(http, await customer.cart_with((sku, 3)), CARD_3DS)).json()
        assert (await http.get(f"/catalog/products/{sku}")).json()["available"] == 1
    await cancel(customer, answer["order_id"])
    async with kassa.http() as http:
        assert (await http.get(f"/catalog/products/{sku}")).json()["available"] == 4


# --- infra ------------------------------------------------------------------------------------


async def test_health_and_readiness(kassa: Kassa) -> None:
    async with kassa.http() as http:
        health, ready = await http.get("/healthz"), await http.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}


async def test_a_dropped_database_connection_costs_no_request(
    kassa: Kassa, shopper: Shopper
) -> None:
    # PostgreSQL ending the api's pooled connections (a restart, a failover): the ping at each
    # take (kassa/db.py) replaces them before use, so no request sees it. Every api of the test
    # session is named so: another stack's pool recovers the same way.
    assert await cart_of(shopper.customer) == shopper.cart
    async with session_scope(kassa.engine) as session:
        ended = await session.exec(  # type: ignore[call-overload]
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            params={"name": API_DATABASE_NAME},
        )
        assert ended.all(), "the api holds pooled connections"
    assert await cart_of(shopper.customer) == shopper.cart
