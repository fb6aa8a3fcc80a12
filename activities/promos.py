"""Promo codes: created by admins, put on a cart by customers, and used like stock.

A use is held in the transaction that creates the order, final in the one that marks it PAID,
and given back in the one that ends it unpaid. Holding is a conditional UPDATE
(`uses_held + uses_final < max_uses`), so under any concurrency the limit is never exceeded;
the table's CHECK is the last line of defence. The per-customer limit is counted while the
caller holds the customer's loyalty account row (loyalty.lock_account), which serializes one
customer's order creations.

A late payment that completes an ended order takes its use back only if the limits still
allow it; if they do not, the order cannot be completed at its price and the payment is
refunded (refunds.settle_late_payment).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.pricing import PromoTerms
from kassa.errors import Conflict, Invalid, NotFound
from kassa.tables import Category, PromoCode, PromoUse, utcnow

NOT_STARTED, EXPIRED, USED_UP, CUSTOMER_LIMIT = (
    "not_started",
    "expired",
    "used_up",
    "customer_limit_reached",
)
COUNTED_USES = ("held", "final")


class PromoUnavailable(Conflict):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(
            "promo_unavailable",
            f"Promo code {code} cannot be used ({reason}): remove it with DELETE /cart/promo,"
            " or change the cart.",
            promo_code=code,
            promo_status=reason,
        )


@dataclass(frozen=True)
class PromoView:
    """A promo code as an admin sees it."""

    code: str
    kind: str
    value: int
    min_order: int
    starts_at: datetime
    ends_at: datetime | None
    max_uses: int | None
    max_uses_per_customer: int | None
    brands: list[str]
    categories: list[str]
    uses_held: int
    uses_final: int

    @classmethod
    def of(cls, promo: PromoCode) -> "PromoView":
        return cls(**{name: getattr(promo, name) for name in cls.__dataclass_fields__})


def normalized(code: str) -> str:
    return code.strip().upper()


def terms(promo: PromoCode) -> PromoTerms:
    return PromoTerms(
        promo.code,
        promo.kind,
        promo.value,
        promo.min_order,
        tuple(promo.brands),
        tuple(promo.categories),
    )


async def create(session: AsyncSession, fields: dict[str, Any]) -> PromoCode:
    """Refused (409) if the code exists, so a repeated create changes nothing."""
    categories = list(fields.get("categories") or [])
    known = set(
        (await session.exec(select(Category.slug).where(col(Category.slug).in_(categories)))).all()
    )
    if unknown := sorted(set(categories) - known):
        raise Invalid(
            "unknown_category",
            f"No category {unknown[0]!r}: GET /catalog/categories lists them.",
            categories=unknown,
        )
    fields = fields | {
        "code": normalized(fields["code"]),
        "starts_at": fields.get("starts_at") or utcnow(),
    }
    created = await session.exec(
        insert(PromoCode)
        .values(**fields, uses_held=0, uses_final=0, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(PromoCode)
    )
    promo: PromoCode | None = created.scalar_one_or_none()
    if promo is None:
        raise Conflict(
            "promo_exists", f"Promo code {fields['code']} exists already: choose another code."
        )
    return promo


async def list_promos(session: AsyncSession, limit: int = 100) -> list[PromoCode]:
    return list(
        await session.exec(
            select(PromoCode).order_by(col(PromoCode.created_at).desc()).limit(limit)
        )
    )


async def find(session: AsyncSession, code: str) -> PromoCode:
    promo = await session.get(PromoCode, normalized(code))
    if promo is None:
        raise NotFound("promo_not_found", f"No promo code {normalized(code)}: check its spelling.")
    return promo


async def _customer_uses(session: AsyncSession, code: str, user_id: uuid.UUID) -> int:
    query = (
        select(func.count())
        .select_from(PromoUse)
        .where(
            PromoUse.code == code,
            PromoUse.user_id == user_id,
            col(PromoUse.status).in_(COUNTED_USES),
        )
    )
    return int((await session.exec(query)).one())


async def unavailable_reason(
    session: AsyncSession, promo: PromoCode, user_id: uuid.UUID, now: datetime
) -> str | None:
    """Why this customer cannot use the code now (None: they can): its window or its limits."""
    if now < promo.starts_at:
        return NOT_STARTED
    if promo.ends_at is not None and now >= promo.ends_at:
        return EXPIRED
    if promo.max_uses is not None and promo.uses_held + promo.uses_final >= promo.max_uses:
        return USED_UP
    if (
        promo.max_uses_per_customer is not None
        and await _customer_uses(session, promo.code, user_id) >= promo.max_uses_per_customer
    ):
        return CUSTOMER_LIMIT
    return None


def _room_left() -> ColumnElement[bool]:
    return or_(
        col(PromoCode.max_uses).is_(None),
        col(PromoCode.uses_held) + col(PromoCode.uses_final) < col(PromoCode.max_uses),
    )


async def hold(
    session: AsyncSession, promo: PromoCode, order_id: uuid.UUID, user_id: uuid.UUID, discount: int
) -> None:
    """Hold one use for the order, or raise PromoUnavailable. The caller holds the customer's
    account lock."""
    reason = await unavailable_reason(session, promo, user_id, utcnow())
    if reason is not None:
        raise PromoUnavailable(promo.code, reason)
    held = await session.exec(
        update(PromoCode)
        .where(col(PromoCode.code) == promo.code, _room_left())
        .values(uses_held=col(PromoCode.uses_held) + 1)
        .returning(col(PromoCode.code))
    )
    if held.scalar_one_or_none() is None:
        raise PromoUnavailable(promo.code, USED_UP)
    session.add(
        PromoUse(
            order_id=order_id, code=promo.code, user_id=user_id, status="held", discount=discount
        )
    )


async def _move_use(
    session: AsyncSession, order_id: uuid.UUID, from_status: str, to_status: str
) -> str | None:
    """The use's guarded transition; its code if it moved, None if there was none in
    `from_status`."""
    moved = await session.exec(
        update(PromoUse)
        .where(col(PromoUse.order_id) == order_id, col(PromoUse.status) == from_status)
        .values(status=to_status, updated_at=utcnow())
        .returning(col(PromoUse.code))
    )
    return moved.scalar_one_or_none()


async def finalise(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    """The order is PAID: its held use is final (its code returned). Idempotent: a final use is
    left as it is."""
    code = await _move_use(session, order_id, "held", "final")
    if code is not None:
        await session.exec(
            update(PromoCode)
            .where(col(PromoCode.code) == code)
            .values(
                uses_held=col(PromoCode.uses_held) - 1, uses_final=col(PromoCode.uses_final) + 1
            )
        )
    return code


async def release(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    """The order ended unpaid: its held use goes back to the code (returned). Idempotent."""
    code = await _move_use(session, order_id, "held", "released")
    if code is not None:
        await session.exec(
            update(PromoCode)
            .where(col(PromoCode.code) == code)
            .values(uses_held=col(PromoCode.uses_held) - 1)
        )
    return code


async def reclaim(session: AsyncSession, order_id: uuid.UUID) -> str | None:
    """A late payment completes the ended order: its released use becomes final if the limits
    still allow it (the validity window is not asked again: the order was made within it);
    otherwise PromoUnavailable. The caller holds the customer's account lock."""
    use = await session.get(PromoUse, order_id)
    if use is None or use.status != "released":
        return None
    promo = await session.get_one(PromoCode, use.code)
    over_customer_limit = (
        promo.max_uses_per_customer is not None
        and await _customer_uses(session, promo.code, use.user_id) >= promo.max_uses_per_customer
    )
    taken = await session.exec(
        update(PromoCode)
        .where(col(PromoCode.code) == promo.code, _room_left())
        .values(uses_final=col(PromoCode.uses_final) + 1)
        .returning(col(PromoCode.code))
    )
    if over_customer_limit or taken.scalar_one_or_none() is None:
        raise PromoUnavailable(promo.code, CUSTOMER_LIMIT if over_customer_limit else USED_UP)
    return await _move_use(session, order_id, "released", "final")
