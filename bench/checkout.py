"""`make bench`: what Pay Now costs, measured on the real parts started in this process.

The parts are the tests' own (tests/conftest.py's fixtures, run here outside pytest): embedded
PostgreSQL, the Temporal dev server, the sandbox acquirer, the gateway and a worker, nothing
mocked. Every figure is the median of --repeat runs and comes with a baseline measured in the
same run: a plain authenticated GET /cart for Pay Now, the bare conditional UPDATE on one hot row
for the flash sale. The load is made in the event loop that the gateway and the worker serve it
from, so on a small machine the figures are a floor for separate processes, not a ceiling.

    python -m bench.checkout [--checkouts 200] [--concurrency 8] [--buyers 500] [--units 100] [--repeat 3]

Results: a table on stdout, a markdown table for the README, and bench/results/latest.json.
"""

import argparse
import asyncio
import inspect
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg

from activities.inventory import StockLine
from tests import conftest
from tests.conftest import Kassa
from tests.flow import CARD, CARD_3DS
from tests.test_flash_sale import _buyers
from tests.test_inventory import _orders, _reserve
from workflows.checkout import checkout_workflow_id

RESULTS = Path(__file__).parent / "results"
# One unit of the hot SKU held the way inventory.reserve holds it, as a statement of its own.
HOLD_ONE = "UPDATE stock SET reserved = reserved + 1 WHERE sku = %s AND on_hand - reserved >= 1"
UPDATE_CONNECTIONS = 20  # as many as the gateway's engine keeps
SETUP_CONCURRENCY = 32
PLENTY = 1_000_000


# --- the parts, started as the tests start them -------------------------------------------------

@asynccontextmanager
async def fixture(definition: Any, *args: Any) -> AsyncIterator[Any]:
    """One of tests/conftest.py's fixtures, set up and torn down the way pytest does it: the
    teardown runs whatever happened in between (the fixtures have no try/finally of their own)."""
    steps = definition.__wrapped__(*args)
    if inspect.isasyncgen(steps):
        value = await anext(steps)
        try:
            yield value
        finally:
            with suppress(StopAsyncIteration):
                await anext(steps)
    else:
        value = next(steps)
        try:
            yield value
        finally:
            with suppress(StopIteration):
                next(steps)


@asynccontextmanager
async def running_kassa() -> AsyncIterator[Kassa]:
    """PostgreSQL in a short temp dir under /tmp, Temporal, the acquirer, the gateway and a
    worker; all stopped when the block ends (Temporal aborts the interpreter if left running)."""
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(fixture(conftest.data_dir))
        database_url = await stack.enter_async_context(fixture(conftest.database_url, data_dir))
        dev_server = await stack.enter_async_context(fixture(conftest.dev_server))
        yield await stack.enter_async_context(fixture(conftest.kassa, data_dir, database_url, dev_server))


# --- timing --------------------------------------------------------------------------------------

class Progress:
    """A line every quarter of the way: the run is long, and silence looks like a hang."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.step = max(1, total // 4)

    def tick(self) -> None:
        self.done += 1
        if self.label and (self.done % self.step == 0 or self.done == self.total):
            print(f"    {self.label}: {self.done}/{self.total}", flush=True)


@dataclass(frozen=True)
class Timed:
    latencies: list[float]  # seconds, one per request
    elapsed: float  # seconds from the first request to the last answer

    def per_second(self, count: int | None = None) -> float:
        return (len(self.latencies) if count is None else count) / self.elapsed

    def latency(self) -> dict[str, float]:
        cuts = statistics.quantiles([seconds * 1000 for seconds in self.latencies], n=100, method="inclusive")
        return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}

    def summary(self) -> dict[str, float]:
        return {**self.latency(), "per_second": self.per_second()}


async def timed(label: str, count: int, concurrency: int, request: Callable[[int], Awaitable[None]]) -> Timed:
    """`request(0)` … `request(count - 1)`, at most `concurrency` at a time, each one timed."""
    progress = Progress(label, count)
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(index: int) -> None:
        async with slots:
            began = time.perf_counter()
            await request(index)
            latencies.append(time.perf_counter() - began)
        progress.tick()

    began = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    return Timed(latencies, time.perf_counter() - began)


# --- customers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Buyer:
    headers: dict[str, str]
    cart: dict[str, Any]


async def buyers_with_carts(kassa: Kassa, http: httpx.AsyncClient, sku: str, count: int) -> list[Buyer]:
    """`count` new customers, each with one unit of `sku` in the cart (set-up, not measured)."""
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def with_cart(token: str) -> Buyer:
        headers = {"Authorization": f"Bearer {token}"}
        async with slots:
            response = await http.post("/cart/items", json={"sku": sku, "quantity": 1}, headers=headers)
        assert response.status_code == 200, response.text
        return Buyer(headers, response.json())

    return await asyncio.gather(*(with_cart(token) for token in await _buyers(kassa, count)))


async def pay_now(http: httpx.AsyncClient, buyer: Buyer, method: dict[str, str]) -> httpx.Response:
    # tests.flow.pay_now takes a client per customer; one shared client keeps its connections warm.
    return await http.post("/checkout", json={"cart_id": buyer.cart["id"], "payment_method": method}, headers=buyer.headers)


# --- the measurements ----------------------------------------------------------------------------

async def warm_up(kassa: Kassa, http: httpx.AsyncClient, concurrency: int) -> None:
    print("warming up… (connection pools, the workflow sandbox, the worker's cache)", flush=True)
    sku = await kassa.product(on_hand=PLENTY)
    buyers = await buyers_with_carts(kassa, http, sku, 4 * concurrency)
    slots = asyncio.Semaphore(concurrency)

    async def checkout(index: int, buyer: Buyer) -> None:
        async with slots:
            response = await pay_now(http, buyer, CARD if index % 2 else CARD_3DS)
        assert response.status_code == 201, response.text

    await asyncio.gather(*(checkout(index, buyer) for index, buyer in enumerate(buyers)))
    await update_race(kassa, 4 * UPDATE_CONNECTIONS, UPDATE_CONNECTIONS, quiet=True)


async def pay_now_run(kassa: Kassa, http: httpx.AsyncClient, checkouts: int, concurrency: int) -> dict[str, dict[str, float]]:
    """GET /cart, then Pay Now to the 3-D Secure page, then Pay Now to PAID: one request each
    for `checkouts` customers, `concurrency` at a time."""
    sku = await kassa.product(on_hand=PLENTY)
    browsing = await buyers_with_carts(kassa, http, sku, checkouts)
    paying = await buyers_with_carts(kassa, http, sku, checkouts)

    async def view_cart(index: int) -> None:
        response = await http.get("/cart", headers=browsing[index].headers)
        assert response.status_code == 200 and response.json()["items"], response.text

    async def to_payment_url(index: int) -> None:
        response = await pay_now(http, browsing[index], CARD_3DS)
        assert response.status_code == 201 and response.json()["payment_url"], response.text

    async def to_paid(index: int) -> None:
        response = await pay_now(http, paying[index], CARD)
        assert response.status_code == 201 and response.json()["status"] == "PAID", response.text

    get_cart = await timed("GET /cart", checkouts, concurrency, view_cart)
    three_ds = await timed("pay now → payment_url (tok_3ds)", checkouts, concurrency, to_payment_url)
    paid = await timed("pay now → PAID (tok_success)", checkouts, concurrency, to_paid)
    return {"get_cart": get_cart.summary(), "pay_now_3ds": three_ds.summary(), "pay_now_paid": paid.summary()}


async def flash_sale(kassa: Kassa, http: httpx.AsyncClient, buyers: int, units: int) -> dict[str, float]:
    """All `buyers` tap Pay Now (3-D Secure, so the holds stay) at once for `units` units."""
    sku = await kassa.product(on_hand=units)
    racers = await buyers_with_carts(kassa, http, sku, buyers)
    statuses = [0] * buyers

    async def race(index: int) -> None:
        response = await pay_now(http, racers[index], CARD_3DS)
        statuses[index] = response.status_code
        assert response.status_code == 201 or (
            response.status_code == 409 and response.json()["code"] == "out_of_stock"
        ), response.text

    sale = await timed("flash sale, pay now", buyers, buyers, race)
    stock = await kassa.stock(sku)  # asserts 0 <= reserved <= on_hand
    sold = statuses.count(201)
    assert sold == units and stock.reserved == units and stock.on_hand == units, (sold, stock)
    # The losers' workflows still hand their carts back after the 409: not on the next clock.
    await asyncio.gather(
        *(
            kassa.temporal.get_workflow_handle(checkout_workflow_id(racer.cart["id"], racer.cart["version"])).result()
            for racer, status in zip(racers, statuses)
            if status == 409
        )
    )
    return {
        "reservations_per_second": sale.per_second(units),
        "answers_per_second": sale.per_second(),
        "seconds": sale.elapsed,
        **sale.latency(),
        "sold": sold,
        "oversold": max(0, sold - units),
    }


async def update_race(kassa: Kassa, racers: int, units: int, quiet: bool = False) -> dict[str, float]:
    """The ceiling: `racers` bare conditional UPDATEs on one hot row, over a pool of connections."""
    sku = await kassa.product(on_hand=units)
    assert kassa.settings.database_url
    connections = [
        await psycopg.AsyncConnection.connect(kassa.settings.database_url, autocommit=True)
        for _ in range(UPDATE_CONNECTIONS)
    ]
    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for connection in connections:
        pool.put_nowait(connection)
    held = 0

    async def racer(_: int) -> None:
        nonlocal held
        connection = await pool.get()
        try:
            cursor = await connection.execute(HOLD_ONE, (sku,))
        finally:
            pool.put_nowait(connection)
        held += cursor.rowcount

    try:
        race = await timed("" if quiet else "conditional UPDATE", racers, racers, racer)
    finally:
        for connection in connections:
            await connection.close()
    stock = await kassa.stock(sku)
    assert held == units and stock.reserved == units, (held, stock)
    return {"updates_per_second": race.per_second(), "reservations_per_second": race.per_second(units), "seconds": race.elapsed}


async def reserve_race(kassa: Kassa, racers: int, units: int) -> dict[str, float]:
    """inventory.reserve alone: one transaction per order, as the reserve_stock activity runs it."""
    sku = await kassa.product(on_hand=units)
    order_ids = await _orders(kassa, racers)
    held: list[bool] = []

    async def racer(index: int) -> None:
        held.append(await _reserve(kassa, order_ids[index], [StockLine(sku, 1)]))

    race = await timed("inventory.reserve()", racers, racers, racer)
    stock = await kassa.stock(sku)
    assert sum(held) == units and stock.reserved == units, (sum(held), stock)
    return {"calls_per_second": race.per_second(), "reservations_per_second": race.per_second(units), "seconds": race.elapsed}


async def measure(args: argparse.Namespace) -> tuple[list[dict[str, dict[str, float]]], str]:
    print("starting PostgreSQL, Temporal, the acquirer, the gateway and a worker…", flush=True)
    runs = []
    async with running_kassa() as kassa:
        async with await psycopg.AsyncConnection.connect(kassa.settings.database_url or "") as connection:
            postgres = str((await (await connection.execute("SHOW server_version")).fetchone() or ("?",))[0])
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=kassa.api_url, timeout=120, limits=limits) as http:
            await warm_up(kassa, http, args.concurrency)
            for run in range(1, args.repeat + 1):
                print(f"run {run}/{args.repeat}", flush=True)
                figures = await pay_now_run(kassa, http, args.checkouts, args.concurrency)
                figures["flash_sale"] = await flash_sale(kassa, http, args.buyers, args.units)
                figures["conditional_update"] = await update_race(kassa, args.buyers, args.units)
                figures["reserve_function"] = await reserve_race(kassa, args.buyers, args.units)
                runs.append(figures)
        print("stopping everything…", flush=True)
    return runs, postgres


# --- the report ----------------------------------------------------------------------------------

def medians(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {name: {key: statistics.median(run[name][key] for run in runs) for key in runs[0][name]} for name in runs[0]}


def ratios(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    cart, three_ds, paid = figures["get_cart"], figures["pay_now_3ds"], figures["pay_now_paid"]
    ceiling = figures["conditional_update"]["reservations_per_second"]
    return {
        "pay_now_3ds_p50_over_get_cart_p50": three_ds["p50_ms"] / cart["p50_ms"],
        "pay_now_3ds_p99_over_get_cart_p99": three_ds["p99_ms"] / cart["p99_ms"],
        "pay_now_paid_p50_over_get_cart_p50": paid["p50_ms"] / cart["p50_ms"],
        "get_cart_per_second_over_pay_now_3ds_per_second": cart["per_second"] / three_ds["per_second"],
        "flash_sale_over_conditional_update": figures["flash_sale"]["reservations_per_second"] / ceiling,
        "reserve_function_over_conditional_update": figures["reserve_function"]["reservations_per_second"] / ceiling,
    }


def machine(postgres: str) -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    temporal = subprocess.run([conftest.binary("temporal"), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres,
        "temporal": temporal,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def rate(value: float) -> str:
    return f"{value:,.1f}/s" if value < 100 else f"{value:,.0f}/s"


def table(result: dict[str, Any]) -> str:
    figures, ratio, parameters = result["medians"], result["ratios"], result["parameters"]
    sale = figures["flash_sale"]
    rows = [
        (f"Pay Now, {parameters['checkouts']} customers, {parameters['concurrency']} at a time", "p50", "p95", "p99", "per second"),
        *(
            (f"  {label}", ms(figures[name]["p50_ms"]), ms(figures[name]["p95_ms"]), ms(figures[name]["p99_ms"]), rate(figures[name]["per_second"]))
            for name, label in (
                ("get_cart", "GET /cart (baseline)"),
                ("pay_now_3ds", "POST /checkout → payment_url (tok_3ds)"),
                ("pay_now_paid", "POST /checkout → PAID (tok_success)"),
            )
        ),
        ("", "", "", "", ""),
        (f"Flash sale, {parameters['buyers']} buyers for {parameters['units']} units", "reservations", "answers", "", "÷ UPDATE"),
        (
            f"  POST /checkout (tok_3ds): {sale['sold']:.0f} sold, {sale['oversold']:.0f} oversold",
            rate(sale["reservations_per_second"]), rate(sale["answers_per_second"]), "",
            f"{ratio['flash_sale_over_conditional_update']:.3f}",
        ),
        (
            "  inventory.reserve(), a transaction each",
            rate(figures["reserve_function"]["reservations_per_second"]), rate(figures["reserve_function"]["calls_per_second"]), "",
            f"{ratio['reserve_function_over_conditional_update']:.3f}",
        ),
        (
            f"  conditional UPDATE, {UPDATE_CONNECTIONS} connections (ceiling)",
            rate(figures["conditional_update"]["reservations_per_second"]), rate(figures["conditional_update"]["updates_per_second"]), "", "1",
        ),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))]).rstrip()
        for row in rows
    ]
    return "\n".join(
        [
            *lines,
            "",
            f"Pay Now p50 is {ratio['pay_now_3ds_p50_over_get_cart_p50']:.1f}× a GET /cart's "
            f"(p99 {ratio['pay_now_3ds_p99_over_get_cart_p99']:.1f}×); to PAID {ratio['pay_now_paid_p50_over_get_cart_p50']:.1f}×.",
            f"Medians of {parameters['repeat']} runs; {_machine_line(result)}.",
        ]
    )


def _machine_line(result: dict[str, Any]) -> str:
    box = result["machine"]
    return f"{box['cores']} cores ({box['cpu']}), Python {box['python']}, PostgreSQL {box['postgresql']}, {result['date'][:10]}"


def markdown(result: dict[str, Any]) -> str:
    figures, ratio, parameters = result["medians"], result["ratios"], result["parameters"]
    sale, reserve, update = figures["flash_sale"], figures["reserve_function"], figures["conditional_update"]

    def latency_row(name: str, label: str, against: str) -> str:
        row = figures[name]
        return f"| {label} | {ms(row['p50_ms'])} | {ms(row['p95_ms'])} | {ms(row['p99_ms'])} | {rate(row['per_second'])} | {against} |"

    return "\n".join(
        [
            f"Pay Now, {parameters['checkouts']} customers, {parameters['concurrency']} at a time:",
            "",
            "| | p50 | p95 | p99 | per second | p50 ÷ GET /cart |",
            "|---|---:|---:|---:|---:|---:|",
            latency_row("get_cart", "GET /cart, authenticated (baseline)", "1"),
            latency_row("pay_now_3ds", "POST /checkout → `payment_url` (3-D Secure)", f"{ratio['pay_now_3ds_p50_over_get_cart_p50']:.1f}"),
            latency_row("pay_now_paid", "POST /checkout → `PAID` (frictionless card)", f"{ratio['pay_now_paid_p50_over_get_cart_p50']:.1f}"),
            "",
            f"Flash sale, {parameters['buyers']} buyers for {parameters['units']} units of one SKU "
            f"({sale['sold']:.0f} sold, {sale['oversold']:.0f} oversold in every run):",
            "",
            "| | reservations per second | ÷ conditional UPDATE |",
            "|---|---:|---:|",
            f"| POST /checkout (the workflow) | {rate(sale['reservations_per_second'])} | {ratio['flash_sale_over_conditional_update']:.3f} |",
            f"| `inventory.reserve()` alone | {rate(reserve['reservations_per_second'])} | {ratio['reserve_function_over_conditional_update']:.3f} |",
            f"| conditional UPDATE on the hot row (ceiling) | {rate(update['reservations_per_second'])} | 1 |",
            "",
            f"Medians of {parameters['repeat']} runs of `make bench`; {_machine_line(result)}; everything in one "
            "process (gateway, worker, acquirer and the load) plus PostgreSQL and the Temporal dev server.",
        ]
    )


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=positive, default=200, help="Pay Now customers per run (default 200)")
    parser.add_argument("--concurrency", type=positive, default=8, help="Pay Now customers at a time (default 8)")
    parser.add_argument("--buyers", type=positive, default=500, help="flash-sale buyers (default 500)")
    parser.add_argument("--units", type=positive, default=100, help="flash-sale units of the one SKU (default 100)")
    parser.add_argument("--repeat", type=positive, default=3, help="runs of each measurement; medians reported (default 3)")
    args = parser.parse_args()
    if args.units > args.buyers:
        parser.error("--units must not exceed --buyers: the sale has to sell out")

    began = time.monotonic()
    runs, postgres = asyncio.run(measure(args))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(postgres),
        "parameters": vars(args),
        "medians": medians(runs),
        "runs": runs,
    }
    result["ratios"] = ratios(result["medians"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {time.monotonic() - began:.0f} s\n")
    print(table(result))
    print(f"\nwritten to {(RESULTS / 'latest.json').relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS / 'latest.json'}")
    print("\nFor the README:\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
