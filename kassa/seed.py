"""The demo catalog `kassa dev` and `kassa seed` load: a small marketplace shelf to try checkout on."""

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from kassa.db import session_scope
from kassa.money import CURRENCY
from kassa.tables import Product, Stock, utcnow


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    title: str
    brand: str
    category: str
    price: int  # VAT (20%) included
    on_hand: int


DEMO_CATALOG = (
    DemoProduct("PHN-APL-IP15-128-BLK", "iPhone 15, 128 GB, black", "Apple", "Smartphones", 7_999_900, 120),
    DemoProduct("PHN-SMS-S24-256-GRY", "Galaxy S24, 8/256 GB, grey", "Samsung", "Smartphones", 7_499_000, 90),
    DemoProduct("PHN-XMI-RN13P-256-BLU", "Redmi Note 13 Pro, 8/256 GB, blue", "Xiaomi", "Smartphones", 2_799_000, 300),
    DemoProduct("PHN-HNR-200-512-GRN", "Honor 200, 12/512 GB, green", "Honor", "Smartphones", 3_999_000, 150),
    DemoProduct("PHN-SMS-A55-128-NVY", "Galaxy A55, 8/128 GB, navy", "Samsung", "Smartphones", 3_299_000, 240),
    DemoProduct("LPT-APL-MBA13-M3-256", "MacBook Air 13\" M3, 8/256 GB", "Apple", "Laptops", 11_999_000, 50),
    DemoProduct("LPT-LNV-SLIM5-16-512", "IdeaPad Slim 5 16\", Ryzen 7, 16/512 GB", "Lenovo", "Laptops", 7_499_000, 70),
    DemoProduct("LPT-ASU-VIVO15-512", "Vivobook 15, Core i5, 16/512 GB", "ASUS", "Laptops", 5_499_000, 110),
    DemoProduct("LPT-HUA-MBD16-512", "MateBook D 16, Core i5, 16/512 GB", "Huawei", "Laptops", 6_499_000, 80),
    DemoProduct("AUD-APL-APP2-USBC", "AirPods Pro 2 with USB-C case", "Apple", "Headphones", 2_299_000, 200),
    DemoProduct("AUD-SNY-WH1000XM5-BLK", "WH-1000XM5 wireless headphones, black", "Sony", "Headphones", 3_299_000, 130),
    DemoProduct("AUD-JBL-T520BT-BLK", "Tune 520BT on-ear headphones, black", "JBL", "Headphones", 449_000, 500),
    DemoProduct("AUD-SMS-BUDS2P-GRP", "Galaxy Buds2 Pro, graphite", "Samsung", "Headphones", 1_299_000, 260),
    DemoProduct("AUD-XMI-BUDS5-WHT", "Redmi Buds 5, white", "Xiaomi", "Headphones", 249_000, 450),
    DemoProduct("HOM-DSN-V15-DTCT", "V15 Detect cordless vacuum cleaner", "Dyson", "Home appliances", 6_999_000, 60),
    DemoProduct("HOM-XMI-S10-ROBOT", "Robot Vacuum S10, white", "Xiaomi", "Home appliances", 1_999_000, 180),
    DemoProduct("HOM-PHL-HD9350-KTL", "Series 5000 electric kettle, 1.7 l", "Philips", "Home appliances", 399_000, 400),
    DemoProduct("HOM-TFL-EY8018-AFR", "Easy Fry Max air fryer, 5 l", "Tefal", "Home appliances", 899_000, 220),
    DemoProduct("HOM-DLG-ECAM22-CFM", "Magnifica S bean-to-cup coffee machine", "De'Longhi", "Home appliances", 3_999_000, 75),
    DemoProduct("SPT-NKE-PEG41-42", "Air Zoom Pegasus 41 running shoes, size 42", "Nike", "Sports", 1_299_000, 160),
    DemoProduct("SPT-ADS-ULTRA-43", "Ultraboost Light running shoes, size 43", "adidas", "Sports", 1_599_000, 140),
    DemoProduct("SPT-GRM-FR265-BLK", "Forerunner 265 GPS running watch, black", "Garmin", "Sports", 4_499_000, 55),
    DemoProduct("SPT-XMI-BAND9-BLK", "Smart Band 9 fitness tracker, black", "Xiaomi", "Sports", 349_000, 480),
    DemoProduct("SPT-DCT-YOGA-8MM", "Yoga mat 8 mm, green", "Decathlon", "Sports", 129_900, 350),
)


def _product_row(product: DemoProduct) -> dict[str, object]:
    return dict(
        sku=product.sku,
        title=product.title,
        brand=product.brand,
        category=product.category,
        price=product.price,
        currency=CURRENCY,
        vat_rate=20,
        created_at=utcnow(),
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
            .values([dict(sku=p.sku, on_hand=p.on_hand, reserved=0) for p in DEMO_CATALOG])
            .on_conflict_do_nothing(index_elements=[col(Stock.sku)])
        )
    return len(added_skus)
