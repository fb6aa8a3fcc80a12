"""A believable marketplace catalog, generated: the same `count` always gives the same products
(SKUs GEN-0000001…), so seeds are repeatable and benchmarks comparable. Most titles are in
Russian, a third in English, as on a Russian marketplace that lists imported goods."""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cli.catalog_tree import KINDS, Kind

SKU_PREFIX = "GEN-"
NEWEST = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so the same seed gives the same catalog
AGE_DAYS = 730
IMAGES = "https://img.kassa.example"
MAX_COUNT = 1_000_000  # reviews and popularity: a long tail, cut where no real product goes

COLOURS = {
    "black": "чёрный", "white": "белый", "grey": "серый", "blue": "синий", "red": "красный",
    "green": "зелёный", "pink": "розовый", "beige": "бежевый", "yellow": "жёлтый",
    "purple": "фиолетовый",
}  # fmt: skip
SERIES = (
    "Nova",
    "Pro",
    "Max",
    "Lite",
    "Air",
    "Ultra",
    "Neo",
    "Edge",
    "Prime",
    "Flex",
    "One",
    "Plus",
    "Sport",
    "Classic",
)
HEADLINES = (
    "хит продаж",
    "новинка сезона",
    "выбор покупателей",
    "лучшая цена",
    "качество проверено временем",
)
HEADLINES_EN = (
    "a bestseller",
    "new this season",
    "customers' choice",
    "the best price",
    "quality that lasts",
)
PRAISE = (
    "Подходит для ежедневного использования.", "Гарантия производителя 12 месяцев.",
    "Быстрая доставка по всей России.",
    "Бережно упакован, в комплекте инструкция на русском языке.",
    "Покупатели отмечают отличное качество сборки.", "Хороший выбор в подарок.",
)  # fmt: skip
PRAISE_EN = (
    "Made for everyday use.", "12-month manufacturer's warranty.", "Fast delivery across Russia.",
    "Carefully packed, with a manual.", "Customers praise its build quality.", "A good gift.",
)  # fmt: skip


@dataclass(frozen=True)
class GeneratedProduct:
    sku: str
    title: str
    description: str
    brand: str
    category: str
    attributes: dict[str, str]
    price: int
    old_price: int | None
    vat_rate: int
    rating: float
    review_count: int
    popularity: int
    images: list[str]
    created_at: datetime
    on_hand: int


def generate(count: int, seed: int = 5) -> Iterator[GeneratedProduct]:
    rng = random.Random(seed)
    for number in range(1, count + 1):
        yield _product(rng, number, KINDS[rng.randrange(len(KINDS))])


def _product(rng: random.Random, number: int, kind: Kind) -> GeneratedProduct:
    brand = rng.choice(kind.brands)
    model = (
        f"{rng.choice(SERIES)} {rng.randint(2, 99)}{rng.choice(('', '', 'S', 'X', 'i'))}".strip()
    )
    attributes = {name: rng.choice(values) for name, values in kind.attributes.items()}
    if kind.coloured:
        attributes["colour"] = rng.choice(tuple(COLOURS))
    details = [value for name, value in attributes.items() if name not in ("colour", "size")]
    english = rng.random() < 0.33
    if english:
        colour = [attributes["colour"]] if "colour" in attributes else []
        title = ", ".join([f"{brand} {model} {kind.noun_en}", *details, *colour])
        headline, praise = rng.choice(HEADLINES_EN), " ".join(rng.sample(PRAISE_EN, 2))
        description = f"{brand} {model} {kind.noun_en}: {headline}. {praise}"
    else:
        colour = [COLOURS[attributes["colour"]]] if "colour" in attributes else []
        title = ", ".join([f"{kind.noun} {brand} {model}", *details, *colour])
        headline, praise = rng.choice(HEADLINES), " ".join(rng.sample(PRAISE, 2))
        description = f"{kind.noun} {brand} {model} — {headline}. {praise}"
    low, high = kind.price_rub
    roubles = max(low, int(round(rng.uniform(low, high), -2)) - 10)  # prices end in …90
    discounted = rng.random() < 0.3
    sku = f"{SKU_PREFIX}{number:07d}"
    reviews = min(int(rng.paretovariate(1.2)) - 1, MAX_COUNT)
    return GeneratedProduct(
        sku=sku,
        title=title,
        description=description,
        brand=brand,
        category=kind.category,
        attributes=attributes,
        price=roubles * 100,
        old_price=int(roubles * rng.uniform(1.1, 1.5)) * 100 if discounted else None,
        vat_rate=kind.vat_rate,
        rating=round(rng.uniform(3.0, 5.0), 1) if reviews else 0.0,
        review_count=reviews,
        popularity=min(int(rng.paretovariate(1.1) * 10) - 10, MAX_COUNT),
        images=[f"{IMAGES}/{sku}/{n}.jpg" for n in range(1, rng.randint(2, 6))],
        created_at=NEWEST - timedelta(seconds=rng.randrange(AGE_DAYS * 86_400)),
        on_hand=0 if rng.random() < 0.1 else rng.randint(1, 500),
    )
