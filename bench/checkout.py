"""`make bench`: what Pay Now costs, measured on the real parts started in this process.

The parts are the tests' own (tests/conftest.py's fixtures, run here outside pytest): embedded
PostgreSQL, the Temporal dev server, the sandbox acquirer, the gateway and a worker, nothing
mocked. Every figure is the median of --repeat runs and comes with a baseline measured in the
same run: a plain authenticated GET /cart for Pay Now, the bare conditional UPDATE on one hot row
for the flash sale. The load is made in the event loop that the gateway and the worker serve it
from, so on a small machine the figures are a floor for separate processes, not a ceiling.

    python -m bench.checkout [--checkouts 100] [--concurrency 8] [--buyers 200] [--units 40] [--repeat 3]

The defaults keep a run under five minutes on two cores: every checkout is a whole workflow, and
this one process runs them all (the flash sale's numbers are tests/test_flash_sale.py's).

Results: a table on stdout, a markdown table for the README, and bench/results/latest.json.
"""

import argparse
import asyncio
import inspect
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from temporalio.service import RPCError

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
# What the conditional-UPDATE ceiling depends on: each racer's statement is a commit of its own.
POSTGRES_SETTINGS = ("server_version", "fsync", "synchronous_commit", "shared_buffers")


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


@contextmanager
def server_logs_to(path: Path) -> Iterator[None]:
    """What the servers write straight to this process's stdout and stderr (the Temporal dev
    server's "Slow gRPC call" warnings, the SDK core's) goes to `path`: under load it is hundreds
    of lines that would bury the progress. Python's own output (progress, tracebacks) does not."""
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(1), os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    python = sys.stdout, sys.stderr
    # Closed in the finally below, once fds 1 and 2 are the terminal again.
    sys.stdout = open(terminal[0], "w", buffering=1, encoding=python[0].encoding, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = open(terminal[1], "w", buffering=1, encoding=python[1].encoding, errors="backslashreplace")  # noqa: SIM115
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(terminal[0], 1)
        os.dup2(terminal[1], 2)
        sys.stdout.close()
        sys.stderr.close()
        sys.stdout, sys.stderr = python


# --- timing --------------------------------------------------------------------------------------

class Progress:
    """A line every quarter of the way (none without a label): the run is long, and silence looks
    like a hang."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.step = max(1, total // 4)
        self.began = time.perf_counter()

    def tick(self) -> None:
        self.done += 1
        if self.label and (self.done % self.step == 0 or self.done == self.total):
            print(f"    {self.label}: {self.done}/{self.total} ({time.perf_counter() - self.began:.1f} s)", flush=True)


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
    """`request(0)` … `request(count - 1)`, at most `concurrency` at a time, each one timed.

    A request once sent runs to its answer, even when another fails or the bench is stopped: one
    abandoned mid-flight keeps its handler running in the gateway, which then never stops (it
    waits for its handlers, and they for the worker that stopped before it)."""
    progress = Progress(label, count)
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    stopping = False

    async def one(index: int) -> None:
        async with slots:
            if stopping:
                return
            began = time.perf_counter()
            await request(index)
            latencies.append(time.perf_counter() - began)
        progress.tick()

    began = time.perf_counter()
    requests = asyncio.gather(*(one(index) for index in range(count)), return_exceptions=True)
    try:
        outcomes = await asyncio.shield(requests)
    except asyncio.CancelledError:
        stopping = True
        await requests
        raise
    elapsed = time.perf_counter() - began
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return Timed(latencies, elapsed)


# --- customers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Buyer:
    headers: dict[str, str]
    cart: dict[str, Any]

    @property
    def checkout_id(self) -> str:
        return checkout_workflow_id(self.cart["id"], self.cart["version"])


async def buyers_with_carts(kassa: Kassa, http: httpx.AsyncClient, sku: str, count: int) -> list[Buyer]:
    """`count` new customers, each with one unit of `sku` in the cart (set-up, not measured)."""
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def with_cart(token: str) -> Buyer:
        headers = {"Authorization": f"Bearer {token}"}
        async with slots:
            response = await http.post("/cart/items", json={"sku": sku, "quantity": 1}, headers=headers)
        assert response.status_code == 200, response.text
        return Buyer(headers, response.json())

    began = time.perf_counter()
    buyers = await asyncio.gather(*(with_cart(token) for token in await _buyers(kassa, count)))
    print(f"    set-up: {count} customers with a cart ({time.perf_counter() - began:.1f} s)", flush=True)
    return buyers


async def pay_now(http: httpx.AsyncClient, buyer: Buyer, method: dict[str, str]) -> httpx.Response:
    # tests.flow.pay_now takes a client per customer; one shared client keeps its connections warm.
    return await http.post("/checkout", json={"cart_id": buyer.cart["id"], "payment_method": method}, headers=buyer.headers)


async def end_checkouts(kassa: Kassa, buyers: list[Buyer]) -> None:
    """Terminate checkouts left waiting for 3-D Secure (set-up, not measured): each would ask the
    acquirer for its status on a backoff, in the background of every later measurement."""
    async def end(buyer: Buyer) -> None:
        with suppress(RPCError):  # it had finished already
            await kassa.temporal.get_workflow_handle(buyer.checkout_id).terminate(reason="bench: measured")

    await asyncio.gather(*(end(buyer) for buyer in buyers))


# --- the measurements ----------------------------------------------------------------------------

async def warm_up(kassa: Kassa, http: httpx.AsyncClient, concurrency: int) -> None:
    print("warming up… (connection pools, the workflow sandbox, the worker's cache)", flush=True)
    sku = await kassa.product(on_hand=PLENTY)
    buyers = await buyers_with_carts(kassa, http, sku, 4 * concurrency)

    async def checkout(index: int) -> None:
        response = await pay_now(http, buyers[index], CARD if index % 2 else CARD_3DS)
        assert response.status_code == 201, response.text

    await timed("", len(buyers), concurrency, checkout)
    await end_checkouts(kassa, buyers)
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
    await end_checkouts(kassa, browsing)
    paid = await timed("pay now → PAID (tok_success)", checkouts, concurrency, to_paid)
    return {"get_cart": get_cart.summary(), "pay_now_3ds": three_ds.summary(), "pay_now_paid": paid.summary()}


async def flash_sale(kassa: Kassa, http: httpx.AsyncClient, buyers: int, units: int) -> dict[str, float]:
    """All `buyers` tap Pay Now (3-D Secure, so the holds stay) at once for `units` units."""
    sku = await kassa.product(on_hand=units)
    racers = await buyers_with_carts(kassa, http, sku, buyers)
    codes = [""] * buyers

    async def race(index: int) -> None:
        response = await pay_now(http, racers[index], CARD_3DS)
        codes[index] = answer_code(response)
        assert codes[index] in ("held", "held, bank unanswered", "out_of_stock"), response.text

    sale = await timed("flash sale, pay now", buyers, buyers, race)
    stock = await kassa.stock(sku)  # asserts 0 <= reserved <= on_hand
    held = sum(code.startswith("held") for code in codes)
    assert held == units == stock.reserved == stock.on_hand and codes.count("out_of_stock") == buyers - units, (
        f"{held} holds answered, {codes.count('out_of_stock')} out of stock, stock {stock}"
    )
    # The losers' workflows hand their carts back after the 409, the winners' wait for 3-D Secure.
    await asyncio.gather(
        *(kassa.temporal.get_workflow_handle(racer.checkout_id).result() for racer, code in zip(racers, codes) if code == "out_of_stock")
    )
    await end_checkouts(kassa, [racer for racer, code in zip(racers, codes) if code != "out_of_stock"])
    return {
        "reservations_per_second": sale.per_second(units),
        "answers_per_second": sale.per_second(),
        "seconds": sale.elapsed,
        **sale.latency(),
        "held": held,
        "bank_unanswered": codes.count("held, bank unanswered"),
        "oversold": max(0, held - units),
    }


def answer_code(response: httpx.Response) -> str:
    """What a flash-sale buyer got: the hold and the bank's page (201); the hold, but the bank's
    answer came too late (503, the order waits for another try); or nothing left (409)."""
    if response.status_code == 201 and response.json()["payment_url"]:
        return "held"
    if response.status_code == 503 and response.json().get("order_status") == "PENDING_PAYMENT":
        return "held, bank unanswered"
    if response.status_code == 409:
        return str(response.json().get("code"))
    return f"HTTP {response.status_code}"


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


def stop_once(task: asyncio.Task[Any] | None) -> None:
    """Ctrl-C and SIGTERM cancel the bench once, and it unwinds, stopping all it started. Once:
    each uvicorn server catches the signal too and raises it again when it has stopped, and a
    second cancel would cut the teardown short (leaving Temporal or PostgreSQL running)."""
    assert task is not None
    signalled: list[int] = []

    def stop(signum: int) -> None:
        if not signalled:
            print("stopping (in-flight requests first)…", flush=True)
            task.cancel()
        signalled.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop, signum)


async def measure(args: argparse.Namespace) -> tuple[list[dict[str, dict[str, float]]], dict[str, str]]:
    stop_once(asyncio.current_task())
    print("starting PostgreSQL, Temporal, the acquirer, the gateway and a worker…", flush=True)
    runs = []
    async with running_kassa() as kassa:
        async with await psycopg.AsyncConnection.connect(kassa.settings.database_url or "") as connection:
            shown = [(await (await connection.execute(f"SHOW {name}")).fetchone() or ("?",))[0] for name in POSTGRES_SETTINGS]
            postgres = dict(zip(POSTGRES_SETTINGS, map(str, shown)))
        # Idle connections are dropped before uvicorn's own 5 s keep-alive ends: one reused just as
        # the server closes it fails with ReadError (httpx's default expiry is the same 5 s).
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=1)
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


def machine(postgres: dict[str, str]) -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    temporal = subprocess.run([conftest.binary("temporal"), "--version"], capture_output=True, text=True, check=False).stdout.strip()
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


def ratio_text(value: float) -> str:
    return f"{value:.2g}"


def seconds(milliseconds: float) -> str:
    return f"{milliseconds / 1000:.1f} s"


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
            "  POST /checkout (tok_3ds)",
            rate(sale["reservations_per_second"]), rate(sale["answers_per_second"]), "",
            ratio_text(ratio['flash_sale_over_conditional_update']),
        ),
        (
            "  inventory.reserve(), a transaction each",
            rate(figures["reserve_function"]["reservations_per_second"]), rate(figures["reserve_function"]["calls_per_second"]), "",
            ratio_text(ratio['reserve_function_over_conditional_update']),
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
            (
                f"Flash sale: exactly {parameters['units']} held, 0 oversold in each run; a buyer waited "
                f"{seconds(sale['p50_ms'])} for the answer (p50, p99 {seconds(sale['p99_ms'])})."
            ),
            *([_unanswered(result)] if _unanswered(result) else []),
            (
                f"Pay Now p50 is {ratio['pay_now_3ds_p50_over_get_cart_p50']:.1f}× a GET /cart's "
                f"(p99 {ratio['pay_now_3ds_p99_over_get_cart_p99']:.1f}×); to PAID {ratio['pay_now_paid_p50_over_get_cart_p50']:.1f}×."
            ),
            f"Medians of {parameters['repeat']} runs; {_machine_line(result)}.",
        ]
    )


def _unanswered(result: dict[str, Any]) -> str:
    """The winners whose hold was answered 503 (the acquirer call ran out of time), if any."""
    count, runs = result["totals"]["flash_sale_bank_unanswered"], result["parameters"]["repeat"]
    if not count:
        return ""
    holds = runs * result["parameters"]["units"]
    return (
        f"{count} of the {holds} holds over {runs} runs were answered 503 payment_unavailable: "
        "the call to the acquirer ran out of time in the burst, the hold stays for another try."
    )


def _machine_line(result: dict[str, Any]) -> str:
    box = result["machine"]
    return (
        f"{box['cores']} cores ({box['cpu']}), Python {box['python']}, PostgreSQL {box['postgresql']['server_version']}, "
        f"{result['date'][:10]}, load average {box['load_average_1min']['before']:.1f} before the run"
    )


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
            (
                f"Flash sale, {parameters['buyers']} buyers at once for {parameters['units']} units of one SKU: exactly "
                f"{parameters['units']} held and 0 oversold in each of {parameters['repeat']} runs; a buyer waited "
                f"{seconds(sale['p50_ms'])} for the answer (p50, p99 {seconds(sale['p99_ms'])})."
            ),
            "",
            "| | reservations per second | ÷ conditional UPDATE |",
            "|---|---:|---:|",
            f"| POST /checkout (the workflow) | {rate(sale['reservations_per_second'])} | {ratio_text(ratio['flash_sale_over_conditional_update'])} |",
            f"| `inventory.reserve()` alone | {rate(reserve['reservations_per_second'])} | {ratio_text(ratio['reserve_function_over_conditional_update'])} |",
            f"| conditional UPDATE on the hot row (ceiling) | {rate(update['reservations_per_second'])} | 1 |",
            "",
            *([_unanswered(result), ""] if _unanswered(result) else []),
            (
                f"Medians of {parameters['repeat']} runs of `make bench`; {_machine_line(result)}; everything in one "
                "process (gateway, worker, acquirer and the load) plus PostgreSQL and the Temporal dev server."
            ),
        ]
    )


def shown_path(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=positive, default=100, help="Pay Now customers per run (default 100)")
    parser.add_argument("--concurrency", type=positive, default=8, help="Pay Now customers at a time (default 8)")
    parser.add_argument("--buyers", type=positive, default=200, help="flash-sale buyers (default 200)")
    parser.add_argument("--units", type=positive, default=40, help="flash-sale units of the one SKU (default 40)")
    parser.add_argument("--repeat", type=positive, default=3, help="runs of each measurement; medians reported (default 3)")
    args = parser.parse_args()
    if args.units > args.buyers:
        parser.error("--units must not exceed --buyers: the sale has to sell out")

    # The flash sale's losers are out_of_stock refusals the workflow expects, but the SDK logs each
    # one with its traceback (hundreds a run) unless the activity raises it as BENIGN.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    began, load_before = time.monotonic(), os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    server_log = RESULTS / "servers.log"
    print(f"the servers' own output goes to {shown_path(server_log)}", flush=True)
    try:
        with server_logs_to(server_log):
            runs, postgres = asyncio.run(measure(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise SystemExit("bench: interrupted; all it started is stopped") from None
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(postgres), "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}},
        "parameters": vars(args),
        "medians": medians(runs),
        "totals": {
            "flash_sale_oversold": sum(int(run["flash_sale"]["oversold"]) for run in runs),
            "flash_sale_bank_unanswered": sum(int(run["flash_sale"]["bank_unanswered"]) for run in runs),
        },
        "runs": runs,
    }
    result["ratios"] = ratios(result["medians"])
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {time.monotonic() - began:.0f} s\n")
    print(table(result))
    slow = server_log.read_text(errors="replace").count("Slow gRPC call")
    if slow:
        print(f"\nThe Temporal dev server logged {slow} \"Slow gRPC call\" warnings (see {shown_path(server_log)}).")
    print(f"\nwritten to {shown_path(RESULTS / 'latest.json')}")
    print("\nFor the README:\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
