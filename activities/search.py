"""Search over the catalog, on PostgreSQL alone.

- Full text: `products.search_vector` (title A, brand B, description C, the `russian`
  configuration, which stems Latin words in English), matched with every query word (the last one
  also as a prefix, for search as you type) and ranked by ts_rank.
- Typos: in queries of up to three words, a word that no title or brand has is also searched as its
  nearest vocabulary word by trigram similarity (pg_trgm, `search_words`), and the answer says so.
- Filters: category with its subtree, brands, price range, attributes, in stock.
- Keyset paging: the cursor carries the sort keys of the last product shown, so a page never
  repeats or skips a product when products are added meanwhile.
- Facets: counts of brands, categories, price buckets and attribute values over the whole
  filtered result; counted up to about COUNTED_UP_TO matches, estimated from a repeatable sample
  of the table past that (`exact` says which).
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.catalog import WORD, ProductView, normalized, subtree
from kassa.cursors import decode_cursor, encode_cursor
from kassa.errors import Invalid

MAX_QUERY_WORDS = 8
MAX_WORD_LENGTH = 64
TYPO_QUERY_WORDS = 3  # longer queries say enough without guessing at their words
TYPO_MIN_LENGTH = 4
# A query that could be a SKU as the catalog spells them (admin_products.Sku).
SKU_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Bucket bounds in kopecks: under 1 000 ₽, 1 000 – 3 000 ₽, … 100 000 ₽ and more.
PRICE_BOUNDS = (100_000, 300_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000)
FACET_VALUES = 30  # per facet, the most frequent
# Facets and totals are counted up to about COUNTED_UP_TO matches, and estimated past that (see
# _facets and the README's Search): so a search stays within 150 ms at a million products.
COUNTED_UP_TO = 10_000
PROBE_ROWS = 5_000
SAMPLED_MATCHES = 250


@dataclass(frozen=True)
class SortKey:
    expression: str  # SQL over `p` (products) and `rank`
    descending: bool
    kind: type


RANK = SortKey("rank", True, float)
POPULARITY = SortKey("p.popularity", True, int)
SORTS: dict[str, tuple[SortKey, ...]] = {
    "relevance": (RANK, POPULARITY),
    "popularity": (POPULARITY,),
    "price_asc": (SortKey("p.price", False, int),),
    "price_desc": (SortKey("p.price", True, int),),
    "rating": (SortKey("p.rating", True, float), SortKey("p.review_count", True, int)),
    "newest": (SortKey("p.created_at", True, datetime),),
}


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    category: str | None = None
    brands: tuple[str, ...] = ()
    price_min: int | None = None
    price_max: int | None = None
    attributes: tuple[
        tuple[str, str], ...
    ] = ()  # (name, value); values of one name are alternatives
    in_stock: bool = False
    sort: str = "relevance"
    cursor: str | None = None
    limit: int = 20


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True)
class CategoryCount(FacetValue):
    name: str  # the value is the slug


F = TypeVar("F", bound=FacetValue)


@dataclass(frozen=True)
class PriceBucket:
    min: int | None  # kopecks, inclusive; None: no lower bound
    max: int | None  # kopecks, exclusive; None: no upper bound
    count: int


@dataclass(frozen=True)
class Facets:
    brands: list[FacetValue] = field(default_factory=list)
    categories: list[CategoryCount] = field(default_factory=list)
    price: list[PriceBucket] = field(default_factory=list)
    attributes: dict[str, list[FacetValue]] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    items: list[ProductView]
    facets: Facets
    total: int
    exact: bool  # total and facet counts counted, not estimated from a sample
    next_cursor: str | None
    corrections: dict[str, str]  # query word -> the vocabulary word also searched for


@dataclass
class _Where:
    """SQL conditions over `p` and their parameters, built from the query, never from its text."""

    conditions: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, condition: str, **params: Any) -> None:
        self.conditions.append(condition)
        self.params.update(params)

    def sql(self) -> str:
        return " AND ".join(self.conditions) or "TRUE"


async def search(session: AsyncSession, query: SearchQuery) -> SearchResult:
    _check(query)
    # Each statement of a search is short: parallel workers cost more to start than they save,
    # and under load they take the cores other searches need.
    await session.exec(text("SET LOCAL max_parallel_workers_per_gather = 0"))  # type: ignore[call-overload]
    terms = [word[:MAX_WORD_LENGTH] for word in WORD.findall(normalized(query.text))][
        :MAX_QUERY_WORDS
    ]
    nearest = await _nearest_words(session, terms) if 0 < len(terms) <= TYPO_QUERY_WORDS else {}
    where = await _conditions(session, query, terms, nearest)
    sort = "popularity" if query.sort == "relevance" and not terms else query.sort
    items, next_cursor = await _page(session, query, where, SORTS[sort], ranked=bool(terms))
    facets, total, exact = await _facets(session, where)
    corrections = {term: word for term, word in nearest.items() if word != term}
    return SearchResult(items, facets, total, exact, next_cursor, corrections)


async def _conditions(
    session: AsyncSession, query: SearchQuery, terms: list[str], nearest: dict[str, str]
) -> _Where:
    where = _Where()
    if terms:
        matches = "p.search_vector @@ to_tsquery('russian', :tsquery)"
        exact = query.text.strip()
        if SKU_LIKE.fullmatch(exact):
            # A SKU typed as printed is also found whole: the text parser splits some on their
            # own terms (`SKU-77E1DE7AE6`: `77E1` reads as a number), so its words may not match.
            where.add(f"(p.sku = :sku OR {matches})", sku=exact, tsquery=_tsquery(terms, nearest))
        else:
            where.add(matches, tsquery=_tsquery(terms, nearest))
    if query.category is not None:
        categories = await subtree(session, query.category)
        # Equality for a leaf, so that the planner sees one category and walks its index in order.
        if len(categories) == 1:
            where.add("p.category = :category", category=categories[0])
        else:
            where.add("p.category = ANY(:categories)", categories=categories)
    if query.brands:
        where.add("p.brand = ANY(:brands)", brands=list(query.brands))
    # With words or brands, a price range is checked on their rows: PostgreSQL would otherwise
    # AND them with a bitmap of every product in the range (40 % of the catalog for "under
    # 10 000 ₽": 30 ms of 35 at a million). A shelf or the catalog walks (category,) price indexes.
    price = "(p.price + 0)" if terms or query.brands else "p.price"
    if query.price_min is not None:
        where.add(f"{price} >= :price_min", price_min=query.price_min)
    if query.price_max is not None:
        where.add(f"{price} <= :price_max", price_max=query.price_max)
    for n, (name, values) in enumerate(_grouped(query.attributes).items()):
        alternatives = {
            f"attribute_{n}_{m}": json.dumps({name: value}) for m, value in enumerate(values)
        }
        where.add(
            "("
            + " OR ".join(f"p.attributes @> CAST(:{key} AS jsonb)" for key in alternatives)
            + ")",
            **alternatives,
        )
    if query.in_stock:
        # A lookup per candidate by primary key: as a semi-join, PostgreSQL misjudges how many
        # are in stock (it cannot estimate on_hand > reserved) and scans the whole stock table.
        where.add("(SELECT s.on_hand - s.reserved FROM stock s WHERE s.sku = p.sku) > 0")
    return where


def _check(query: SearchQuery) -> None:
    if query.sort not in SORTS:
        raise Invalid("unknown_sort", f"sort must be one of {', '.join(SORTS)}.")
    if not 1 <= query.limit <= 100:
        raise Invalid("invalid_limit", "limit must be between 1 and 100.")
    if (
        query.price_min is not None
        and query.price_max is not None
        and query.price_min > query.price_max
    ):
        raise Invalid("invalid_price_range", "price_min is above price_max: swap them.")


def _grouped(attributes: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in attributes:
        grouped.setdefault(name, []).append(value)
    return grouped


def _tsquery(terms: list[str], nearest: dict[str, str]) -> str:
    """`to_tsquery` input from words of letters and digits only, so no operator of the user's gets
    in. The last word is also a prefix (typing goes on), unless it is a word of the vocabulary
    already: a prefix costs the index a scan of every word it starts."""
    parts = []
    for n, term in enumerate(terms):
        typing = n == len(terms) - 1 and len(term) >= 3 and nearest.get(term) != term
        spelled = f"{term}:*" if typing else term
        parts.append(
            f"({spelled} | {nearest[term]})" if nearest.get(term, term) != term else spelled
        )
    return " & ".join(parts)


NEAREST_WORDS = text("""
SELECT t.term, nearest.word
FROM unnest(CAST(:terms AS text[])) AS t(term)
CROSS JOIN LATERAL (
    SELECT word FROM search_words WHERE word % t.term ORDER BY word <-> t.term, word LIMIT 1
) AS nearest
""")


async def _nearest_words(session: AsyncSession, terms: list[str]) -> dict[str, str]:
    """For each term of 4+ letters, the vocabulary word nearest to it (itself, if it is one); a
    term nothing is near enough to is left out."""
    unsure = [term for term in terms if len(term) >= TYPO_MIN_LENGTH and not term.isdigit()]
    if not unsure:
        return {}
    rows = await session.exec(NEAREST_WORDS, params={"terms": unsure})  # type: ignore[call-overload]
    return dict(rows.all())


async def _page(
    session: AsyncSession,
    query: SearchQuery,
    where: _Where,
    keys: tuple[SortKey, ...],
    ranked: bool,
) -> tuple[list[ProductView], str | None]:
    rank = (
        "ts_rank(p.search_vector, to_tsquery('russian', :tsquery))::float8"
        if ranked
        else "0::float8"
    )
    # Every match is ranked anyway; OFFSET 0 keeps the cursor's conditions on `rank` out of the
    # subquery, where PostgreSQL would rank each row again for each of them.
    fence = "OFFSET 0" if ranked and keys[0] is RANK else ""
    params = dict(where.params, limit=query.limit + 1)
    after = "TRUE"
    if query.cursor is not None:
        after = _after(keys, _decode_cursor(query.cursor, query.sort, keys), params)
    order = ", ".join(f"{key.expression} {'DESC' if key.descending else 'ASC'}" for key in keys)
    key_columns = ", ".join(f"{key.expression} AS key_{n}" for n, key in enumerate(keys))
    rows = (
        await session.exec(  # type: ignore[call-overload]
            text(f"""
            SELECT p.sku, p.title, p.brand, p.category, p.price, p.old_price, p.currency,
                   p.vat_rate, p.rating, p.review_count, p.images->>0 AS image,
                   coalesce((SELECT s.on_hand - s.reserved FROM stock s WHERE s.sku = p.sku), 0)
                       AS available,
                   {key_columns}
            FROM (SELECT p.*, {rank} AS rank FROM products p WHERE {where.sql()} {fence}) AS p
            WHERE {after}
            ORDER BY {order}, p.sku
            LIMIT :limit
            """),
            params=params,
        )
    ).all()
    items = [ProductView(*row[:12]) for row in rows[: query.limit]]
    if len(rows) <= query.limit:
        return items, None
    last = rows[query.limit - 1]
    return items, _encode_cursor(query.sort, [*last[12:], last.sku])


def _after(keys: tuple[SortKey, ...], after: list[Any], params: dict[str, Any]) -> str:
    """Rows after the cursor in the order of `keys` then SKU: (k0 past c0) or (k0 = c0 and k1
    past c1) … or (all equal and sku > c_sku); plus k0 at or past c0 alone, which an index can
    use."""
    *values, sku = after
    params.update({f"after_{n}": value for n, value in enumerate(values)}, after_sku=sku)
    past = [
        f"{key.expression} {'<' if key.descending else '>'} :after_{n}"
        for n, key in enumerate(keys)
    ]
    past.append("p.sku > :after_sku")
    equal = [f"{key.expression} = :after_{n}" for n, key in enumerate(keys)]
    alternatives = [" AND ".join([*equal[:n], past[n]]) for n in range(len(past))]
    first = f"{keys[0].expression} {'<=' if keys[0].descending else '>='} :after_0"
    return f"{first} AND ({' OR '.join(f'({a})' for a in alternatives)})"


def _encode_cursor(sort: str, after: list[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in after]
    return encode_cursor({"sort": sort, "after": plain})


def _decode_cursor(cursor: str, sort: str, keys: tuple[SortKey, ...]) -> list[Any]:
    wrong = Invalid(
        "invalid_cursor", "This cursor is not one this search gave: start again without it."
    )
    try:
        decoded = decode_cursor(cursor)
        after = decoded["after"]
        if decoded["sort"] != sort or not isinstance(after, list) or len(after) != len(keys) + 1:
            raise wrong
        values = [_cursor_value(value, key.kind) for value, key in zip(after, keys, strict=False)]
        sku = after[-1]
        # A SKU as the catalog has them: a forged one must not reach PostgreSQL (NUL) or the driver
        # (surrogates).
        if not isinstance(sku, str) or len(sku) > 64 or "\x00" in sku:
            raise wrong
        sku.encode()  # UnicodeEncodeError is a ValueError: invalid_cursor
    except (ValueError, TypeError, KeyError):
        raise wrong from None
    return [*values, after[-1]]


def _cursor_value(value: Any, kind: type) -> Any:
    if kind is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if (
        kind is int
        and isinstance(value, int)
        and not isinstance(value, bool)
        and abs(value) < 2**63
    ):
        return value
    raise ValueError("a cursor value of the wrong type")


async def _facets(session: AsyncSession, where: _Where) -> tuple[Facets, int, bool]:
    """Facets and the total, counted when about COUNTED_UP_TO products match or fewer; past that,
    estimated from a sample of the table holding at least SAMPLED_MATCHES of the matches, since
    counting a million rows one by one takes longer than a shopper waits. A first sample of
    about PROBE_ROWS products tells which it is (and, for a broad search, is the estimate itself).
    Samples are the same for the same data (REPEATABLE), so paging shows the same figures."""
    products = await _scalar(
        session, "SELECT greatest(reltuples, 1) FROM pg_class WHERE relname = 'products'", {}
    )
    probe = min(100.0, 100 * PROBE_ROWS / products)
    facets, estimated = await _counted(session, where, _sample(probe), 100 / probe)
    if probe == 100:
        return facets, estimated, True
    if estimated <= COUNTED_UP_TO:
        return *await _counted(session, where, "", 1.0), True
    if estimated * probe / 100 < SAMPLED_MATCHES:
        share = 100 * SAMPLED_MATCHES / estimated
        facets, estimated = await _counted(session, where, _sample(share), 100 / share)
    return facets, estimated, False


def _sample(percent: float) -> str:
    return "" if percent >= 100 else f"TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (0)"


async def _scalar(session: AsyncSession, sql: str, params: dict[str, Any]) -> Any:
    return (await session.exec(text(sql), params=params)).scalar_one()  # type: ignore[call-overload]


async def _counted(
    session: AsyncSession, where: _Where, sample: str, scale: float
) -> tuple[Facets, int]:
    """Facet counts over the matching products (of a sample, if given), each multiplied by
    `scale`, and their total."""
    rows = await session.exec(  # type: ignore[call-overload]
        text(f"""
        WITH matched AS MATERIALIZED (
            SELECT p.brand, p.category, p.price, p.attributes
            FROM products p {sample} WHERE {where.sql()}
        )
        SELECT 'brand' AS facet, NULL AS name, brand AS value, count(*) AS count
        FROM matched GROUP BY brand
        UNION ALL
        SELECT 'category', min(c.name), matched.category, count(*)
        FROM matched JOIN categories c ON c.slug = matched.category GROUP BY matched.category
        UNION ALL
        SELECT 'price', NULL, width_bucket(price, CAST(:price_bounds AS int[]))::text, count(*)
        FROM matched GROUP BY 3
        UNION ALL
        SELECT 'attribute', a.key, a.value, count(*)
        FROM matched, jsonb_each_text(matched.attributes) AS a GROUP BY a.key, a.value
        """),
        params=dict(where.params, price_bounds=list(PRICE_BOUNDS)),
    )
    brands: list[FacetValue] = []
    categories: list[CategoryCount] = []
    buckets: dict[int, int] = {}
    attributes: dict[str, list[FacetValue]] = {}
    for facet, name, value, exact_count in rows:
        count = round(exact_count * scale)
        if facet == "brand":
            brands.append(FacetValue(value, count))
        elif facet == "category":
            categories.append(CategoryCount(value, count, name))
        elif facet == "price":
            buckets[int(value)] = count
        else:
            attributes.setdefault(name, []).append(FacetValue(value, count))
    bounds = (None, *PRICE_BOUNDS, None)
    facets = Facets(
        brands=_most_frequent(brands),
        categories=_most_frequent(categories),
        price=[PriceBucket(bounds[n], bounds[n + 1], buckets[n]) for n in sorted(buckets)],
        attributes={name: _most_frequent(values) for name, values in sorted(attributes.items())},
    )
    return facets, sum(brand.count for brand in brands)


def _most_frequent(values: list[F]) -> list[F]:
    return sorted(values, key=lambda v: (-v.count, v.value))[:FACET_VALUES]
