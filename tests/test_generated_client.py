"""The OpenAPI document is a contract a real client can use: a Python client generated from the
live /openapi.json (openapi-python-client, at test time: no generated code is kept) runs the
README's Pay Now story against the real stack."""

import asyncio
import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import PASSWORD, Kassa

PACKAGE = "kassa_client"
PRICE = 129_900


@pytest.fixture
def generated_client(tmp_path: Path) -> Iterator[Path]:
    """Where the client goes; its modules are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


async def generate(kassa: Kassa, where: Path) -> None:
    async with kassa.http() as http:
        document = (await http.get("/openapi.json")).raise_for_status().json()
    (where / "openapi.json").write_text(json.dumps(document))
    # No post hooks: the generated code is imported, not read, and needs no formatting.
    (where / "generator.json").write_text(json.dumps({"post_hooks": []}))
    generator = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "openapi-python-client"),
        "generate",
        "--path",
        str(where / "openapi.json"),
        "--config",
        str(where / "generator.json"),
        "--output-path",
        str(where / PACKAGE),
        "--meta",
        "none",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await generator.communicate()
    assert generator.returncode == 0, output.decode()
    # A warning means a piece of the document the generator could not turn into code.
    assert b"Warning" not in output, output.decode()


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def call(name: str) -> Any:
    """The generated call for an operation id: `call("checkout_pay_now")`."""
    tag = name.split("_")[0]
    return module(f"api.{tag}.{name}").asyncio_detailed


async def test_a_generated_client_pays_now(kassa: Kassa, generated_client: Path) -> None:
    await generate(kassa, generated_client)
    client, models = module("client"), module("models")
    sku = await kassa.product(on_hand=5, price=PRICE)
    async with client.Client(base_url=kassa.api_url) as anonymous:
        token = await sign_up(models, anonymous)
        async with client.AuthenticatedClient(base_url=kassa.api_url, token=token) as customer:
            await pay_now_story(models, anonymous, customer, sku)


async def sign_up(models: ModuleType, anonymous: Any) -> str:
    """A new account, logged in: its access token."""
    email = f"client-{uuid.uuid4().hex[:12]}@example.com"
    account = models.NewAccount(email=email, password=PASSWORD)
    registered = await call("auth_register")(client=anonymous, body=account)
    assert registered.status_code == 201, registered.content
    credentials = models.Credentials(email=email, password=PASSWORD)
    login = await call("auth_login")(client=anonymous, body=credentials)
    assert isinstance(login.parsed, models.TokenPair), login.content
    token: str = login.parsed.access_token
    return token


async def pay_now_story(models: ModuleType, anonymous: Any, customer: Any, sku: str) -> None:
    """The README's Pay Now, as a client app does it: find the product, put two in the cart, pay
    with the sandbox's frictionless card, see the order PAID."""

    found = await call("catalog_search_products")(client=anonymous, q=sku, in_stock=True)
    assert [product.sku for product in found.parsed.items] == [sku], found.content
    cart = (
        await call("cart_add_item")(client=customer, body=models.NewItem(sku=sku, quantity=2))
    ).parsed
    assert isinstance(cart, models.CartView) and cart.total == 2 * PRICE, cart

    method = models.PaymentMethodIn(type_="card", token="tok_success")
    answer = await call("checkout_pay_now")(
        client=customer, body=models.CheckoutRequest(cart_id=cart.id, payment_method=method)
    )
    assert isinstance(answer.parsed, models.PaymentAnswer), answer.content
    order_id = answer.parsed.order_id

    async with asyncio.timeout(30):
        while True:
            order = (await call("orders_get_order")(client=customer, order_id=order_id)).parsed
            assert isinstance(order, models.OrderView), order
            if order.status == models.OrderStatus.PAID:
                break
            await asyncio.sleep(0.2)
    assert order.total == 2 * PRICE

    refused = await call("cart_add_item")(
        client=customer, body=models.NewItem(sku="NO-SUCH-SKU", quantity=1)
    )
    assert isinstance(refused.parsed, models.Problem), refused.content
    assert (refused.status_code, refused.parsed.code) == (404, "unknown_sku")
