"""What `kassa dev` and `kassa seed` load: the category tree, a demo shelf of 24 real-looking
products to try checkout on, and any number of generated ones (cli/generator.py) for search.

Generated products go in through COPY, the fastest way into PostgreSQL: 100,000 in well under a
minute. Every step is idempotent: what is already there, and whatever an operator changed in it,
stays as it is.
"""

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from activities.catalog import remember_words, words_of
from cli.catalog_tree import TREE
from cli.generator import SKU_PREFIX, GeneratedProduct, generate
from kassa.db import session_scope
from kassa.money import CURRENCY
from kassa.tables import Category, Product, Stock, utcnow

Progress = Callable[[int, int], None]  # (done, total)
COPY_BATCH = 10_000


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    title: str
    brand: str
    category: str
    price: int  # VAT (20%) included
    on_hand: int


DEMO_CATALOG = (
    DemoProduct(
        "PHN-APL-IP15-128-BLK", "iPhone 15, 128 GB, black", "Apple", "smartphones", 7_999_900, 120
    ),
    DemoProduct(
        "PHN-SMS-S24-256-GRY", "Galaxy S24, 8/256 GB, grey", "Samsung", "smartphones", 7_499_000, 90
    ),
    DemoProduct(
        "PHN-XMI-RN13P-256-BLU",
        "Redmi Note 13 Pro, 8/256 GB, blue",
        "Xiaomi",
        "smartphones",
        2_799_000,
        300,
    ),
    DemoProduct(
        "PHN-HNR-200-512-GRN", "Honor 200, 12/512 GB, green", "Honor", "smartphones", 3_999_000, 150
    ),
    DemoProduct(
        "PHN-SMS-A55-128-NVY",
        "Galaxy A55, 8/128 GB, navy",
        "Samsung",
        "smartphones",
        3_299_000,
        240,
    ),
    DemoProduct(
        "LPT-APL-MBA13-M3-256", 'MacBook Air 13" M3, 8/256 GB', "Apple", "laptops", 11_999_000, 50
    ),
    DemoProduct(
        "LPT-LNV-SLIM5-16-512",
        'IdeaPad Slim 5 16", Ryzen 7, 16/512 GB',
        "Lenovo",
        "laptops",
        7_499_000,
        70,
    ),
    DemoProduct(
        "LPT-ASU-VIVO15-512", "Vivobook 15, Core i5, 16/512 GB", "ASUS", "laptops", 5_499_000, 110
    ),
    DemoProduct(
        "LPT-HUA-MBD16-512", "MateBook D 16, Core i5, 16/512 GB", "Huawei", "laptops", 6_499_000, 80
    ),
    DemoProduct(
        "AUD-APL-APP2-USBC", "AirPods Pro 2 with USB-C case", "Apple", "headphones", 2_299_000, 200
    ),
    DemoProduct(
        "AUD-SNY-WH1000XM5-BLK",
        "WH-1000XM5 wireless headphones, black",
        "Sony",
        "headphones",
        3_299_000,
        130,
    ),
    DemoProduct(
        "AUD-JBL-T520BT-BLK",
        "Tune 520BT on-ear headphones, black",
        "JBL",
        "headphones",
        449_000,
        500,
    ),
    DemoProduct(
        "AUD-SMS-BUDS2P-GRP", "Galaxy Buds2 Pro, graphite", "Samsung", "headphones", 1_299_000, 260
    ),
    DemoProduct("AUD-XMI-BUDS5-WHT", "Redmi Buds 5, white", "Xiaomi", "headphones", 249_000, 450),
    DemoProduct(
        "HOM-DSN-V15-DTCT",
        "V15 Detect cordless vacuum cleaner",
        "Dyson",
        "vacuum-cleaners",
        6_999_000,
        60,
    ),
    DemoProduct(
        "HOM-XMI-S10-ROBOT", "Robot Vacuum S10, white", "Xiaomi", "vacuum-cleaners", 1_999_000, 180
    ),
    DemoProduct(
        "HOM-PHL-HD9350-KTL",
        "Series 5000 electric kettle, 1.7 l",
        "Philips",
        "kettles",
        399_000,
        400,
    ),
    DemoProduct(
        "HOM-TFL-EY8018-AFR", "Easy Fry Max air fryer, 5 l", "Tefal", "air-fryers", 899_000, 220
    ),
    DemoProduct(
        "HOM-DLG-ECAM22-CFM",
        "Magnifica S bean-to-cup coffee machine",
        "De'Longhi",
        "coffee-machines",
        3_999_000,
        75,
    ),
    DemoProduct(
        "SPT-NKE-PEG41-42",
        "Air Zoom Pegasus 41 running shoes, size 42",
        "Nike",
        "running-shoes",
        1_299_000,
        160,
    ),
    DemoProduct(
        "SPT-ADS-ULTRA-43",
        "Ultraboost Light running shoes, size 43",
        "adidas",
        "running-shoes",
        1_599_000,
        140,
    ),
    DemoProduct(
        "SPT-GRM-FR265-BLK",
        "Forerunner 265 GPS running watch, black",
        "Garmin",
        "smartwatches",
        4_499_000,
        55,
    ),
    DemoProduct(
        "SPT-XMI-BAND9-BLK",
        "Smart Band 9 fitness tracker, black",
        "Xiaomi",
        "fitness-trackers",
        349_000,
        480,
    ),
    DemoProduct("SPT-DCT-YOGA-8MM", "Yoga mat 8 mm, green", "Decathlon", "yoga-mats", 129_900, 350),
)


def _product_row(product: DemoProduct) -> dict[str, object]:
    return {
        "sku": product.sku,
        "title": product.title,
        "brand": product.brand,
        "category": product.category,
        "price": product.price,
        "currency": CURRENCY,
        "vat_rate": 20,
        "created_at": utcnow(),
    }


async def seed_category_tree(engine: AsyncEngine) -> None:
    """Adds the tree's categories, and moves a category already there (an older root) into place."""
    rows = [
        {"slug": c.slug, "parent": c.parent, "name": c.name, "name_en": c.name_en} for c in TREE
    ]
    async with session_scope(engine) as session:
        statement = insert(Category).values(rows)
        await session.exec(
            statement.on_conflict_do_update(
                index_elements=[col(Category.slug)],
                set_={
                    "parent": statement.excluded.parent,
                    "name": statement.excluded.name,
                    "name_en": statement.excluded.name_en,
                },
            )
        )


async def seed_demo_catalog(engine: AsyncEngine) -> int:
    """Adds the demo products and their stock; returns how many were new. Idempotent: products
    and stock rows already there, and whatever an operator changed in them, stay as they are."""
    async with session_scope(engine) as session:
        added = await session.exec(
            insert(Product)
            .values([_product_row(p) for p in DEMO_CATALOG])
            .on_conflict_do_nothing(index_elements=[col(Product.sku)])
            .returning(col(Product.sku))
        )
        added_skus = added.scalars().all()
        await session.exec(
            insert(Stock)
            .values([{"sku": p.sku, "on_hand": p.on_hand, "reserved": 0} for p in DEMO_CATALOG])
            .on_conflict_do_nothing(index_elements=[col(Stock.sku)])
        )
        await remember_words(session, words_of(*(f"{p.title} {p.brand}" for p in DEMO_CATALOG)))
    return len(added_skus)


PRODUCT_COLUMNS = (
    "sku", "title", "description", "brand", "category", "attributes", "price", "old_price",
    "currency", "vat_rate", "rating", "review_count", "popularity", "images", "created_at",
)  # fmt: skip


async def seed_generated(
    database_url: str, engine: AsyncEngine, count: int, progress: Progress
) -> int:
    """Generated products GEN-0000001 … up to `count`, with their stock; returns how many were
    new. The first `count` are always the same products, so a larger seed extends a smaller one."""
    # Autocommit: each batch is a transaction of its own, and CLUSTER and VACUUM run outside one.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        listed = await connection.execute(
            "SELECT sku FROM products WHERE sku LIKE %s", [f"{SKU_PREFIX}%"]
        )
        present = {sku for (sku,) in await listed.fetchall()}
        vocabulary: set[str] = set()
        added = 0
        batch: list[tuple[object, ...]] = []
        stock: list[tuple[str, int]] = []
        for number, product in enumerate(generate(count), start=1):
            if product.sku not in present:
                vocabulary |= words_of(product.title, product.brand)
                batch.append(_copy_row(product))
                stock.append((product.sku, product.on_hand))
            if len(batch) >= COPY_BATCH or number == count:
                await _copy(connection, batch, stock)
                added += len(batch)
                batch, stock = [], []
                progress(number, count)
        if added:
            print(
                "seed: ordering products by category and vacuuming (a minute for a million)",
                file=sys.stderr,
                flush=True,
            )
            await _tidy(connection)
    async with session_scope(engine) as session:
        await remember_words(session, vocabulary)
    return added


async def _tidy(connection: psycopg.AsyncConnection) -> None:
    """After a bulk load: products of a category side by side on disk, so a search reads a few
    pages instead of one per product (the benchmark's word searches went 4x faster at a million);
    then the planner's statistics and the visibility map (for index-only scans). CLUSTER locks
    the table while it rewrites it: seconds for a million products. Products added later land
    anywhere; an operator re-clusters (or pg_repack) now and then."""
    await connection.execute("CLUSTER products USING products_category_popularity")
    await connection.execute("VACUUM (ANALYZE) products, stock")


def _copy_row(p: GeneratedProduct) -> tuple[object, ...]:
    attributes, images = json.dumps(p.attributes, ensure_ascii=False), json.dumps(p.images)
    return (
        p.sku, p.title, p.description, p.brand, p.category, attributes, p.price, p.old_price,
        CURRENCY, p.vat_rate, p.rating, p.review_count, p.popularity, images, p.created_at,
    )  # fmt: skip


async def _copy(
    connection: psycopg.AsyncConnection,
    products: list[tuple[object, ...]],
    stock: list[tuple[str, int]],
) -> None:
    async with connection.transaction(), connection.cursor() as cursor:
        async with cursor.copy(f"COPY products ({', '.join(PRODUCT_COLUMNS)}) FROM STDIN") as copy:
            for row in products:
                await copy.write_row(row)
        async with cursor.copy("COPY stock (sku, on_hand, reserved) FROM STDIN") as copy:
            for sku, on_hand in stock:
                await copy.write_row((sku, on_hand, 0))


def progress_bar(label: str) -> Progress:
    """A progress line on stderr: redrawn in place on a terminal, every 10 % in a log."""
    started = time.monotonic()
    tty = sys.stderr.isatty()
    shown = [-1]

    def show(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if not tty and percent // 10 == shown[0] // 10 and done < total:
            return
        shown[0] = percent
        rate = done / max(time.monotonic() - started, 1e-6)
        filled = percent // 5
        bar = f"[{'#' * filled}{'.' * (20 - filled)}]"
        line = f"{label}: {bar} {done:,}/{total:,} ({percent}%), {rate:,.0f}/s"
        print(
            f"\r{line}" if tty else line,
            end="\n" if done >= total or not tty else "",
            file=sys.stderr,
            flush=True,
        )

    return show
