"""`make bench`: what Pay Now costs and how fast Kassa sells, on the full local stack.

The stack runs as production does, one process per part (tests/stack.py): embedded PostgreSQL,
the Temporal dev server, the acquirer, the api (`kassa api`) and a worker (`kassa worker`). The
load comes over HTTP as phones and browsers would: the saturation runs' and the flash sale's taps
from `wrk` (bench/load.py, a compiled tool, so the load costs a few per cent of the cores), the
open-loop offered loads and what a customer does after Pay Now (the bank's page, the order
polled) from this process. Every figure comes with a baseline measured in the same run on the
same servers:

- Pay Now (POST /checkout) p50/p99 and completed checkouts per second, at fixed offered loads and
  at saturation, with a frictionless card and with 3-D Secure (the challenge approved over HTTP
  as the bank's page would); baselines on the same Temporal: update-with-start of an empty
  workflow, and of a workflow with one activity (the least a Pay Now that calls a bank can be).
- Cost: CPU seconds per 1,000 checkouts of every process they run through (from /proc: the
  stack's parts, PostgreSQL, and the load), which bounds the checkouts per second the machine's
  cores can complete; the Temporal server's CPU per baseline run; the worker's and the api's
  peak memory.
- Flash sale: N buyers race for K units of one SKU through the API, all taps sent at once: the
  units held, reservations per second, when the losers and the winners were answered, and the
  CPU each tap costs every part; baseline: a bare conditional UPDATE on one row from as many
  connections as PostgreSQL gives (the median of five races).
- The invariant checker (tests/invariants.py: nothing oversold, no double charge, the books
  agree) runs at the end of every run.

A request that fails (no answer, a refused connection, an unexpected status) is counted in its
run's `failed`, never raised.

    python -m bench.pay_now [--loads 10,20] [--seconds 10] [--saturation 200] [--concurrency 32]
                             [--buyers 2000] [--units 200] [--only checkouts|flash]
                             [--api-processes 1]

Results: tables on stdout (ready for the README's Performance section) and
bench/results/latest.json, whose `ratios` are the issue's aims. A smaller run: --seconds 3
--saturation 50 --buyers 300 --units 30; the flash sale alone: --only flash.
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
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from bench import load
from bench.load import Answer, Tap, children_cpu_seconds
from cli.embedded import postgres_data, start_postgres, stop_postgres
from kassa.db import session_scope
from kassa.statuses import ENDED, OrderStatus
from tests.crash_load import Shopper, shoppers_with_carts
from tests.flow import CARD, CARD_3DS
from tests.stack import Stack, postgres_cpu_seconds

RESULTS = Path(__file__).parent / "results"
PLENTY = 1_000_000
HOLDS_OF_SKU = text(
    "SELECT r.created_at, o.id AS order_id, o.cart_id FROM reservations r"
    " JOIN reservation_lines l ON l.reservation_id = r.id"
    " LEFT JOIN orders o ON o.id = r.order_id WHERE l.sku = :sku AND r.status = 'held'"
)
HOLD_ONE = "UPDATE stock SET reserved = reserved + 1 WHERE sku = %s AND on_hand - reserved >= 1"
UPDATE_RACES = 5
MAX_UPDATE_CONNECTIONS = 40  # the embedded PostgreSQL allows 100; the stack's pools hold up to 50
PAID_POLL_SECONDS = 0.1  # as an app would poll the order; faster would load the api it measures
TAP_CAP_SECONDS = 300  # wrk is stopped then, whatever is unanswered (counted as failed)
CARDS = {"frictionless": CARD, "3ds": CARD_3DS}
# What a checkout runs through, against what the one-activity baseline runs through (the Temporal
# server and its client and worker): the first aim.
CHECKOUT_PARTS = ("temporal", "api", "worker-1", "postgres")
SCALES_OUT = {
    "temporal": "history shards over history/matching hosts (a cluster, not the dev server)",
    "api": "replicas behind the load balancer: stateless",
    "worker-1": "replicas on the task queue: stateless",
    "postgres": "one primary for stock and orders; a hot SKU's row serializes its holds",
    "acquirer": "the bank's (a sandbox here)",
    "load": "the phones' (not Kassa's)",
}


class Failed(Exception):
    """A checkout that did not end as the customer expects: counted under its reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What a failed request looks like: counted in its run, never raised (an earlier run died of an
# httpx.ReadError under load).
FAILURES = (Failed, httpx.HTTPError, RPCError, WorkflowUpdateFailedError)


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
    """p50 and p99, in milliseconds, of latencies in seconds (0 when there are none)."""
    if len(seconds) < 2:
        return (seconds[0] * 1000, seconds[0] * 1000) if seconds else (0.0, 0.0)
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
    return cuts[49], cuts[98]


@dataclass
class Run:
    latencies: list[float]  # seconds: the request to its answer
    completed: int
    seconds: float  # the first request to the last completion
    failed: Counter[str] = field(default_factory=Counter)  # reason → requests

    def figures(self) -> dict[str, Any]:
        p50, p99 = percentiles(self.latencies)
        return {
            "p50_ms": p50,
            "p99_ms": p99,
            "completed_per_second": self.completed / self.seconds if self.seconds > 0 else 0.0,
            "count": self.completed,
            "failed": dict(self.failed),
        }


def failure(error: Exception) -> str:
    return error.reason if isinstance(error, Failed) else type(error).__name__


async def offered(
    rate: float | None, count: int, concurrency: int, one: Callable[[int], Awaitable[float]]
) -> Run:
    """`one(i)` for i < count: started at `rate` a second (open loop), or at saturation (rate
    None: `concurrency` at a time, each starting as one ends). `one` returns its latency; what it
    raises of FAILURES is counted, not raised."""
    slots = asyncio.Semaphore(concurrency if rate is None else count)
    latencies: list[float] = []
    failed: Counter[str] = Counter()
    began = time.perf_counter()

    async def timed(index: int) -> None:
        async with slots:
            try:
                latencies.append(await one(index))
            except FAILURES as error:
                failed[failure(error)] += 1
        done = len(latencies) + failed.total()
        if done % max(1, count // 4) == 0:
            progress(f"{done}/{count} ({time.perf_counter() - began:.1f} s)")

    tasks = []
    for index in range(count):
        if rate is not None:
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(timed(index)))
    await asyncio.gather(*tasks)
    return Run(latencies, len(latencies), time.perf_counter() - began, failed)


async def paid(http: httpx.AsyncClient, shopper: Shopper, order_id: str) -> None:
    """Polls the order until it is final; raises Failed unless it ended PAID."""
    while True:
        response = await http.get(f"/orders/{order_id}", headers=shopper.headers)
        if response.status_code != 200:
            raise Failed(f"order_read_{response.status_code}")
        status = response.json()["status"]
        if status in ENDED:
            break
        await asyncio.sleep(PAID_POLL_SECONDS)
    if status != OrderStatus.PAID:
        raise Failed(f"ended_{status}")


async def tap_until_answered(http: httpx.AsyncClient, shopper: Shopper) -> httpx.Response:
    """Pay Now as the app does: an overloaded stack answers `503 checkout_busy`, and the app taps
    again after `retry_after` (the same cart: the same run); `shopper.taps` counts the taps."""
    while True:
        shopper.taps += 1
        response = await http.post(
            "/checkout",
            json={"cart_id": shopper.cart["id"], "payment_method": shopper.method},
            headers=shopper.headers,
        )
        if response.status_code != 503 or response.json().get("code") != "checkout_busy":
            return response
        await asyncio.sleep(float(response.json().get("retry_after", 1)))


async def to_paid(http: httpx.AsyncClient, shopper: Shopper, answer: dict[str, Any]) -> None:
    """What the customer does after Pay Now answered: the bank's page (Approve pressed), then the
    order followed until PAID."""
    if answer.get("payment_url"):
        approved = await http.post(f"{answer['payment_url']}/approve")
        if approved.status_code >= 400:
            raise Failed(f"approve_{approved.status_code}")
    if answer.get("status") != OrderStatus.PAID:
        await paid(http, shopper, answer["order_id"])


async def checkout(http: httpx.AsyncClient, shopper: Shopper) -> float:
    """Pay Now to PAID, as the customer lives it; returns the Pay Now latency, from the first tap
    to the answer."""
    began = time.perf_counter()
    response = await tap_until_answered(http, shopper)
    latency = time.perf_counter() - began
    if response.status_code not in (200, 201):
        raise Failed(str(response.json().get("code") or response.status_code))
    await to_paid(http, shopper, response.json())
    return latency


def checkout_each(
    http: httpx.AsyncClient, shoppers: list[Shopper]
) -> Callable[[int], Awaitable[float]]:
    """`one` for `offered`: the i-th shopper's checkout."""
    return lambda index: checkout(http, shoppers[index])


def pay_now_taps(name: str, shoppers: list[Shopper]) -> dict[str, Shopper]:
    """Each shopper's Pay Now as a prebuilt request for wrk, by its tap id."""
    run = uuid.uuid4().hex[:8]
    return {f"{name}-{run}-{index:06d}": shopper for index, shopper in enumerate(shoppers)}


def as_taps(shoppers_by_tap: dict[str, Shopper]) -> list[Tap]:
    return [
        Tap(
            tap_id,
            "/checkout",
            shopper.headers,
            {"cart_id": shopper.cart["id"], "payment_method": shopper.method},
        )
        for tap_id, shopper in shoppers_by_tap.items()
    ]


async def saturation(
    stack: Stack, http: httpx.AsyncClient, shoppers: list[Shopper], concurrency: int
) -> Run:
    """Every shopper's Pay Now from wrk, `concurrency` in flight, each sent as one is answered;
    what follows an answer (the bank's page, the order polled to PAID, a tap again after 503
    checkout_busy) from this process, while the rest run. Completed: PAID."""
    by_tap = pay_now_taps("saturation", shoppers)
    completed_at: list[float] = []
    failed: Counter[str] = Counter()
    follow_ups: list[asyncio.Task[None]] = []

    async def follow(answer: Answer) -> None:
        shopper = by_tap[answer.tap.id]
        shopper.taps += 1
        try:
            if answer.code == "checkout_busy":
                await asyncio.sleep(float(answer.body.get("retry_after", 1)))
                await checkout(http, shopper)
            elif answer.code == "created":
                await to_paid(http, shopper, answer.body)
            else:
                raise Failed(answer.code)
            completed_at.append(time.time())
        except FAILURES as error:
            failed[failure(error)] += 1

    def on_answer(answer: Answer) -> None:
        if answer.code == "created" and answer.body.get("status") == OrderStatus.PAID:
            completed_at.append(answer.answered)
        else:
            follow_ups.append(asyncio.create_task(follow(answer)))

    taps = await load.send(stack.api_url, as_taps(by_tap), concurrency, TAP_CAP_SECONDS, on_answer)
    await asyncio.gather(*follow_ups)
    failed["no_answer"] += len(taps.unanswered)
    latencies = [answer.latency for answer in taps.answers if answer.code == "created"]
    seconds = max(completed_at, default=taps.first_sent) - taps.first_sent if taps.answers else 0
    return Run(latencies, len(completed_at), seconds, +failed)


CpuMeters = dict[str, Callable[[], float]]


def cpu_meters(stack: Stack, pgdata: Path) -> CpuMeters:
    """CPU seconds so far, of every process a checkout runs through: the stack's parts, PostgreSQL
    and the load (this process: the baselines' client and worker, the follow-ups of the taps;
    and wrk, which makes the taps, once it ended)."""
    return {
        **{name: part.cpu_seconds for name, part in stack.parts.items()},
        "postgres": lambda: postgres_cpu_seconds(pgdata),
        "load": lambda: time.process_time() + children_cpu_seconds(),
    }


def cpu_used(meters: CpuMeters, before: dict[str, float]) -> dict[str, float]:
    return {name: meter() - before[name] for name, meter in meters.items()}


def read_meters(meters: CpuMeters) -> dict[str, float]:
    return {name: meter() for name, meter in meters.items()}


def add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        total[name] = total.get(name, 0.0) + seconds


async def pay_now_runs(
    stack: Stack,
    http: httpx.AsyncClient,
    meters: CpuMeters,
    args: argparse.Namespace,
    tool_cpu: dict[str, float],
) -> dict[str, Any]:
    """Pay Now at each offered load and at saturation, for each card; adds the CPU spent while
    wrk made the taps to `tool_cpu`."""
    sku = await stack.product(on_hand=PLENTY)
    results: dict[str, Any] = {}
    worker = stack.parts["worker-1"]
    for card, method in CARDS.items():
        cpu: dict[str, float] = {}
        checkouts = 0
        for rate in [*args.loads, None]:
            count = args.saturation if rate is None else int(rate * args.seconds)
            label = f"pay_now_{card}_{'saturation' if rate is None else f'{rate:g}_per_second'}"
            print(f"{label}: {count} checkouts", flush=True)
            shoppers = await shoppers_with_carts(stack, http, sku, count, method)
            # Counted from here: the customers' sign-up and carts above are not the checkout's cost.
            before = read_meters(meters)
            if rate is None:
                run = await saturation(stack, http, shoppers, args.concurrency)
            else:
                run = await offered(rate, count, args.concurrency, checkout_each(http, shoppers))
            used = cpu_used(meters, before)
            add(cpu, used)
            if rate is None:
                add(tool_cpu, used)
            busy = sum(max(0, shopper.taps - 1) for shopper in shoppers)
            results[label] = {"offered_per_second": rate, **run.figures(), "busy_answers": busy}
            progress(f"{run.completed} paid, failed {dict(run.failed) or 'none'}")
            checkouts += count
        per_1000 = {name: seconds / checkouts * 1000 for name, seconds in cpu.items()}
        results[f"cost_{card}"] = {
            "checkouts": checkouts,
            "cpu_seconds_per_1000_by_part": per_1000,
            "cpu_seconds_per_1000": sum(per_1000.values()),
        }
    results["memory"] = {
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
                "client_and_worker_cpu_seconds_per_1000": used["load"] / runs * 1000,
            }
    return results


async def flash_sale(
    stack: Stack,
    http: httpx.AsyncClient,
    meters: CpuMeters,
    args: argparse.Namespace,
    tool_cpu: dict[str, float],
) -> dict[str, Any]:
    """All buyers tap Pay Now (3-D Secure, so the holds stay) at once, from wrk, a connection
    each, as phones have; then the winners pay, from this process."""
    buyers, units = args.buyers, args.units
    print(f"flash sale: {buyers} buyers for {units} units", flush=True)
    sku = await stack.product(on_hand=units)
    shoppers = await shoppers_with_carts(stack, http, sku, buyers, CARD_3DS)
    progress(f"set-up: {buyers} customers with a cart")
    by_tap = pay_now_taps("flash", shoppers)
    before, opened = read_meters(meters), time.time()
    taps = await load.send(stack.api_url, as_taps(by_tap), buyers, TAP_CAP_SECONDS)
    cpu = cpu_used(meters, before)
    add(tool_cpu, cpu)
    answers = Counter(answer.code for answer in taps.answers)
    answers["no_answer"] += len(taps.unanswered)
    progress(f"answers: {dict(+answers)}")
    first_tap = taps.first_sent if taps.answers else opened
    answered_after = {
        code: sorted(a.answered - first_tap for a in taps.answers if a.code == code)
        for code in answers
    }
    winners = answered_after.get("created", []) + answered_after.get("payment_unavailable", [])
    losers = answered_after.get("out_of_stock", [])
    losers_again = await sold_out_taps(stack, meters, tool_cpu, by_tap, taps.answers)
    # When each hold was taken, by the database's rows (the gateway holds before it starts a run),
    # and whose it is: a winner whose answer was lost or busy pays all the same.
    async with session_scope(stack.engine) as session:
        # sqlmodel's `exec` runs a text() too; only its overloads leave it out.
        rows = await session.exec(HOLDS_OF_SKU, params={"sku": sku})  # type: ignore[call-overload]
        holds = rows.all()
    answer_of_cart = {by_tap[answer.tap.id].cart["id"]: answer for answer in taps.answers}
    by_cart = {shopper.cart["id"]: shopper for shopper in shoppers}
    order_of_cart = {str(hold.cart_id): str(hold.order_id) for hold in holds if hold.cart_id}
    failed: Counter[str] = Counter()

    async def pay(cart_id: str) -> None:
        shopper, order_id = by_cart[cart_id], order_of_cart[cart_id]
        answer = answer_of_cart.get(cart_id)
        try:
            payment_url = answer.body.get("payment_url") or "" if answer else ""
            if answer is None or answer.code == "checkout_busy":  # the app taps again
                payment_url = (await tap_until_answered(http, shopper)).json().get("payment_url")
            while not payment_url:  # the bank answered late: pay again, as the app offers
                again = await http.post(
                    f"/orders/{order_id}/pay",
                    json={"payment_method": CARD_3DS},
                    headers=shopper.headers,
                )
                if again.status_code not in (200, 201, 503):
                    raise Failed(f"pay_again_{again.status_code}")
                payment_url = again.json().get("payment_url") or ""
            await to_paid(http, shopper, {"payment_url": payment_url, "order_id": order_id})
        except FAILURES as error:
            failed[failure(error)] += 1

    await asyncio.gather(*(pay(cart_id) for cart_id in order_of_cart))
    progress(f"{len(order_of_cart) - failed.total()} of {len(holds)} holds paid")
    sold_out_after = max(hold.created_at.timestamp() for hold in holds) - first_tap if holds else 0
    winners_p50, winners_p99 = percentiles(winners)
    return {
        "sku": sku,
        "buyers": buyers,
        "units": units,
        "held": len(holds),
        "answers": dict(+answers),
        "failed_after_hold": dict(+failed),
        "reservations_per_second": len(holds) / sold_out_after if sold_out_after > 0 else 0.0,
        "seconds_to_sell_out": sold_out_after,
        "losers_answered_s": max(losers, default=0.0),
        "losers_answered_p50_s": statistics.median(losers) if losers else 0.0,
        "winners_answered_p50_s": winners_p50 / 1000,
        "winners_answered_p99_s": winners_p99 / 1000,
        "winners_answered_max_s": max(winners, default=0.0),
        "seconds_to_answer_all": max((a.answered for a in taps.answers), default=first_tap)
        - first_tap,
        # Until every buyer was answered: the losers' taps, and the winners' up to the bank's page.
        "cpu_ms_per_tap_by_part": {name: seconds / buyers * 1000 for name, seconds in cpu.items()},
        "losers_again": losers_again,
    }


async def sold_out_taps(
    stack: Stack,
    meters: CpuMeters,
    tool_cpu: dict[str, float],
    by_tap: dict[str, Shopper],
    answers: list[Answer],
) -> dict[str, Any]:
    """The losers tap again, all at once, on the sold-out SKU (their carts are as they were):
    what a loser alone costs each part, and how fast the api answers a crowd of them when no
    winner's run competes (the winners' runs wait for the bank's page meanwhile)."""
    losers = [answer.tap for answer in answers if answer.code == "out_of_stock"]
    if not losers:
        return {}
    again = [Tap(f"{tap.id}-again", tap.path, tap.headers, tap.body) for tap in losers]
    before = read_meters(meters)
    taps = await load.send(stack.api_url, again, len(again), TAP_CAP_SECONDS)
    cpu = cpu_used(meters, before)
    add(tool_cpu, cpu)
    refused = [a for a in taps.answers if a.code == "out_of_stock"]
    answered_s = max((a.answered for a in refused), default=0.0) - (
        taps.first_sent if taps.answers else 0.0
    )
    progress(f"{len(refused)} of {len(again)} losers refused again in {answered_s:.2f} s")
    return {
        "taps": len(again),
        "refused": len(refused),
        "answered_s": answered_s,
        "cpu_ms_per_tap_by_part": {
            name: seconds / len(again) * 1000 for name, seconds in cpu.items()
        },
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
        stack = await Stack.start(
            root / "stack",
            await asyncio.to_thread(start_postgres, root),
            api_processes=args.api_processes,
        )
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
                tool_cpu: dict[str, float] = {}
                results: dict[str, Any] = {}
                if args.only in ("all", "checkouts"):
                    results |= await baseline_runs(stack, meters, args)
                    results |= await pay_now_runs(stack, http, meters, args, tool_cpu)
                if args.only in ("all", "flash"):
                    results["flash_sale"] = await flash_sale(stack, http, meters, args, tool_cpu)
                results["load_while_wrk_tapped"] = {
                    "cpu_seconds_by_part": tool_cpu,
                    "load_cpu_share": tool_cpu["load"] / sum(tool_cpu.values()),
                }
            # Nothing oversold or left held, no double charge, the books agree: over every order of
            # the run (the flash sale's SKU had exactly its units). Before the bare UPDATEs, which
            # hold stock with no reservation by design.
            sale = results.get("flash_sale")
            report = await stack.invariants({sale["sku"]: sale["units"]} if sale else None)
            results["invariants"] = {"orders": report.orders, "hold": True}
            progress(f"invariants hold over {report.orders} orders")
            if sale:
                results["conditional_update"] = await update_races(stack, args.buyers, args.units)
            return results
        finally:
            print("stopping everything…", flush=True)
            await stack.stop()
    finally:
        stop_postgres()
        shutil.rmtree(root, ignore_errors=True)


def checkout_cpu_ms(figures: dict[str, Any]) -> float:
    """CPU ms of a frictionless checkout in the parts the issue counts (CHECKOUT_PARTS)."""
    by_part = figures["cost_frictionless"]["cpu_seconds_per_1000_by_part"]
    return sum(by_part.get(name, 0.0) for name in CHECKOUT_PARTS)


def one_activity_cpu_ms(figures: dict[str, Any]) -> float:
    cost = figures["one_activity_workflow_cost"]
    return float(
        cost["temporal_cpu_seconds_per_1000"] + cost["client_and_worker_cpu_seconds_per_1000"]
    )


def ratios(figures: dict[str, Any], loads: list[float]) -> tuple[dict[str, float], dict[str, Any]]:
    """The issue's aims as ratios of figures of this run; and, for each, the figures it is of."""
    out: dict[str, float] = {}
    sources: dict[str, Any] = {}
    if "cost_frictionless" in figures:
        checkout, one_activity = checkout_cpu_ms(figures), one_activity_cpu_ms(figures)
        out["checkout_cpu_vs_one_activity"] = checkout / one_activity
        sources["checkout_cpu_vs_one_activity"] = {
            "checkout_cpu_ms": checkout,
            "parts": list(CHECKOUT_PARTS),
            "one_activity_cpu_ms": one_activity,
        }
        pay_now = figures["pay_now_frictionless_saturation"]["completed_per_second"]
        baseline = figures["one_activity_workflow_saturation"]["completed_per_second"]
        out["saturation_vs_one_activity"] = pay_now / baseline
        sources["saturation_vs_one_activity"] = {
            "pay_now_frictionless_per_second": pay_now,
            "one_activity_workflow_per_second": baseline,
        }
    if "flash_sale" in figures:
        sale, update = figures["flash_sale"], figures["conditional_update"]
        out["flash_sale_vs_update"] = (
            sale["reservations_per_second"] / update["reservations_per_second"]
        )
        sources["flash_sale_vs_update"] = {
            "flash_sale_reservations_per_second": sale["reservations_per_second"],
            "conditional_update_reservations_per_second": update["reservations_per_second"],
        }
        out["flash_sale_losers_answered_s"] = sale["losers_answered_s"]
        sources["flash_sale_losers_answered_s"] = {
            "losers": sale["answers"].get("out_of_stock", 0),
            "p50_s": sale["losers_answered_p50_s"],
        }
    load = figures["load_while_wrk_tapped"]
    out["load_cpu_share"] = load["load_cpu_share"]
    sources["load_cpu_share"] = load["cpu_seconds_by_part"]
    for name in ("one_activity_workflow", *(f"pay_now_{card}" for card in CARDS)):
        for rate in [*[f"{rate:g}_per_second" for rate in loads], "saturation"]:
            if f"{name}_{rate}" in figures:
                measured, empty = figures[f"{name}_{rate}"], figures[f"empty_workflow_{rate}"]
                out[f"{name}_{rate}_p50_over_empty_workflow"] = measured["p50_ms"] / empty["p50_ms"]
    return out, sources


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def aims_table(result: dict[str, Any]) -> list[str]:
    aims = {
        "checkout_cpu_vs_one_activity": "CPU per frictionless checkout ÷ the one-activity"
        " workflow's (aim ≤ 1.5)",
        "saturation_vs_one_activity": "checkouts/s at saturation ÷ the one-activity workflow's"
        " (aim ≥ 0.8)",
        "flash_sale_vs_update": "flash-sale holds/s ÷ the bare conditional UPDATE's (aim ≥ 0.25)",
        "flash_sale_losers_answered_s": "every losing buyer answered, seconds after the first"
        " tap (aim ≤ 2)",
        "load_cpu_share": "the load's share of the CPU while wrk taps (aim ≤ 0.1)",
    }
    lines = ["| ratio (`ratios` in latest.json) | this run | from |", "|---|---:|---|"]
    for name, words in aims.items():
        if name in result["ratios"]:
            sources = result["ratio_sources"][name]
            source = ", ".join(
                f"{key} {number(value)}"
                for key, value in sources.items()
                if isinstance(value, float | int)
            )
            lines.append(f"| {words} | {number(result['ratios'][name])} | {source} |")
    return lines


def capacity_table(figures: dict[str, Any]) -> list[str]:
    """Cores per 100 checkouts/s at peak, and per 1,000 flash-sale taps/s (a tap's CPU ms, the
    same number) and per 1,000 losers/s, from this run's CPU."""
    checkout = figures.get("cost_frictionless", {}).get("cpu_seconds_per_1000_by_part", {})
    sale = figures.get("flash_sale", {})
    tap = sale.get("cpu_ms_per_tap_by_part", {})
    loser = sale.get("losers_again", {}).get("cpu_ms_per_tap_by_part", {})

    def cell(value: float | None, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = [
        (
            "| part | CPU ms per checkout | cores per 100 checkouts/s | CPU ms per flash-sale tap"
            " = cores per 1,000 taps/s | CPU ms per loser = cores per 1,000 losers/s"
            " | scales out by |"
        ),
        "|---|---:|---:|---:|---:|---|",
    ]
    for part in [*CHECKOUT_PARTS, "acquirer", "load"]:
        ms = checkout.get(part)
        lines.append(
            f"| {part} | {cell(ms, 1)} | {cell(None if ms is None else ms / 10)}"
            f" | {cell(tap.get(part))} | {cell(loser.get(part))} | {SCALES_OUT[part]} |"
        )
    in_all = [sum(of.get(part, 0.0) for part in CHECKOUT_PARTS) for of in (checkout, tap, loser)]
    lines.append(
        f"| Kassa's parts in all | {in_all[0]:.1f} | {in_all[0] / 10:.2f} | {in_all[1]:.2f}"
        f" | {in_all[2]:.2f} | |"
    )
    return lines


def checkouts_table(result: dict[str, Any]) -> list[str]:
    figures, parameters = result["figures"], result["parameters"]
    lines = [
        (
            "| | offered | p50 | p99 | completed/s | p50 ÷ empty workflow | 503 busy, tapped again"
            " | failed |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
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
                f"| {name.replace('_', ' ')} | {offered_text} | {row['p50_ms']:,.0f} ms |"
                f" {row['p99_ms']:,.0f} ms | {row['completed_per_second']:.1f} | {ratio} |"
                f" {row.get('busy_answers', '')} | {sum(row['failed'].values())} |"
            )
    cores = result["machine"]["cores"]
    lines.append("")
    for card in CARDS:
        cost = figures[f"cost_{card}"]
        by_part = ", ".join(
            f"{name} {seconds:.0f}"
            for name, seconds in cost["cpu_seconds_per_1000_by_part"].items()
        )
        lines.append(
            f"CPU seconds per 1,000 {card} checkouts ({cost['checkouts']} measured) by part:"
            f" {by_part}; in all {cost['cpu_seconds_per_1000']:.0f} (the load's included: it"
            f" shares the cores), so {cores} cores complete at most"
            f" {cores * 1000 / cost['cpu_seconds_per_1000']:.0f} such checkouts/s."
        )
    per_baseline = "; ".join(
        f"{name.replace('_', ' ')}: Temporal {spent['temporal_cpu_seconds_per_1000']:.0f}, "
        f"client and worker {spent['client_and_worker_cpu_seconds_per_1000']:.0f}"
        for name, spent in ((name, figures[f"{name}_cost"]) for name in BASELINES)
    )
    memory = figures["memory"]
    lines += [
        f"The baselines' CPU seconds per 1,000 update-with-starts: {per_baseline}.",
        (
            f"Peak memory: worker {memory['worker_peak_memory_mb']:.0f} MB,"
            f" api {memory['api_peak_memory_mb']:.0f} MB."
        ),
    ]
    return lines


def flash_sale_table(result: dict[str, Any]) -> list[str]:
    figures, cores = result["figures"], result["machine"]["cores"]
    sale, update = figures["flash_sale"], figures["conditional_update"]
    races = update["reservations_per_second_each"]
    tap_cpu = sale["cpu_ms_per_tap_by_part"]
    tap_cpu_in_all = sum(tap_cpu.values())
    return [
        f"| Flash sale, {sale['buyers']} buyers for {sale['units']} units | holds/s | ÷ UPDATE |",
        "|---|---:|---:|",
        (
            f"| POST /checkout, every tap at once (wrk) | {sale['reservations_per_second']:.1f}"
            f" | {result['ratios']['flash_sale_vs_update']:.3f} |"
        ),
        (
            f"| bare conditional UPDATE, {update['connections']} connections, median of"
            f" {len(races)} ({', '.join(f'{rate:.0f}' for rate in races)})"
            f" | {update['reservations_per_second']:.0f} | 1 |"
        ),
        "",
        (
            f"{sale['held']} held, answers {sale['answers']}; sold out (the last hold's row)"
            f" {sale['seconds_to_sell_out']:.2f} s after the first tap. Losers answered (409"
            f" out_of_stock) by {sale['losers_answered_s']:.2f} s (p50"
            f" {sale['losers_answered_p50_s']:.2f} s); winners (201, the bank's page) p50"
            f" {sale['winners_answered_p50_s']:.2f} s, p99 {sale['winners_answered_p99_s']:.2f} s,"
            f" max {sale['winners_answered_max_s']:.2f} s; every buyer by"
            f" {sale['seconds_to_answer_all']:.2f} s. Then the winners paid"
            f" (failed: {sale['failed_after_hold'] or 'none'}) and tests/invariants.py held."
        ),
        *(
            [
                f"The {again['taps']} losers tapped again, all at once on the sold-out SKU"
                f" (nothing else running): all answered by {again['answered_s']:.2f} s; CPU ms"
                " per loser: "
                + ", ".join(
                    f"{name} {ms:.2f}" for name, ms in again["cpu_ms_per_tap_by_part"].items()
                )
                + "."
            ]
            if (again := sale.get("losers_again"))
            else []
        ),
        (
            "CPU milliseconds per tap, until every buyer was answered: "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in tap_cpu.items())
            + f"; in all {tap_cpu_in_all:.1f}, so {cores} cores answer at most"
            f" {cores * 1000 / tap_cpu_in_all:.0f} taps/s."
        ),
    ]


def table(result: dict[str, Any]) -> str:
    figures = result["figures"]
    lines = [*aims_table(result), ""]
    if "cost_frictionless" in figures:
        lines += [*checkouts_table(result), ""]
    if "flash_sale" in figures:
        lines += [*flash_sale_table(result), ""]
    lines += ["Past one machine, on paper (from this run's CPU):", ""]
    lines += [*capacity_table(figures), ""]
    lines.append(
        f"Machine: {result['machine']['cores']} cores, Python {result['machine']['python']},"
        f" load average {result['machine']['load_average_1min_before']:.1f} before,"
        f" {result['date']}."
    )
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
    parser.add_argument(
        "--only",
        choices=["all", "checkouts", "flash"],
        default=environ("BENCH_ONLY", "all"),
        help="the checkouts and their baselines, or the flash sale and its baseline (all)",
    )
    parser.add_argument(
        "--api-processes",
        type=positive,
        default=int(environ("BENCH_API_PROCESSES", "1")),
        help="the api's processes, KASSA_API_PROCESSES (1)",
    )
    args = parser.parse_args()
    if args.units > args.buyers:
        parser.error("--units must not exceed --buyers: the sale has to sell out")
    load.wrk_binary()  # before minutes of set-up: stops with what to do if it is missing
    began, load_before = time.monotonic(), os.getloadavg()[0]
    try:
        figures = asyncio.run(measure(args))
    except KeyboardInterrupt:
        raise SystemExit("bench: interrupted; all it started is stopped") from None
    aims, sources = ratios(figures, args.loads)
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
        "ratios": aims,
        "ratio_sources": sources,
        "figures": figures,
        "wall_seconds": time.monotonic() - began,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ndone in {result['wall_seconds']:.0f} s; written to bench/results/latest.json\n")
    print(table(result))


if __name__ == "__main__":
    main()
