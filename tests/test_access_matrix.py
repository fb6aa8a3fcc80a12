"""Who may call what: every route of the gateway × {anonymous, customer A, customer B, support,
admin}, with the status each must get. The routes come from the app itself, so a new route without
a row here fails `test_every_route_has_a_row`.

Customer A owns what the path or body names (their order, their address, their cart); customer B
is another customer, to whom A's things must not exist (404); staff may not shop (403), customers
may not operate (403), and nobody anonymous gets past a guarded route (401). Requests run in the
order anonymous, B, support, admin, then A, so that A's own change comes after the refusals.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from activities.tokens import TokenPolicy, start_family
from api.main import create_app as create_gateway
from kassa.db import session_scope
from tests.conftest import PASSWORD, Customer, Kassa
from tests.flow import CARD, CARD_3DS, CARD_DECLINED, pay_now

ANONYMOUS, CUSTOMER_A, CUSTOMER_B, SUPPORT, ADMIN = (
    "anonymous",
    "customer A",
    "customer B",
    "support",
    "admin",
)
COLUMNS = (ANONYMOUS, CUSTOMER_A, CUSTOMER_B, SUPPORT, ADMIN)
ASKING_ORDER = (ANONYMOUS, CUSTOMER_B, SUPPORT, ADMIN, CUSTOMER_A)
ADDRESS = {
    "recipient": "Ann Petrova",
    "country": "RU",
    "city": "Moscow",
    "postal_code": "101000",
    "line1": "Tverskaya 1",
}


@dataclass
class Probe:
    path: str
    body: Any = None
    owner: Customer | None = None  # customer A of this request; None: the world's customer A
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    kassa: Kassa
    a: Customer
    b: Customer
    support: Customer
    admin: Customer
    sku: str
    made: dict[str, Any] = field(default_factory=dict)

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """What `make` gives, made on the first ask: the callers of one route share A's thing."""
        if key not in self.made:
            self.made[key] = await make()
        return self.made[key]

    def token(self, principal: str, probe: Probe) -> str | None:
        return {
            ANONYMOUS: None,
            CUSTOMER_A: (probe.owner or self.a).token,
            CUSTOMER_B: self.b.token,
            SUPPORT: self.support.token,
            ADMIN: self.admin.token,
        }[principal]

    async def shopper_with_cart(self) -> tuple[Customer, dict[str, Any]]:
        customer = await self.kassa.customer()
        return customer, await customer.cart_with((self.sku, 1))

    async def order_waiting_for_payment(self) -> tuple[Customer, str]:
        """A new customer's order, declined once: PENDING_PAYMENT, waiting for another method."""
        customer, cart = await self.shopper_with_cart()
        async with customer.http() as http:
            declined = await pay_now(http, cart, CARD_DECLINED)
        assert declined.status_code == 402, declined.text
        return customer, declined.json()["order_id"]

    async def refresh_token(self) -> str:
        async with session_scope(self.kassa.engine) as session:
            return (
                await start_family(
                    session, TokenPolicy.from_settings(self.kassa.settings), self.a.user.id
                )
            ).refresh_token


Build = Callable[[World, str], Awaitable[Probe]]


def fixed(path: str, body: Any = None) -> Build:
    async def build(world: World, principal: str) -> Probe:
        return Probe(path, body)

    return build


async def register(world: World, principal: str) -> Probe:
    return Probe(
        "/auth/register",
        {"email": f"new-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD},
    )


async def login(world: World, principal: str) -> Probe:
    return Probe("/auth/login", {"email": world.a.user.email, "password": PASSWORD})


def with_refresh_token(path: str) -> Build:
    async def build(world: World, principal: str) -> Probe:
        return Probe(path, {"refresh_token": await world.refresh_token()})

    return build


async def product(world: World, principal: str) -> Probe:
    return Probe(f"/catalog/products/{world.sku}")


async def a_address(world: World, principal: str) -> Probe:
    async def make() -> tuple[Customer, str]:
        async with world.a.http() as http:
            created = await http.post("/me/addresses", json=ADDRESS)
        assert created.status_code == 201, created.text
        return world.a, created.json()["id"]

    owner, address_id = await world.once("address", make)
    return Probe(f"/me/addresses/{address_id}", owner=owner)


async def add_item(world: World, principal: str) -> Probe:
    return Probe("/cart/items", {"sku": world.sku, "quantity": 1})


async def new_product(world: World, principal: str) -> Probe:
    sku = f"NEW-{uuid.uuid4().hex[:10].upper()}"
    return Probe(
        "/admin/products",
        {"sku": sku, "title": "Probe", "brand": "Acme", "category": "test", "price": 100},
    )


async def change_product(world: World, principal: str) -> Probe:
    return Probe(f"/admin/products/{world.sku}", {"title": f"Probe by {principal}"})


async def count_stock(world: World, principal: str) -> Probe:
    return Probe(f"/admin/stock/{world.sku}", {"on_hand": 100})


def item_in_both_carts(key: str, body: Any = None) -> Build:
    """A SKU of its own in A's and B's carts, so that each may change or remove their own line."""

    async def build(world: World, principal: str) -> Probe:
        async def make() -> str:
            sku = await world.kassa.product(on_hand=10)
            for customer in (world.a, world.b):
                await customer.cart_with((sku, 1))
            return sku

        return Probe(f"/cart/items/{await world.once(key, make)}", body)

    return build


def new_promo_body() -> dict[str, Any]:
    return {"code": f"M{uuid.uuid4().hex[:12]}", "kind": "percent", "value": 5}


async def new_promo(world: World, principal: str) -> Probe:
    return Probe("/admin/promo-codes", new_promo_body())


async def world_promo(world: World) -> str:
    async def make() -> str:
        async with world.admin.http() as http:
            created = await http.post("/admin/promo-codes", json=new_promo_body())
        assert created.status_code == 201, created.text
        return created.json()["code"]

    return await world.once("promo", make)


async def apply_promo(world: World, principal: str) -> Probe:
    return Probe("/cart/promo", {"code": await world_promo(world)})


async def remove_promo(world: World, principal: str) -> Probe:
    """Each customer removes the promo code from their own cart, put there first."""
    customer = {CUSTOMER_A: world.a, CUSTOMER_B: world.b}.get(principal)
    if customer is not None:
        await customer.cart_with((world.sku, 1))
        async with customer.http() as http:
            applied = await http.post("/cart/promo", json={"code": await world_promo(world)})
        assert applied.status_code == 200, applied.text
    return Probe("/cart/promo")


async def checkout_a_cart(world: World, principal: str) -> Probe:
    owner, cart = await world.once("checkout", world.shopper_with_cart)
    return Probe("/checkout", {"cart_id": cart["id"], "payment_method": CARD}, owner)


def a_order(path: str, key: str, body: Any = None) -> Build:
    """A's order waiting for payment, one per `key`: shared by the callers of one route."""

    async def build(world: World, principal: str) -> Probe:
        owner, order_id = await world.once(key, world.order_waiting_for_payment)
        return Probe(path.format(order_id=order_id), body, owner)

    return build


async def staff_cancel(world: World, principal: str) -> Probe:
    # Support and admin each cancel an order of their own, which the other has not cancelled first.
    key = f"cancelled by {principal}" if principal in (SUPPORT, ADMIN) else "read"
    owner, order_id = await world.once(key, world.order_waiting_for_payment)
    return Probe(f"/admin/orders/{order_id}/cancel", owner=owner)


async def refund(world: World, principal: str) -> Probe:
    return Probe(
        f"/admin/orders/{uuid.uuid4()}/refund", {}, headers={"Idempotency-Key": uuid.uuid4().hex}
    )


async def change_a(world: World, principal: str) -> Probe:
    return Probe(f"/admin/users/{world.a.user.id}", {"role": "customer"})


Row = tuple[int, int, int, int, int]  # anonymous, A, B, support, admin


def everyone(status: int) -> Row:
    return (status, status, status, status, status)


def signed_in(status: int) -> Row:
    return (401, status, status, status, status)


def shoppers(status: int) -> Row:
    return (401, status, status, 403, 403)


def owner(status: int) -> Row:
    return (401, status, 404, 403, 403)


STAFF: Row = (401, 403, 403, 200, 200)
ADMIN_ONLY: Row = (401, 403, 403, 403, 200)

ROUTES: dict[tuple[str, str], tuple[Build, Row]] = {
    ("GET", "/openapi.json"): (fixed("/openapi.json"), everyone(200)),
    ("GET", "/docs"): (fixed("/docs"), everyone(200)),
    ("GET", "/docs/oauth2-redirect"): (fixed("/docs/oauth2-redirect"), everyone(200)),
    ("GET", "/redoc"): (fixed("/redoc"), everyone(200)),
    ("GET", "/healthz"): (fixed("/healthz"), everyone(200)),
    ("GET", "/readyz"): (fixed("/readyz"), everyone(200)),
    # For Prometheus on the inside network; the proxy in front keeps it from the internet.
    ("GET", "/metrics"): (fixed("/metrics"), everyone(200)),
    ("POST", "/auth/register"): (register, everyone(201)),
    ("POST", "/auth/login"): (login, everyone(200)),
    ("POST", "/auth/refresh"): (with_refresh_token("/auth/refresh"), everyone(200)),
    ("POST", "/auth/logout"): (with_refresh_token("/auth/logout"), everyone(204)),
    ("GET", "/me"): (fixed("/me"), signed_in(200)),
    ("PATCH", "/me"): (fixed("/me", {"display_name": "Probe"}), signed_in(200)),
    ("GET", "/me/addresses"): (fixed("/me/addresses"), shoppers(200)),
    ("POST", "/me/addresses"): (fixed("/me/addresses", ADDRESS), shoppers(201)),
    ("DELETE", "/me/addresses/{address_id}"): (a_address, owner(204)),
    ("GET", "/"): (fixed("/"), everyone(200)),
    ("GET", "/storefront/settings"): (fixed("/storefront/settings"), everyone(200)),
    ("GET", "/catalog/products"): (fixed("/catalog/products"), everyone(200)),
    ("GET", "/catalog/products/{sku}"): (product, everyone(200)),
    ("GET", "/catalog/categories"): (fixed("/catalog/categories"), everyone(200)),
    ("GET", "/cart"): (fixed("/cart"), shoppers(200)),
    ("POST", "/cart/items"): (add_item, shoppers(200)),
    ("PATCH", "/cart/items/{sku}"): (item_in_both_carts("change", {"quantity": 2}), shoppers(200)),
    ("DELETE", "/cart/items/{sku}"): (item_in_both_carts("remove"), shoppers(200)),
    ("POST", "/cart/promo"): (apply_promo, shoppers(200)),
    ("DELETE", "/cart/promo"): (remove_promo, shoppers(200)),
    ("GET", "/me/loyalty"): (fixed("/me/loyalty"), shoppers(200)),
    ("POST", "/checkout"): (checkout_a_cart, owner(201)),
    ("GET", "/checkout/return"): (fixed("/checkout/return"), everyone(303)),
    ("GET", "/orders"): (fixed("/orders"), shoppers(200)),
    ("GET", "/orders/{order_id}"): (a_order("/orders/{order_id}", "read"), owner(200)),
    ("POST", "/orders/{order_id}/pay"): (
        a_order("/orders/{order_id}/pay", "pay", {"payment_method": CARD_3DS}),
        owner(200),
    ),
    ("POST", "/orders/{order_id}/cancel"): (
        a_order("/orders/{order_id}/cancel", "cancel"),
        owner(200),
    ),
    # Signed by the acquirer, not by a login: an unsigned event is refused for everyone alike.
    ("POST", "/webhooks/{provider_name}"): (fixed("/webhooks/sandbox", {}), everyone(400)),
    ("PUT", "/admin/stock/{sku}"): (count_stock, ADMIN_ONLY),
    ("POST", "/admin/products"): (new_product, (401, 403, 403, 403, 201)),
    ("PATCH", "/admin/products/{sku}"): (change_product, ADMIN_ONLY),
    # An order that does not exist: past the permission, the admin is told so.
    ("POST", "/admin/orders/{order_id}/refund"): (refund, (401, 403, 403, 403, 404)),
    ("GET", "/admin/ledger"): (fixed("/admin/ledger"), ADMIN_ONLY),
    ("GET", "/admin/orders"): (fixed("/admin/orders"), STAFF),
    ("GET", "/admin/orders/{order_id}"): (a_order("/admin/orders/{order_id}", "read"), STAFF),
    ("POST", "/admin/orders/{order_id}/cancel"): (staff_cancel, STAFF),
    ("POST", "/admin/promo-codes"): (new_promo, (401, 403, 403, 403, 201)),
    ("GET", "/admin/promo-codes"): (fixed("/admin/promo-codes"), ADMIN_ONLY),
    ("GET", "/admin/users"): (fixed("/admin/users"), ADMIN_ONLY),
    ("PATCH", "/admin/users/{user_id}"): (change_a, ADMIN_ONLY),
}


def test_every_route_has_a_row(kassa: Kassa) -> None:
    routes = {
        (method, route.path)
        for route in iter_route_contexts(create_gateway(kassa.settings).routes)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routes - set(ROUTES) == set(), "routes without a row in ROUTES: say who may call them"
    assert set(ROUTES) - routes == set(), "rows in ROUTES for routes that are gone"


@pytest.fixture(scope="module")
async def world(kassa: Kassa) -> World:
    a, b = await kassa.customer(), await kassa.customer()
    support, admin = await kassa.account("support"), await kassa.account("admin")
    return World(kassa, a, b, support, admin, await kassa.product(on_hand=100))


@pytest.mark.parametrize("route", list(ROUTES), ids=[f"{method} {path}" for method, path in ROUTES])
async def test_route_answers_each_caller_as_its_row_says(
    world: World, route: tuple[str, str]
) -> None:
    method = route[0]
    build, expected = ROUTES[route]
    answers = {}
    for principal in ASKING_ORDER:
        probe = await build(world, principal)
        token = world.token(principal, probe)
        async with world.kassa.http(token) as http:
            response = await http.request(
                method, probe.path, json=probe.body, headers=probe.headers
            )
        answers[principal] = response.status_code
        _check_refusal(principal, response)
    assert answers == dict(zip(COLUMNS, expected, strict=True))


def _check_refusal(principal: str, response: httpx.Response) -> None:
    """A refusal says why: not signed in, not permitted, or (to a stranger) no such thing."""
    if response.status_code == 401 and principal == ANONYMOUS:
        assert response.json()["code"] == "not_authenticated", response.text
    elif response.status_code == 403:
        assert response.json()["code"] == "not_permitted", response.text
    elif response.status_code == 404 and principal == CUSTOMER_B:
        assert response.json()["code"].endswith("_not_found"), response.text
