"""Crash tests: kill parts of Kassa in the middle of checkouts and check its promises after.

The stack runs as production does, in separate processes (tests/stack.py); every test ends with
the invariant checker (tests/invariants.py) over the stack's whole database and the acquirer's
own records. The quick versions run in `make test`; the long ones (100 checkouts in flight,
several kills) are marked `chaos` and run with `make chaos`. Each is bounded by DEADLINE.
"""

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from cli.embedded import restart_postgres
from tests.crash_load import Shopper, check_out_all, final_states, shoppers_with_carts
from tests.invariants import check_connection
from tests.stack import Stack

DEADLINE = 120  # seconds for the load to get its answers, and again for the orders to end
QUICK = pytest.param(24, 1, id="quick")
LONG = pytest.param(100, 3, id="long", marks=pytest.mark.chaos)
InFlight = Callable[[], Awaitable[None]]  # returns once Pay Nows are in flight: when to strike
Chaos = Callable[[InFlight], Awaitable[None]]  # what happens to the stack under the load


@pytest.fixture(scope="module")
async def stack(data_dir: Path, database_url: str) -> AsyncIterator[Stack]:
    stack = await Stack.start(data_dir / f"stack-{uuid.uuid4().hex[:6]}", database_url)
    try:
        yield stack
    finally:
        await stack.stop()


async def shop_while(stack: Stack, sku: str, buyers: int, chaos: Chaos) -> list[Shopper]:
    """`buyers` each put one `sku` in a cart and tap Pay Now while `chaos(in_flight)` runs."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        shoppers = await shoppers_with_carts(stack, http, sku, buyers)
    load = asyncio.create_task(check_out_all(stack, shoppers, DEADLINE))
    try:
        await chaos(lambda: mid_flight(shoppers, load))
    finally:
        await load
    return shoppers


async def run_load(stack: Stack, buyers: int, units: int, chaos: Chaos) -> list[Shopper]:
    """`buyers` race for `units` of a new SKU while `chaos()` runs; then every order is sold out
    right (exactly `units` PAID, the others refused) and the invariants hold."""
    sku = await stack.product(on_hand=units)
    shoppers = await shop_while(stack, sku, buyers, chaos)
    states = await final_states(stack, shoppers, DEADLINE)
    losers = [shopper.answer for shopper in shoppers].count("out_of_stock")
    assert (states.get("PAID", 0), losers) == (min(buyers, units), max(0, buyers - units)), (
        states,
        losers,
    )
    assert set(states) <= {"PAID", "CANCELLED"} and states.get("CANCELLED", 0) <= losers, states
    await stack.invariants({sku: units})
    return shoppers


async def mid_flight(shoppers: list[Shopper], load: asyncio.Task[None]) -> None:
    """Returns once the first Pay Now is answered while others are still in flight: when to
    crash."""
    while not any(shopper.order_id for shopper in shoppers):
        assert not load.done(), "the checkouts ended without an order"
        await asyncio.sleep(0.02)
    assert not load.done(), "the checkouts ended before the crash: it would test nothing"


def live_workers(stack: Stack) -> list[str]:
    return [
        name
        for name, part in stack.parts.items()
        if name.startswith("worker") and part.process.poll() is None
    ]


@pytest.mark.parametrize(("buyers", "kills"), [QUICK, LONG])
async def test_worker_killed_mid_checkout_loses_nothing(
    stack: Stack, buyers: int, kills: int
) -> None:
    async def kill_workers(in_flight: InFlight) -> None:
        for kill in range(kills):
            await (in_flight() if kill == 0 else asyncio.sleep(1.5))
            for name in live_workers(stack):
                await stack.restart_worker(name)

    await run_load(stack, buyers, buyers * 3 // 4, kill_workers)


@pytest.mark.parametrize(
    "buyers", [pytest.param(24, id="quick"), pytest.param(100, id="long", marks=pytest.mark.chaos)]
)
async def test_one_of_two_workers_killed_the_other_finishes(stack: Stack, buyers: int) -> None:
    spare = f"worker-spare-{uuid.uuid4().hex[:4]}"
    stack.spawn(spare, "worker")
    await stack.worker_ready(spare)
    victims = [name for name in live_workers(stack) if name != spare]

    async def kill_the_first(in_flight: InFlight) -> None:
        await in_flight()
        for name in victims:
            stack.parts[name].kill()

    try:
        await run_load(stack, buyers, buyers, kill_the_first)
    finally:
        for name in victims:
            stack.spawn(name, "worker")
        await asyncio.gather(*(stack.worker_ready(name) for name in victims))
        stack.parts.pop(spare).stop()


@pytest.mark.parametrize(("buyers", "restarts"), [QUICK, LONG])
async def test_temporal_and_postgres_restarted_under_load(
    stack: Stack, data_dir: Path, buyers: int, restarts: int
) -> None:
    async def restart_both(in_flight: InFlight) -> None:
        for restart in range(restarts):
            await (in_flight() if restart == 0 else asyncio.sleep(1.5))
            await asyncio.to_thread(restart_postgres, data_dir)
            await stack.restart_temporal()

    await run_load(stack, buyers, buyers * 3 // 4, restart_both)


@pytest.mark.parametrize(("buyers", "restarts"), [QUICK, LONG])
async def test_api_restarted_mid_pay_now_a_retried_tap_gets_the_same_order(
    stack: Stack, buyers: int, restarts: int
) -> None:
    async def restart_api(in_flight: InFlight) -> None:
        for restart in range(restarts):
            await (in_flight() if restart == 0 else asyncio.sleep(0.3))
            stack.parts["api"].kill()
            stack.spawn("api", "api")
            await stack.answers("api", stack.api_url)

    sku = await stack.product(on_hand=buyers)
    shoppers = await shop_while(stack, sku, buyers, restart_api)
    assert any(shopper.taps > 1 for shopper in shoppers), (
        "no tap was cut by the restart: the test proved nothing"
    )
    states = await final_states(
        stack, shoppers, DEADLINE
    )  # also: every answered order id is its cart's one order
    assert states == {"PAID": buyers}, states
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        for shopper in shoppers:
            again = await http.post(
                "/checkout",
                json={"cart_id": shopper.cart["id"], "payment_method": shopper.method},
                headers=shopper.headers,
            )
            assert again.json().get("order_id") == shopper.order_id, again.text
    await stack.invariants({sku: buyers})


async def test_the_invariant_checker_sees_each_kind_of_violation(
    stack: Stack, tmp_path: Path
) -> None:
    """Corrupt a copy of a settled state (a transaction rolled back after, a copy of the bank's
    file) and the checker names each corruption; the real state passes."""
    shoppers = await run_load(stack, 3, 2, _nothing)
    sku = shoppers[0].cart["items"][0]["sku"]
    stocked = {sku: 2}
    async with stack.engine.connect() as connection:  # one transaction, rolled back at the end
        paid = (
            await connection.execute(
                text(
                    "SELECT id::text, total FROM orders WHERE status = 'PAID'"
                    " AND id IN (SELECT order_id FROM order_lines WHERE sku = :sku)"
                ),
                {"sku": sku},
            )
        ).first()
        assert paid is not None
        bank = tmp_path / "acquirer-copy.sqlite3"
        with (
            sqlite3.connect(f"file:{stack.acquirer_db}?mode=ro", uri=True) as books,
            sqlite3.connect(bank) as copy,
        ):
            books.backup(copy)  # the live file is in WAL mode: a file copy would miss writes
        with sqlite3.connect(bank) as copy:  # a second charge of the same order
            copy.execute(
                "INSERT INTO payment_intents SELECT 'pi_double', status, amount, currency,"
                " merchant_reference, return_url, last4, decline_code, authentication_url, created"
                " FROM payment_intents"
                " WHERE merchant_reference = ? AND status = 'succeeded'",
                (paid.id,),
            )
        await connection.execute(
            text(
                "UPDATE stock SET on_hand = on_hand + 5, reserved = reserved + 1 WHERE sku = :sku"
            ),
            {"sku": sku},
        )
        await connection.execute(
            text("UPDATE orders SET status = 'PENDING_PAYMENT' WHERE id = CAST(:id AS uuid)"),
            {"id": paid.id},
        )
        await connection.execute(
            text(
                "INSERT INTO ledger_postings (transaction_id, account, amount, currency)"
                " SELECT id, 'acquirer_receivable', 1, 'RUB' FROM ledger_transactions"
                " WHERE order_id = CAST(:id AS uuid)"
            ),
            {"id": paid.id},
        )
        await connection.execute(
            text(  # a claim the gateway took and made no order of
                "INSERT INTO reservations (id, status, hold_expires_at, created_at, updated_at)"
                " VALUES (gen_random_uuid(), 'held', now(), now(), now())"
            )
        )
        report = await check_connection(connection, bank, stocked)
        await connection.rollback()  # the corruption was never real
    found = "\n".join(report.violations)
    for expected in (
        f"stock {sku}: reserved 1 but the held reservations add up to 0",
        f"stock {sku}: on_hand 5, expected 2 stocked - 2 sold",
        f"order {paid.id}: still PENDING_PAYMENT",
        "postings sum to 1 RUB, not 0",
        f"order {paid.id}: charged 2 times at the bank",
        f"order {paid.id}: PENDING_PAYMENT but the bank kept",
        "claims holding stock for no order: 1",
    ):
        assert expected in found, f"{expected!r} not reported in:\n{found}"
    await stack.invariants(stocked)


async def _nothing(in_flight: InFlight) -> None:
    pass
