"""`make bench`: what Pay Now costs and how fast Kassa sells, on the full local stack.

The stack runs as production does, one process per part (tests/stack.py): embedded PostgreSQL,
the Temporal dev server, the acquirer, the api (`kassa api`) and a worker (`kassa worker`); this
process only makes the load, as phones and browsers would, over HTTP. Every figure comes with a
baseline measured in the same run on the same servers:

- Pay Now (POST /checkout) p50/p99 and completed checkouts per second, at fixed offered loads and
  at saturation, with a frictionless card and with 3-D Secure (the challenge approved over HTTP
  as the bank's page would); baselines on the same Temporal: update-with-start of an empty
  workflow, and of a workflow with one activity (the least a Pay Now that calls a bank can be).
- Cost: CPU seconds per 1,000 checkouts of every process they run through (from /proc: the
  stack's parts, PostgreSQL, and this process making the load), which bounds the checkouts per
  second the machine's cores can complete; the Temporal server's CPU per baseline run; the
  worker's and the api's peak memory.
- Flash sale: N buyers race for K units of one SKU through the API: exactly K held (asserted),
  reservations per second, and the CPU each tap costs every part; baseline: a bare conditional
  UPDATE on one row from as many connections as PostgreSQL gives (the median of five races).
  The invariant checker (tests/invariants.py: nothing oversold, the books agree) runs at the
  end, after the winners paid.

    python -m bench.pay_now [--loads 10,20] [--seconds 10] [--saturation 200] [--concurrency 32]
                             [--buyers 2000] [--units 200]

Results: a table on stdout and bench/results/latest.json. A smaller run: --seconds 3
--saturation 50 --buyers 300 --units 30.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from cli.embedded import postgres_data, start_postgres, stop_postgres
from kassa.db import session_scope
from kassa.statuses import ENDED, OrderStatus
from tests.crash_load import Shopper, shoppers_with_carts
from tests.flow import CARD, CARD_3DS
from tests.stack import Stack, postgres_cpu_seconds

RESULTS = Path(__file__).parent / "results"
PLENTY = 1_000_000
HOLDS_OF_SKU = text(
    "SELECT r.created_at FROM reservations r"
    " JOIN reservation_lines l ON l.reservation_id = r.id WHERE l.sku = :sku"
)
HOLD_ONE = "UPDATE stock SET reserved = reserved + 1 WHERE sku = %s AND on_hand - reserved >= 1"
UPDATE_RACES = 5
MAX_UPDATE_CONNECTIONS = 40  # the embedded PostgreSQL allows 100; the stack's pools hold up to 50
PAID_POLL_SECONDS = 0.1  # as an app would poll the order; faster would load the api it measures
CARDS = {"frictionless": CARD, "3ds": CARD_3DS}


@workflow.defn(sandboxed=False)
class EmptyWorkflow:
    """The baseline: what Temporal itself costs for one update-with-start, with nothing in it."""

    def __init__(self) -> None:
        self._answered = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._answered and workflow.all_handlers_finished())

    @workflow.update
    async def answer(self) -> str:
        self._answered = True
        return "ok"


@activity.defn(name="bench_pretend_charge")
async def pretend_charge() -> str:
    return "succeeded"


@workflow.defn(sandboxed=False)
class OneActivityWorkflow:
    """The second baseline: the least a frictionless Pay Now must be on Temporal, with none of
    Kassa's work. One update-with-start, one activity (where Kassa calls the bank), answered when
    it is done; two workflow tasks and an activity task, as Kassa's checkout has."""

    def __init__(self) -> None:
        self._charged = ""

    @workflow.run
    async def run(self) -> None:
        self._charged = await workflow.execute_activity(
            pretend_charge, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def answer(self) -> str:
        await workflow.wait_condition(lambda: bool(self._charged))
        return self._charged


Baseline = type[EmptyWorkflow] | type[OneActivityWorkflow]
BASELINES: dict[str, Baseline] = {
    "empty_workflow": EmptyWorkflow,
    "one_activity_workflow": OneActivityWorkflow,
}


def progress(line: str) -> None:
    print(f"  {line}", flush=True)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99, in milliseconds, of latencies in seconds."""
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
    return cuts[49], cuts[98]


@dataclass(frozen=True)
class Run:
    latencies: list[float]  # seconds: the request to its answer
    completed: int
    seconds: float  # the first request to the last completion

    def figures(self) -> dict[str, float]:
        p50, p99 = percentiles(self.latencies)
        return {
            "p50_ms": p50,
            "p99_ms": p99,
            "completed_per_second": self.completed / self.seconds,
            "count": self.completed,
        }


async def offered(
    rate: float | None, count: int, concurrency: int, one: Callable[[int], Awaitable[float]]
) -> Run:
    """`one(i)` for i < count: started at `rate` a second (open loop), or at saturation (rate
    None: `concurrency` at a time, each starting as one ends). `one` returns its latency."""
    slots = asyncio.Semaphore(concurrency if rate is None else count)
    latencies: list[float] = []
    began = time.perf_counter()

    async def timed(index: int) -> None:
        async with slots:
            latencies.append(await one(index))
        if len(latencies) % max(1, count // 4) == 0:
            progress(f"{len(latencies)}/{count} ({time.perf_counter() - began:.1f} s)")

    tasks = []
    for index in range(count):
        if rate is not None:
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(timed(index)))
    await asyncio.gather(*tasks)
    return Run(latencies, count, time.perf_counter() - began)


async def paid(http: httpx.AsyncClient, shopper: Shopper, order_id: str) -> None:
    """Polls the order until it is final; it must have ended PAID."""
    while True:
        response = await http.get(f"/orders/{order_id}", headers=shopper.headers)
        assert response.status_code == 200, (
            f"GET /orders/{order_id}: {response.status_code} {response.text}"
        )
        status = response.json()["status"]
        if status in ENDED:
            break
        await asyncio.sleep(PAID_POLL_SECONDS)
    assert status == OrderStatus.PAID, f"order {order_id} ended {status}, not PAID"


async def checkout(http: httpx.AsyncClient, shopper: Shopper) -> float:
    """Pay Now to PAID, as the customer lives it; returns the Pay Now latency, from the first tap
    to the answer. An overloaded stack answers `503 checkout_busy`: the app taps again after
    `retry_after` (the same cart: the same run), and `shopper.taps` counts it."""
    began = time.perf_counter()
    while True:
        shopper.taps += 1
        response = await http.post(
            "/checkout",
            json={"cart_id": shopper.cart["id"], "payment_method": shopper.method},
            headers=shopper.headers,
        )
        if response.status_code != 503 or response.json().get("code") != "checkout_busy":
            break
        await asyncio.sleep(float(response.json().get("retry_after", 1)))
    latency = time.perf_counter() - began
    assert response.status_code in (200, 201), response.text
    answer = response.json()
    if answer["payment_url"]:  # the bank's page, Approve pressed
        approved = await http.post(f"{answer['payment_url']}/approve")
        assert approved.status_code < 400, approved.text
    if answer["status"] != OrderStatus.PAID:
        await paid(http, shopper, answer["order_id"])
    return latency


def checkout_each(
    http: httpx.AsyncClient, shoppers: list[Shopper]
) -> Callable[[int], Awaitable[float]]:
    """`one` for `offered`: the i-th shopper's checkout."""
    return lambda index: checkout(http, shoppers[index])


CpuMeters = dict[str, Callable[[], float]]


def cpu_meters(stack: Stack, pgdata: Path) -> CpuMeters:
    """CPU seconds so far, of every process a checkout runs through: the stack's parts, PostgreSQL
    and this process (the load: the phones, and the baselines' client and worker)."""
    return {
        **{name: part.cpu_seconds for name, part in stack.parts.items()},
        "postgres": lambda: postgres_cpu_seconds(pgdata),
        "bench": time.process_time,
    }


def cpu_used(meters: CpuMeters, before: dict[str, float]) -> dict[str, float]:
    return {name: meter() - before[name] for name, meter in meters.items()}


def read_meters(meters: CpuMeters) -> dict[str, float]:
    return {name: meter() for name, meter in meters.items()}


async def pay_now_runs(
    stack: Stack, http: httpx.AsyncClient, meters: CpuMeters, args: argparse.Namespace
) -> dict[str, Any]:
    sku = await stack.product(on_hand=PLENTY)
    results: dict[str, Any] = {}
    worker = stack.parts["worker-1"]
    cpu, checkouts = dict.fromkeys(meters, 0.0), 0
    for card, method in CARDS.items():
        for rate in [*args.loads, None]:
            count = args.saturation if rate is None else int(rate * args.seconds)
            label = f"pay_now_{card}_{'saturation' if rate is None else f'{rate:g}_per_second'}"
            print(f"{label}: {count} checkouts", flush=True)
            shoppers = await shoppers_with_carts(stack, http, sku, count, method)
            # Counted from here: the customers' sign-up and carts above are not the checkout's cost.
            before = read_meters(meters)
            run = await offered(rate, count, args.concurrency, checkout_each(http, shoppers))
            for name, seconds in cpu_used(meters, before).items():
                cpu[name] += seconds
            busy = sum(shopper.taps - 1 for shopper in shoppers)
            results[label] = {"offered_per_second": rate, **run.figures(), "busy_answers": busy}
            checkouts += count
    cpu = {name: seconds / checkouts * 1000 for name, seconds in cpu.items()}
    results["cost"] = {
        "checkouts": checkouts,
        "worker_cpu_seconds_per_1000": cpu["worker-1"],
        "cpu_seconds_per_1000_by_part": cpu,
        "cpu_seconds_per_1000": sum(cpu.values()),
        "worker_peak_memory_mb": worker.peak_memory_mb(),
        "api_peak_memory_mb": stack.parts["api"].peak_memory_mb(),
    }
    return results


def update_with_start(
    client: Client, queue: str, name: str, baseline: Baseline
) -> Callable[[int], Awaitable[float]]:
    """`one` for `offered`: an update-with-start of a new run of `baseline`; returns its latency."""

    async def one(_: int) -> float:
        start = WithStartWorkflowOperation(
            baseline.run,
            id=f"{name}-{uuid.uuid4()}",
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        began = time.perf_counter()
        await client.execute_update_with_start_workflow(
            baseline.answer, start_workflow_operation=start
        )
        return time.perf_counter() - began

    return one


async def baseline_runs(
    stack: Stack, meters: CpuMeters, args: argparse.Namespace
) -> dict[str, Any]:
    """The baselines, on the same Temporal server, with a worker in this process; and what one
    costs the Temporal server in CPU, and this process (client and worker)."""
    assert stack.temporal is not None
    client, queue, results = stack.temporal, f"bench-baseline-{uuid.uuid4().hex[:6]}", {}

    async with Worker(
        client, task_queue=queue, workflows=list(BASELINES.values()), activities=[pretend_charge]
    ):
        for name, baseline in BASELINES.items():
            one = update_with_start(client, queue, name, baseline)
            before, runs = read_meters(meters), 0
            for rate in [*args.loads, None]:
                count = args.saturation if rate is None else int(rate * args.seconds)
                label = f"{name}_{'saturation' if rate is None else f'{rate:g}_per_second'}"
                print(f"{label}: {count} update-with-starts", flush=True)
                results[label] = {
                    "offered_per_second": rate,
                    **(await offered(rate, count, args.concurrency, one)).figures(),
                }
                runs += count
            used = cpu_used(meters, before)
            results[f"{name}_cost"] = {
                "runs": runs,
                "temporal_cpu_seconds_per_1000": used["temporal"] / runs * 1000,
                "client_and_worker_cpu_seconds_per_1000": used["bench"] / runs * 1000,
            }
    return results


async def flash_sale(
    stack: Stack, http: httpx.AsyncClient, meters: CpuMeters, buyers: int, units: int
) -> dict[str, Any]:
    """All buyers tap Pay Now (3-D Secure, so the holds stay) at once; then the winners pay."""
    print(f"flash sale: {buyers} buyers for {units} units", flush=True)
    sku = await stack.product(on_hand=units)
    shoppers = await shoppers_with_carts(stack, http, sku, buyers, CARD_3DS)
    progress(f"set-up: {buyers} customers with a cart")
    held_at: list[float] = []
    answers: list[str] = []
    latencies: list[float] = []

    async def race(shopper: Shopper, phone: httpx.AsyncClient) -> None:
        sent = time.perf_counter()
        while True:  # an overloaded stack answers 503 checkout_busy: the app taps again
            response = await phone.post(
                "/checkout",
                json={"cart_id": shopper.cart["id"], "payment_method": CARD_3DS},
                headers=shopper.headers,
            )
            body = response.json()
            if response.status_code != 503 or body.get("code") != "checkout_busy":
                break
            await asyncio.sleep(float(body.get("retry_after", 1)))
        latencies.append(time.perf_counter() - sent)
        # 201: held, the bank's page to open; 503 payment_unavailable: held, the bank answered late.
        if response.status_code == 201 or body.get("code") == "payment_unavailable":
            held_at.append(time.perf_counter() - began)
            shopper.order_id, shopper.answer = body["order_id"], body.get("payment_url") or ""
            answers.append("held")
        else:
            answers.append(str(body.get("code")))
        if len(answers) % max(1, buyers // 4) == 0:
            seconds = time.perf_counter() - began
            progress(f"{len(answers)}/{buyers} answered, {len(held_at)} held ({seconds:.1f} s)")

    async def pay(shopper: Shopper) -> None:
        while not shopper.answer:  # the bank answered late: pay again, as the app offers
            again = await http.post(
                f"/orders/{shopper.order_id}/pay",
                json={"payment_method": CARD_3DS},
                headers=shopper.headers,
            )
            assert again.status_code in (200, 201, 503), again.text
            shopper.answer = again.json().get("payment_url") or ""
        await http.post(f"{shopper.answer}/approve")
        await paid(http, shopper, shopper.order_id or "")

    async with AsyncExitStack() as phones:
        # A connection of its own per buyer, as phones have: one client's pool queueing 2,000
        # requests spends O(queued × connections) on each, and made the bench its own bottleneck.
        # verify=False: plain HTTP on loopback, and loading the CA bundle costs 20 ms per client.
        clients = [
            await phones.enter_async_context(
                httpx.AsyncClient(base_url=stack.api_url, timeout=300, verify=False)
            )
            for _ in shoppers
        ]
        progress(f"set-up: {buyers} phones")
        began, opened_at, before = time.perf_counter(), datetime.now(UTC), read_meters(meters)
        await asyncio.gather(
            *(race(shopper, phone) for shopper, phone in zip(shoppers, clients, strict=True))
        )
    elapsed, cpu = time.perf_counter() - began, cpu_used(meters, before)
    assert answers.count("held") == units and answers.count("out_of_stock") == buyers - units, {
        a: answers.count(a) for a in set(answers)
    }
    # When each hold was taken, by the database's rows (the gateway holds before it starts the run).
    async with session_scope(stack.engine) as session:
        # sqlmodel's `exec` runs a text() too; only its overloads leave it out.
        rows = await session.exec(HOLDS_OF_SKU, params={"sku": sku})  # type: ignore[call-overload]
        holds = rows.scalars().all()
    assert len(holds) == units, len(holds)
    sold_out_after = (max(holds) - opened_at).total_seconds()
    await asyncio.gather(*(pay(shopper) for shopper in shoppers if shopper.order_id))
    report = await stack.invariants({sku: units})
    progress(f"{units} paid; invariants hold over {report.orders} orders")
    p50, p99 = percentiles(latencies)
    return {
        "buyers": buyers,
        "units": units,
        "reservations_per_second": units / sold_out_after,
        "seconds_to_sell_out": sold_out_after,
        "seconds_to_every_winners_payment_page": max(held_at),
        "seconds_to_answer_all": elapsed,
        "answer_p50_ms": p50,
        "answer_p99_ms": p99,
        # Until every buyer was answered: the losers' taps, and the winners' up to the bank's page.
        "cpu_ms_per_tap_by_part": {name: seconds / buyers * 1000 for name, seconds in cpu.items()},
    }


async def update_races(stack: Stack, racers: int, units: int) -> dict[str, Any]:
    """The baseline, raced UPDATE_RACES times (each a fraction of a second, so a passing stall
    of the machine moves one of them): the median and every one."""
    rates = [
        (await update_race(stack, racers, units))["reservations_per_second"]
        for _ in range(UPDATE_RACES)
    ]
    return {
        "connections": min(racers, MAX_UPDATE_CONNECTIONS),
        "reservations_per_second": statistics.median(rates),
        "reservations_per_second_each": rates,
    }


async def update_race(stack: Stack, racers: int, units: int) -> dict[str, Any]:
    """The ceiling: `racers` bare conditional UPDATEs on one row, autocommit, over a pool."""
    sku = await stack.product(on_hand=units)
    url = stack.settings.database_url or ""
    connections = await asyncio.gather(
        *(
            psycopg.AsyncConnection.connect(url, autocommit=True)
            for _ in range(min(racers, MAX_UPDATE_CONNECTIONS))
        )
    )
    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for connection in connections:
        pool.put_nowait(connection)
    held: list[float] = []
    began = time.perf_counter()

    async def racer() -> None:
        connection = await pool.get()
        try:
            if (await connection.execute(HOLD_ONE, (sku,))).rowcount:
                held.append(time.perf_counter() - began)
        finally:
            pool.put_nowait(connection)

    try:
        await asyncio.gather(*(racer() for _ in range(racers)))
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))
    assert len(held) == units, len(held)
    return {"connections": len(connections), "reservations_per_second": units / max(held)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))  # short: PostgreSQL's socket lives there
    try:
        print(
            "starting PostgreSQL, Temporal, the acquirer, the api and a worker"
            " (separate processes)…",
            flush=True,
        )
        stack = await Stack.start(root / "stack", await asyncio.to_thread(start_postgres, root))
        try:
            limits = httpx.Limits(
                max_connections=256, max_keepalive_connections=256, keepalive_expiry=1
            )
            async with httpx.AsyncClient(
                base_url=stack.api_url, timeout=300, limits=limits
            ) as http:
                print("warming up…", flush=True)
                sku = await stack.product(on_hand=PLENTY)
                warm = await shoppers_with_carts(stack, http, sku, 2 * args.concurrency, CARD)
                await offered(None, len(warm), args.concurrency, checkout_each(http, warm))
                meters = cpu_meters(stack, postgres_data(root))
                results = {
                    **await baseline_runs(stack, meters, args),
                    **await pay_now_runs(stack, http, meters, args),
                }
                results["flash_sale"] = await flash_sale(
                    stack, http, meters, args.buyers, args.units
                )
                results["conditional_update"] = await update_races(stack, args.buyers, args.units)
            return results
        finally:
            print("stopping everything…", flush=True)
            await stack.stop()
    finally:
        stop_postgres()
        shutil.rmtree(root, ignore_errors=True)


def ratios(results: dict[str, Any], loads: list[float]) -> dict[str, float]:
    out = {}
    for name in ("one_activity_workflow", *(f"pay_now_{card}" for card in CARDS)):
        for rate in [*[f"{rate:g}_per_second" for rate in loads], "saturation"]:
            measured, empty = results[f"{name}_{rate}"], results[f"empty_workflow_{rate}"]
            out[f"{name}_{rate}_p50_over_empty_workflow"] = measured["p50_ms"] / empty["p50_ms"]
    out["flash_sale_over_conditional_update"] = (
        results["flash_sale"]["reservations_per_second"]
        / results["conditional_update"]["reservations_per_second"]
    )
    return out


def table(result: dict[str, Any]) -> str:
    figures, parameters = result["figures"], result["parameters"]
    lines = [
        "| | offered | p50 | p99 | completed/s | p50 ÷ empty workflow | 503 busy, tapped again |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in [*[f"{rate:g}_per_second" for rate in parameters["loads"]], "saturation"]:
        for name in (*BASELINES, *(f"pay_now_{card}" for card in CARDS)):
            row = figures[f"{name}_{rate}"]
            offered_text = (
                f"{row['offered_per_second']:g}/s"
                if row["offered_per_second"]
                else f"saturation ({parameters['concurrency']} at a time)"
            )
            ratio = (
                "1"
                if name == "empty_workflow"
                else f"{result['ratios'][f'{name}_{rate}_p50_over_empty_workflow']:.1f}"
            )
            lines.append(
                f"| {name.replace('_', ' ')} | {offered_text} | {row['p50_ms']:.0f} ms |"
                f" {row['p99_ms']:.0f} ms | {row['completed_per_second']:.1f} | {ratio} |"
                f" {row.get('busy_answers', '')} |"
            )
    cost, sale, update = figures["cost"], figures["flash_sale"], figures["conditional_update"]
    cores = result["machine"]["cores"]
    by_part = ", ".join(
        f"{name} {seconds:.0f}" for name, seconds in cost["cpu_seconds_per_1000_by_part"].items()
    )
    baseline_costs = {name: figures[f"{name}_cost"] for name in BASELINES}
    per_baseline = "; ".join(
        f"{name.replace('_', ' ')}: Temporal {spent['temporal_cpu_seconds_per_1000']:.0f}, "
        f"client and worker {spent['client_and_worker_cpu_seconds_per_1000']:.0f}"
        for name, spent in baseline_costs.items()
    )
    races = update["reservations_per_second_each"]
    tap_cpu = sale["cpu_ms_per_tap_by_part"]
    tap_cpu_in_all = sum(tap_cpu.values())
    lines += [
        "",
        (
            f"Cost: {cost['worker_cpu_seconds_per_1000']:.0f} worker CPU seconds per 1,000 "
            f"checkouts ({cost['checkouts']} measured); worker peak memory "
            f"{cost['worker_peak_memory_mb']:.0f} MB, api {cost['api_peak_memory_mb']:.0f} MB."
        ),
        (
            f"CPU seconds per 1,000 checkouts by part: {by_part}; in all "
            f"{cost['cpu_seconds_per_1000']:.0f} (the load's own included: it shares the cores), "
            f"so {cores} cores complete at most "
            f"{cores * 1000 / cost['cpu_seconds_per_1000']:.0f} checkouts/s."
        ),
        f"The baselines' CPU seconds per 1,000 update-with-starts: {per_baseline}.",
        "",
        (
            f"| Flash sale, {sale['buyers']} buyers for {sale['units']} units"
            " | reservations/s | ÷ UPDATE |"
        ),
        "|---|---:|---:|",
        (
            f"| POST /checkout | {sale['reservations_per_second']:.1f}"
            f" | {result['ratios']['flash_sale_over_conditional_update']:.3f} |"
        ),
        (
            f"| bare conditional UPDATE, {update['connections']} connections, median of"
            f" {len(races)} ({', '.join(f'{rate:.0f}' for rate in races)})"
            f" | {update['reservations_per_second']:.0f} | 1 |"
        ),
        "",
        (
            f"Exactly {sale['units']} held (asserted by the bench), nothing oversold"
            " (tests/invariants.py, run after the winners paid); sold out (the last hold's row)"
            f" {sale['seconds_to_sell_out']:.1f} s after the first tap, every winner had the"
            f" bank's page after {sale['seconds_to_every_winners_payment_page']:.1f} s, every"
            f" buyer answered after {sale['seconds_to_answer_all']:.1f} s"
            f" (p50 {sale['answer_p50_ms']:.0f} ms, p99 {sale['answer_p99_ms']:.0f} ms)."
        ),
        (
            "CPU milliseconds per tap, until every buyer was answered: "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in tap_cpu.items())
            + f"; in all {tap_cpu_in_all:.1f}, so {cores} cores answer at most"
            f" {cores * 1000 / tap_cpu_in_all:.0f} taps/s."
        ),
        (
            f"Machine: {cores} cores, Python {result['machine']['python']}, load average "
            f"{result['machine']['load_average_1min_before']:.1f} before, {result['date']}."
        ),
    ]
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def rates(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "comma-separated checkouts per second, e.g. 10,20"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(
            "comma-separated positive checkouts per second, e.g. 10,20"
        )
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pay_now", description=(__doc__ or "").split("\n\n")[0]
    )
    environ = os.environ.get
    parser.add_argument(
        "--loads",
        type=rates,
        default=rates(environ("BENCH_LOADS", "10,20")),
        help="offered loads, checkouts/s (10,20)",
    )
    parser.add_argument(
        "--seconds",
        type=positive,
        default=int(environ("BENCH_SECONDS", "10")),
        help="seconds per offered load (10)",
    )
    parser.add_argument(
        "--saturation",
        type=positive,
        default=int(environ("BENCH_SATURATION", "200")),
        help="checkouts at saturation (200)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=int(environ("BENCH_CONCURRENCY", "32")),
        help="checkouts at a time at saturation (32)",
    )
    parser.add_argument(
        "--buyers",
        type=positive,
        default=int(environ("BENCH_BUYERS", "2000")),
        help="flash-sale buyers (2000)",
    )
    parser.add_argument(
        "--units",
        type=positive,
        default=int(environ("BENCH_UNITS", "200")),
        help="flash-sale units (200)",
    )
    args = parser.parse_args()
    if args.units > args.buyers:
        parser.error("--units must not exceed --buyers: the sale has to sell out")
    began, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        figures = asyncio.run(measure(args))
    except KeyboardInterrupt:
        raise SystemExit("bench: interrupted; all it started is stopped") from None
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1min_before": load_before,
            "load_average_1min_after": os.getloadavg()[0],
        },
        "parameters": vars(args),
        "figures": figures,
        "ratios": ratios(figures, args.loads),
        "wall_seconds": time.monotonic() - began,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ndone in {result['wall_seconds']:.0f} s; written to bench/results/latest.json\n")
    print(table(result))


if __name__ == "__main__":
    main()
