"""`make bench-search`: search latency at 100,000 and 1,000,000 products.

A PostgreSQL of its own (embedded, in a short temp dir under /tmp, removed at the end) is seeded
with the generated catalog (`kassa seed --products N`; the 1M catalog extends the 100k one, whose
products are the same), and the gateway serves it on loopback. A fixed mix of searches runs one at
a time through GET /catalog/products; the baseline, measured in the same run, is the product page
GET /catalog/products/{sku} through the same gateway: three queries (the product joined to its
stock, by primary key; its category and those above it, a recursive query; their names).

    python -m bench.search [--sizes 100000,1000000] [--rounds 15]

Results: a table on stdout, a markdown table for the README, and bench/results/search.json.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.main import create_app as create_gateway
from cli.embedded import start_postgres, stop_postgres
from cli.generator import SKU_PREFIX
from cli.seed import progress_bar, seed_category_tree, seed_demo_catalog, seed_generated
from kassa.db import make_engine, migrate
from kassa.settings import Settings
from tests.servers import listening_socket, serving

RESULTS = Path(__file__).parent / "results"
SHARED_BUFFERS = "1GB"

# What shoppers type and click: words in Russian and English, a brand, a typo, filters, browsing a
# category large and small, another page. Fixed, so runs compare.
QUERY_MIX: dict[str, dict[str, Any]] = {
    "word (ru)": {"q": "смартфон"},
    "word (en)": {"q": "laptop"},
    "brand": {"q": "samsung"},
    "two words, in stock": {"q": "кроссовки nike", "in_stock": "true"},
    "typo": {"q": "наушнки"},
    "word + attribute + price": {"q": "куртка", "attr": "size:M", "price_max": 1_000_000},
    "word + brand, by rating": {"q": "чайник", "brand": "Philips", "sort": "rating"},
    "leaf category, by price": {"category": "smartphones", "sort": "price_asc"},
    "leaf category + filters, newest": {
        "category": "sneakers",
        "attr": "colour:black",
        "in_stock": "true",
        "sort": "newest",
    },
    "top category": {"category": "electronics"},
    "whole catalog, popular": {},
    "page 2 of a word": {"q": "смартфон", "page": 2},
}


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(
        [seconds * 1000 for seconds in latencies], n=100, method="inclusive"
    )
    return {"p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1)}


async def timed(requests: list[Callable[[], Awaitable[httpx.Response]]]) -> list[float]:
    """Each request alone (latency, not throughput), in the given order."""
    latencies = []
    for request in requests:
        began = time.perf_counter()
        answer = await request()
        latencies.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
    return latencies


async def measure(http: httpx.AsyncClient, size: int, rounds: int) -> dict[str, Any]:
    params = {}
    for name, query in QUERY_MIX.items():
        params[name] = {k: v for k, v in query.items() if k != "page"}
        if query.get("page") == 2:
            first = (await http.get("/catalog/products", params=params[name])).json()
            params[name]["cursor"] = first["next_cursor"]

    def search(query: dict[str, Any]) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.get("/catalog/products", params=query)

    def page(sku: str) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.get(f"/catalog/products/{sku}")

    rng = random.Random(size)
    mix = [(name, search(query)) for _ in range(rounds) for name, query in params.items()]
    rng.shuffle(mix)
    pages = [page(f"{SKU_PREFIX}{rng.randint(1, size):07d}") for _ in mix]
    await timed([request for _, request in mix[: len(params)]] + pages[:20])  # warm the caches once
    by_query: dict[str, list[float]] = {name: [] for name in params}
    # Interleaved, so that whatever else runs on the machine weighs on both alike.
    for (name, request), product_page in zip(mix, pages, strict=True):
        by_query[name] += await timed([request])
        by_query.setdefault("baseline", []).extend(await timed([product_page]))
    baseline = by_query.pop("baseline")
    everything = [latency for latencies in by_query.values() for latency in latencies]
    found = {
        name: (await http.get("/catalog/products", params=query)).json()["total"]
        for name, query in params.items()
    }
    return {
        "products": size,
        "search": percentiles(everything),
        "product_page": percentiles(baseline),
        "queries": {
            name: percentiles(latencies) | {"total": found[name]}
            for name, latencies in by_query.items()
        },
    }


async def with_shared_buffers(data_dir: Path, database_url: str) -> str:
    """The embedded server's 128 MB of shared buffers would hold a seventh of a million products;
    a production server gets a quarter of its memory. Restarts the server to apply it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'")
    stop_postgres()
    return start_postgres(data_dir)


async def run(sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    data_dir = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))
    try:
        database_url = await with_shared_buffers(data_dir, start_postgres(data_dir))
        migrate(database_url)
        engine = make_engine(database_url, pool_size=2)
        await seed_category_tree(engine)
        await seed_demo_catalog(engine)
        settings = Settings(env="test", data_dir=data_dir, database_url=database_url).with_secrets()
        results = []
        seconds_seeding = 0.0
        async with (
            serving(create_gateway(settings), listening_socket()) as api_url,
            httpx.AsyncClient(base_url=api_url) as http,
        ):
            for size in sizes:
                began = time.perf_counter()
                await seed_generated(database_url, engine, size, progress_bar(f"seed {size:,}"))
                seconds_seeding += time.perf_counter() - began
                print(
                    f"seeded {size:,} products in {seconds_seeding:.0f} s;"
                    f" measuring {rounds} rounds of {len(QUERY_MIX)} searches",
                    flush=True,
                )
                results.append(
                    await measure(http, size, rounds) | {"seed_seconds": round(seconds_seeding)}
                )
                report(results[-1])
        await engine.dispose()
        return results
    finally:
        stop_postgres()
        shutil.rmtree(data_dir, ignore_errors=True)


def report(result: dict[str, Any]) -> None:
    print(f"\n{result['products']:,} products (seeded in {result['seed_seconds']} s)")
    print(f"  {'query':<36} {'p50 ms':>8} {'p95 ms':>8} {'found':>9}")
    for name, figures in result["queries"].items():
        print(f"  {name:<36} {figures['p50_ms']:>8} {figures['p95_ms']:>8} {figures['total']:>9,}")
    for name, label in (("search", "search (all)"), ("product_page", "product page (baseline)")):
        print(f"  {label:<36} {result[name]['p50_ms']:>8} {result[name]['p95_ms']:>8}")


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| products | seeded in | search p50 | search p95 | product page p50 (baseline) | p95"
            " | search p50 ÷ page p50 |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r["search"]["p50_ms"] / r["product_page"]["p50_ms"]
        lines.append(
            f"| {r['products']:,} | {r['seed_seconds']} s | {r['search']['p50_ms']} ms"
            f" | {r['search']['p95_ms']} ms | {r['product_page']['p50_ms']} ms"
            f" | {r['product_page']['p95_ms']} ms | {ratio:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="100000,1000000", help="catalog sizes, ascending, comma-separated"
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="times each search of the mix runs per size"
    )
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    results = asyncio.run(run(sizes, args.rounds))
    print("\n" + markdown(results))
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "shared_buffers": SHARED_BUFFERS,
    }
    (RESULTS / "search.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False)
    )


if __name__ == "__main__":
    main()
