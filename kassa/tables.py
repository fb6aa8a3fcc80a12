"""Every table of the gateway's database, defined once. Money columns are integer kopecks."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    Index,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlmodel import Field, SQLModel

from kassa.statuses import OrderStatus

LIVE_RESERVATION = "status IN ('held', 'committed')"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kwargs)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(unique=True, max_length=254)
    password_hash: str
    role: str = Field(default="customer", max_length=16)  # customer | support | admin
    status: str = Field(default="active", max_length=16)  # active | blocked
    display_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=16)  # E.164
    # Wrong passwords since the last right one; at the lockout threshold the account locks until
    # locked_until.
    failed_logins: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    locked_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = _timestamp()


class TokenFamily(SQLModel, table=True):
    """One login: the refresh tokens rotated from it and the access tokens they issued (claim
    `sid`). Revoked by logout, by reuse of a spent refresh token, or by blocking the account."""

    __tablename__ = "token_families"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    created_at: datetime = _timestamp()
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_reason: str | None = Field(default=None, max_length=16)  # logout | reuse | blocked


class RefreshToken(SQLModel, table=True):
    """A refresh token by its SHA-256 (the token itself is never stored); spent once it is used."""

    __tablename__ = "refresh_tokens"
    token_hash: str = Field(primary_key=True, max_length=64)
    family_id: uuid.UUID = Field(foreign_key="token_families.id", index=True)
    issued_at: datetime = _timestamp()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    spent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class LoginAttempts(SQLModel, table=True):
    """Login attempts of one account (by e-mail, existing or not) or one client address in the
    current window: in the database, so the limit holds across api processes."""

    __tablename__ = "login_attempts"
    scope: str = Field(primary_key=True, max_length=8)  # account | address
    subject: str = Field(primary_key=True, max_length=254)
    attempts: int
    window_started_at: datetime = Field(sa_type=DateTime(timezone=True))


class Address(SQLModel, table=True):
    """A customer's delivery address. Never edited, so an order's address stays what it was;
    deleting one hides it (deleted_at) and keeps it for the orders that name it."""

    __tablename__ = "addresses"
    __table_args__ = (
        Index(
            "addresses_one_default_per_user",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    recipient: str = Field(max_length=100)
    phone: str | None = Field(default=None, max_length=16)  # E.164
    country: str = Field(max_length=2)  # ISO 3166-1 alpha-2
    city: str = Field(max_length=100)
    postal_code: str = Field(max_length=16)
    line1: str = Field(max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    is_default: bool = False
    created_at: datetime = _timestamp()
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Category(SQLModel, table=True):
    """A node of the category tree; a product belongs to one leaf, and a search in a category
    covers its whole subtree."""

    __tablename__ = "categories"
    slug: str = Field(primary_key=True, max_length=128)
    parent: str | None = Field(
        default=None, foreign_key="categories.slug", max_length=128, index=True
    )
    name: str = Field(max_length=128)  # Russian, as the storefront shows it
    name_en: str = Field(max_length=128)


# Title over brand over description (weights A, B, C). The `russian` configuration stems Cyrillic
# words in Russian and Latin ones in English, so one vector serves both languages; ё is folded to е
# here and in queries, as people type either.
SEARCH_VECTOR = (
    "setweight(to_tsvector('russian'::regconfig, translate(title, 'ёЁ', 'еЕ')), 'A') || "
    "setweight(to_tsvector('russian'::regconfig, translate(brand, 'ёЁ', 'еЕ')), 'B') || "
    "setweight(to_tsvector('russian'::regconfig, translate(description, 'ёЁ', 'еЕ')), 'C')"
)


class Product(SQLModel, table=True):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="products_price_positive"),
        CheckConstraint(
            "old_price IS NULL OR old_price > price", name="products_old_price_above_price"
        ),
        Index("products_search", "search_vector", postgresql_using="gin"),
        # A category's shelf sorted the two usual ways; alone, the price index would walk past
        # every cheaper product of other categories first.
        Index("products_category_popularity", "category", text("popularity DESC"), "sku"),
        Index("products_category_price", "category", "price", "sku"),
        Index("products_popularity", text("popularity DESC"), "sku"),
        Index("products_price", "price", "sku"),
        Index("products_created_at", text("created_at DESC"), "sku"),
        Index("products_brand", "brand"),
    )
    sku: str = Field(primary_key=True, max_length=64)
    title: str
    description: str = Field(default="", sa_column_kwargs={"server_default": ""})
    brand: str = Field(max_length=128)
    category: str = Field(foreign_key="categories.slug", max_length=128)  # a leaf of the tree
    # Size, colour, material…: names and values as filters and facets take them
    # ({"colour": "black"}).
    # No index: an attribute narrows a category or a search, and a GIN index's posting list of a
    # common value ("colour": "black", a tenth of the catalog) took longer to read than the rows.
    attributes: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    price: int  # VAT included
    old_price: int | None = None  # the crossed-out price of a discount
    currency: str = Field(default="RUB", max_length=3)
    vat_rate: int = 20  # percent, included in price
    max_per_order: int | None = None  # how many one order may take; None: the cart's general limit
    # 0 to 5
    rating: float = Field(default=0, sa_column=Column(Double, nullable=False, server_default="0"))
    review_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # purchases, recent ones weigh more
    popularity: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    images: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    created_at: datetime = _timestamp()
    search_vector: str | None = Field(
        default=None, sa_column=Column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True))
    )


class SearchWord(SQLModel, table=True):
    """The words of titles and brands, for typo tolerance: a query word that is not one of them is
    swapped for its nearest by trigram similarity (pg_trgm), as PostgreSQL's manual suggests."""

    __tablename__ = "search_words"
    __table_args__ = (
        Index(
            "search_words_trigrams",
            "word",
            postgresql_using="gin",
            postgresql_ops={"word": "gin_trgm_ops"},
        ),
    )
    word: str = Field(primary_key=True, max_length=64)


class Stock(SQLModel, table=True):
    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint(
            "reserved >= 0 AND reserved <= on_hand", name="stock_reserved_within_on_hand"
        ),
    )
    sku: str = Field(primary_key=True, foreign_key="products.sku", max_length=64)
    on_hand: int = 0
    reserved: int = 0


class Cart(SQLModel, table=True):
    __tablename__ = "carts"
    __table_args__ = (
        # One open cart per customer; a checked-out cart stays for its order.
        Index(
            "carts_one_open_per_user",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    # Bumped by every change: a checkout is of one version (workflow id), a changed cart is a new
    # one.
    version: int = 1
    status: str = Field(default="open", max_length=16)  # open | checked_out
    promo_code: str | None = Field(default=None, foreign_key="promo_codes.code", max_length=32)
    updated_at: datetime = _timestamp()


class CartItem(SQLModel, table=True):
    __tablename__ = "cart_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="cart_items_quantity_positive"),)
    cart_id: uuid.UUID = Field(foreign_key="carts.id", primary_key=True)
    sku: str = Field(foreign_key="products.sku", primary_key=True, max_length=64)
    quantity: int
    # The unit price the customer last saw for this line: a different price now is shown as a
    # notice.
    price_when_added: int | None = None
    added_at: datetime = _timestamp()


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("cart_id", "cart_version", name="orders_one_per_cart_version"),
    )
    id: uuid.UUID = Field(primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    cart_id: uuid.UUID = Field(foreign_key="carts.id")
    cart_version: int
    workflow_id: str
    address_id: uuid.UUID | None = Field(default=None, foreign_key="addresses.id")
    status: str = Field(default=OrderStatus.CREATED, max_length=24, index=True)  # an OrderStatus
    subtotal: int
    discount: int = 0
    points: int = 0  # loyalty points redeemed, in kopecks
    vat: int
    total: int
    currency: str = Field(max_length=3)
    reservation_id: uuid.UUID | None = None
    hold_expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    reason: str | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    order_id: uuid.UUID = Field(foreign_key="orders.id", primary_key=True)
    sku: str = Field(foreign_key="products.sku", primary_key=True, max_length=64)
    title: str
    quantity: int
    unit_price: int
    line_total: int
    # The order's discount and points, shared out over its lines (pricing.py), and the VAT in what
    # is left.
    discount: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    points: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    vat: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class OrderEvent(SQLModel, table=True):
    """Timeline for the customer, audit for ops, outbox for downstream consumers."""

    __tablename__ = "order_events"
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    from_status: str | None = Field(default=None, max_length=24)  # an OrderStatus
    status: str = Field(max_length=24)  # an OrderStatus
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    at: datetime = _timestamp()


class Payment(SQLModel, table=True):
    """One payment attempt of an order: one intent at the acquirer."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("order_id", "attempt", name="payments_one_per_attempt"),)
    intent_id: str = Field(primary_key=True, max_length=64)
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    attempt: int
    status: str = Field(max_length=24)  # a PaymentStatus
    amount: int
    currency: str = Field(max_length=3)
    payment_url: str | None = None
    decline_code: str | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Reservation(SQLModel, table=True):
    __tablename__ = "reservations"
    __table_args__ = (
        # One live hold per order; a late payment may hold again after the first was released.
        Index(
            "reservations_one_live_per_order",
            "order_id",
            unique=True,
            postgresql_where=text(LIVE_RESERVATION),
        ),
        # One held claim per tap: the same tap sent again finds it instead of holding the stock
        # twice.
        Index(
            "reservations_one_held_claim_per_key",
            "claim_key",
            unique=True,
            postgresql_where=text("status = 'held'"),
        ),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # None for a claim: stock the gateway held for a tap before making its order
    # (activities/placement.py).
    order_id: uuid.UUID | None = Field(default=None, foreign_key="orders.id", index=True)
    # The tap a claim was taken for (its checkout's workflow id); None for holds the workflow took.
    claim_key: str | None = Field(default=None, max_length=200)
    status: str = Field(default="held", max_length=16, index=True)  # held | released | committed
    hold_expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ReservationLine(SQLModel, table=True):
    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="reservation_lines_quantity_positive"),)
    reservation_id: uuid.UUID = Field(foreign_key="reservations.id", primary_key=True)
    sku: str = Field(foreign_key="stock.sku", primary_key=True, max_length=64)
    quantity: int


class WebhookEvent(SQLModel, table=True):
    """The acquirer's events, stored before we answer 2xx; the id makes a replay a no-op."""

    __tablename__ = "webhook_events"
    id: str = Field(primary_key=True, max_length=64)
    type: str = Field(max_length=64)
    intent_id: str | None = Field(default=None, max_length=64, index=True)
    payload: dict[str, Any] = Field(sa_type=JSON)
    received_at: datetime = _timestamp()
    processed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class LedgerTransaction(SQLModel, table=True):
    """One movement of money (a charge, a refund) or of points, recorded once per reference."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("kind", "reference", name="ledger_one_per_reference"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # charge | refund | points_accrued | points_burnt | points_reversed | points_returned
    kind: str = Field(max_length=16)
    reference: str = Field(max_length=64)  # the intent or refund id at the acquirer
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    created_at: datetime = _timestamp()


class LedgerPosting(SQLModel, table=True):
    """Double entry: a transaction's postings sum to zero in each currency."""

    __tablename__ = "ledger_postings"
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    transaction_id: uuid.UUID = Field(foreign_key="ledger_transactions.id", index=True)
    account: str = Field(max_length=32)
    amount: int  # signed
    currency: str = Field(max_length=3)


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    id: str = Field(primary_key=True, max_length=64)  # the refund id at the acquirer
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    intent_id: str = Field(max_length=64)
    amount: int
    currency: str = Field(max_length=3)
    reason: str = Field(max_length=32)  # requested_by_admin | late_payment
    idempotency_key: str = Field(unique=True, max_length=128)
    created_at: datetime = _timestamp()


class PromoCode(SQLModel, table=True):
    """A promo code and how many of its uses are held by unpaid orders or final in paid ones.

    The limit is checked by the conditional UPDATE that holds a use, and enforced by the CHECK."""

    __tablename__ = "promo_codes"
    __table_args__ = (
        CheckConstraint("uses_held >= 0 AND uses_final >= 0", name="promo_codes_uses_not_negative"),
        CheckConstraint(
            "max_uses IS NULL OR uses_held + uses_final <= max_uses",
            name="promo_codes_uses_within_limit",
        ),
        CheckConstraint("kind IN ('percent', 'fixed')", name="promo_codes_kind"),
        CheckConstraint("value > 0 AND (kind = 'fixed' OR value <= 100)", name="promo_codes_value"),
    )
    code: str = Field(primary_key=True, max_length=32)  # upper case
    kind: str = Field(max_length=8)  # percent | fixed
    value: int  # percent (1..100), or kopecks off
    min_order: int = 0  # kopecks of the lines in scope
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    max_uses: int | None = None
    max_uses_per_customer: int | None = None
    # Scope: lines of these brands or under these categories (slugs); both empty: every line.
    brands: list[str] = Field(default_factory=list, sa_type=JSON)
    categories: list[str] = Field(default_factory=list, sa_type=JSON)
    uses_held: int = 0
    uses_final: int = 0
    created_at: datetime = _timestamp()


class PromoUse(SQLModel, table=True):
    """One order's use of a promo code: held at creation, final when PAID, released when it
    fails."""

    __tablename__ = "promo_uses"
    order_id: uuid.UUID = Field(foreign_key="orders.id", primary_key=True)
    code: str = Field(foreign_key="promo_codes.code", max_length=32, index=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    status: str = Field(default="held", max_length=16)  # held | final | released
    discount: int
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class LoyaltyAccount(SQLModel, table=True):
    """A customer's points (1 point = 1 kopeck off): `held` are promised to unpaid orders."""

    __tablename__ = "loyalty_accounts"
    __table_args__ = (
        CheckConstraint("held >= 0 AND held <= balance", name="loyalty_held_within_balance"),
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    balance: int = 0
    held: int = 0
    updated_at: datetime = _timestamp()


class LoyaltyMovement(SQLModel, table=True):
    """Every change to a loyalty account, once per (kind, reference): the customer's history."""

    __tablename__ = "loyalty_movements"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="loyalty_one_movement_per_reference"),
    )
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    kind: str = Field(max_length=16)  # held | released | burnt | accrued | reversed | returned
    reference: str = Field(max_length=64)  # the order id, or the refund id for a reversal
    points: int  # positive: how many points moved
    balance_after: int
    held_after: int
    at: datetime = _timestamp()
