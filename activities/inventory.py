"""Inventory: hold stock for an order, then commit it (sold) or release it (back on the shelf).
The gateway holds it before the order exists, as a claim that the order then takes (`claim`,
`attach`).

Invariant: 0 <= reserved <= on_hand for every SKU, under any concurrency. Every change is a
conditional UPDATE that checks availability in the same statement (never read-then-write),
taken in SKU order so that two orders never wait on each other's rows in a cycle. The table's
CHECK constraint is the last line of defence.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, or_, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from kassa.errors import Conflict, Invalid, NotFound
from kassa.tables import Product, Reservation, ReservationLine, Stock, utcnow


@dataclass(frozen=True)
class StockLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class StockLevel:
    sku: str
    on_hand: int
    reserved: int
    available: int


class OutOfStock(Conflict):
    def __init__(self, skus: list[str]) -> None:
        super().__init__(
            "out_of_stock", f"Not enough stock for {', '.join(skus)}: change the cart.", skus=skus
        )
        self.skus = skus


def _merged(lines: list[StockLine]) -> list[StockLine]:
    quantities: dict[str, int] = {}
    for line in lines:
        if line.quantity <= 0:
            raise Invalid("invalid_quantity", f"Quantity of {line.sku} must be positive.")
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    if not quantities:
        raise Invalid("empty_order", "Nothing to reserve.")
    return [StockLine(sku, quantities[sku]) for sku in sorted(quantities)]


# Every line held or none, in one statement: the rows are locked in SKU order and checked
# (`available`), and only if all of them have enough are they updated and the claim recorded.
# Run in autocommit, a hot SKU's row is locked only while this statement runs; a sold-out SKU's
# row is not locked at all (its snapshot fails `available` before any lock is asked for), so a
# flash sale's losers do not queue for it. A claim already held under the same key (the same tap,
# tried again after its answer was lost) is returned instead (`earlier`), and nothing more is
# held. `wanted` is the lines: given, or a cart's items (`_CART_CLAIM`).
_HOLD_WANTED = """available AS (
    SELECT s.sku FROM stock s JOIN wanted w ON w.sku = s.sku
    WHERE s.on_hand - s.reserved >= w.quantity
    ORDER BY s.sku FOR UPDATE OF s
), held AS (
    UPDATE stock s SET reserved = s.reserved + w.quantity FROM wanted w
    WHERE s.sku = w.sku AND (SELECT count(*) FROM available) = (SELECT count(*) FROM wanted)
    RETURNING s.sku
), claim AS (
    INSERT INTO reservations
        (id, order_id, claim_key, status, hold_expires_at, created_at, updated_at)
    SELECT :reservation_id, NULL, :claim_key, 'held', :hold_expires_at, now(), now()
    WHERE EXISTS (SELECT FROM held)
    RETURNING id, hold_expires_at
), claimed_lines AS (
    INSERT INTO reservation_lines (reservation_id, sku, quantity)
    SELECT claim.id, w.sku, w.quantity FROM claim, wanted w
)
SELECT 'claimed' AS kind, id, hold_expires_at, NULL::varchar AS sku FROM earlier
UNION ALL SELECT 'claimed', id, hold_expires_at, NULL FROM claim
UNION ALL SELECT 'available', NULL, NULL, sku FROM available
UNION ALL SELECT 'wanted', NULL, NULL, sku FROM wanted"""
_EARLIER = """earlier AS (
    SELECT id, hold_expires_at FROM reservations WHERE claim_key = :claim_key AND status = 'held'
)"""
_CLAIM = text(f"""WITH {_EARLIER}, wanted AS (
    SELECT sku, quantity
    FROM unnest(CAST(:skus AS varchar[]), CAST(:quantities AS integer[])) AS w(sku, quantity)
    WHERE NOT EXISTS (SELECT FROM earlier)
), {_HOLD_WANTED}""")
# A Pay Now tap's claim in one round trip: the order an earlier tap on the same cart version
# placed (`placed`: then nothing is held), or the cart's items held as `_CLAIM` holds lines.
_CART_CLAIM = text(f"""WITH {_EARLIER}, placed AS (
    SELECT id FROM orders WHERE cart_id = :cart_id AND cart_version = :cart_version
), wanted AS (
    SELECT sku, quantity FROM cart_items
    WHERE cart_id = :cart_id
        AND NOT EXISTS (SELECT FROM earlier) AND NOT EXISTS (SELECT FROM placed)
), {_HOLD_WANTED}
UNION ALL SELECT 'placed', id, NULL, NULL FROM placed""")


@dataclass(frozen=True)
class Claimed:
    reservation_id: uuid.UUID
    hold_expires_at: datetime


@dataclass(frozen=True)
class Placed:
    """What `claim_cart` found instead of claiming: the order an earlier tap placed."""

    order_id: uuid.UUID


async def claim(
    session: AsyncSession,
    claim_key: str,
    reservation_id: uuid.UUID,
    lines: list[StockLine],
    hold_expires_at: datetime,
) -> Claimed:
    """Hold every line, or none (raises OutOfStock naming the short SKUs), as a reservation with no
    order yet: a claim. The one way stock is held: by the gateway in autocommit, committed at once
    (a session of `kassa.db.autocommit_scope`; `claim_cart`, the same statement over a cart's
    items), and by a late payment inside its transaction.
    Idempotent on `claim_key`: while a claim under it is held, it is returned as it is (its own id
    and deadline), whether this call's twin took it a moment ago or an earlier try that never got
    its answer. Its taker gives it to its order with `attach`, or releases it with
    `release_claim`; the hold sweeper releases a claim left without an order."""
    lines = _merged(lines)
    params = {
        "claim_key": claim_key,
        "skus": [line.sku for line in lines],
        "quantities": [line.quantity for line in lines],
        "reservation_id": reservation_id,
        "hold_expires_at": hold_expires_at,
    }
    claimed = _claimed(await _run_claim(session, _CLAIM, params))
    if claimed is None:  # the lines were merged above: never empty
        raise Invalid("empty_order", "Nothing to reserve.")
    return claimed


async def claim_cart(
    session: AsyncSession,
    claim_key: str,
    reservation_id: uuid.UUID,
    cart_id: uuid.UUID,
    cart_version: int,
    hold_expires_at: datetime,
) -> Claimed | Placed | None:
    """`claim` of a cart's items, in one round trip (a flash sale's crowd is answered by it); or
    the order an earlier tap on the same cart version placed, and then nothing is held; None for a
    cart with nothing in it. Raises OutOfStock. Idempotent as `claim`."""
    params = {
        "claim_key": claim_key,
        "cart_id": cart_id,
        "cart_version": cart_version,
        "reservation_id": reservation_id,
        "hold_expires_at": hold_expires_at,
    }
    rows = await _run_claim(session, _CART_CLAIM, params)
    placed = [row.id for row in rows if row.kind == "placed"]
    return Placed(placed[0]) if placed else _claimed(rows)


async def _run_claim(
    session: AsyncSession, statement: TextClause, params: dict[str, Any]
) -> list[Any]:
    # sqlmodel's `exec` runs a text() too; only its overloads leave it out (as in search.py).
    try:
        return list((await session.exec(statement, params=params)).all())  # type: ignore[call-overload]
    except IntegrityError:
        # A twin under the same key claimed between this statement's snapshot and its insert (the
        # whole statement was undone): asked again, it finds the twin's claim. Only the gateway's
        # taps have twins, in autocommit: no transaction to end, and a rollback would expire the
        # caller's objects.
        return list((await session.exec(statement, params=params)).all())  # type: ignore[call-overload]


def _claimed(rows: list[Any]) -> Claimed | None:
    """The claim the statement took or found; None if nothing was wanted; else OutOfStock."""
    for row in rows:
        if row.kind == "claimed":
            return Claimed(row.id, row.hold_expires_at)
    wanted = sorted(row.sku for row in rows if row.kind == "wanted")
    if not wanted:
        return None
    available = {row.sku for row in rows if row.kind == "available"}
    raise OutOfStock([sku for sku in wanted if sku not in available])


async def attach(session: AsyncSession, reservation_id: uuid.UUID, order_id: uuid.UUID) -> None:
    """The claim becomes the order's reservation, in the order's transaction. Idempotent: a claim
    this order has already is its own still."""
    attached = await session.exec(
        update(Reservation)
        .where(
            col(Reservation.id) == reservation_id,
            or_(col(Reservation.order_id).is_(None), col(Reservation.order_id) == order_id),
            col(Reservation.status) == "held",
        )
        .values(order_id=order_id, updated_at=utcnow())
        .returning(col(Reservation.id))
    )
    if attached.scalar_one_or_none() is None:
        raise Conflict(
            "claim_lost",
            "The stock held for this tap was given back before its order was made:"
            " tap Pay Now again.",
        )


async def _settle(session: AsyncSession, reservation_id: uuid.UUID, to_status: str) -> Reservation:
    """held → released or committed, once; a repeated call finds it settled and changes nothing."""
    settled = await session.exec(
        update(Reservation)
        .where(col(Reservation.id) == reservation_id, col(Reservation.status) == "held")
        .values(status=to_status, updated_at=utcnow())
        .returning(col(Reservation.id))
    )
    if settled.scalar_one_or_none() is not None:
        reservation_lines = await session.exec(
            select(ReservationLine)
            .where(ReservationLine.reservation_id == reservation_id)
            .order_by(col(ReservationLine.sku))
        )
        for line in reservation_lines:
            change = {"reserved": col(Stock.reserved) - line.quantity}
            if to_status == "committed":
                change["on_hand"] = col(Stock.on_hand) - line.quantity
            await session.exec(update(Stock).where(col(Stock.sku) == line.sku).values(**change))
    reservation = await session.get(Reservation, reservation_id, populate_existing=True)
    if reservation is None:
        raise NotFound("unknown_reservation", f"No reservation {reservation_id}.")
    if reservation.status != to_status:
        raise Conflict(
            "reservation_settled", f"Reservation {reservation_id} is already {reservation.status}."
        )
    return reservation


async def release_claim(session: AsyncSession, reservation_id: uuid.UUID) -> bool:
    """A claim's stock back on the shelf, unless an order has it by now (a double tap's twin
    shares the claim and may have attached it first); True if released."""
    unattached = select(Reservation.id).where(
        col(Reservation.id) == reservation_id,
        col(Reservation.order_id).is_(None),
        col(Reservation.status) == "held",
    )
    if (await session.exec(unattached.with_for_update())).first() is None:
        return False
    await release(session, reservation_id)
    return True


async def restock(session: AsyncSession, reservation_id: uuid.UUID) -> None:
    """A sale undone before its money came (the provider refused to capture the authorization):
    the committed stock is back on the shelf, the reservation released. Idempotent: once
    released, a repeat changes nothing."""
    undone = await session.exec(
        update(Reservation)
        .where(col(Reservation.id) == reservation_id, col(Reservation.status) == "committed")
        .values(status="released", updated_at=utcnow())
        .returning(col(Reservation.id))
    )
    if undone.scalar_one_or_none() is None:
        return
    lines = await session.exec(
        select(ReservationLine)
        .where(ReservationLine.reservation_id == reservation_id)
        .order_by(col(ReservationLine.sku))
    )
    for line in lines:
        await session.exec(
            update(Stock)
            .where(col(Stock.sku) == line.sku)
            .values(on_hand=col(Stock.on_hand) + line.quantity)
        )


async def release(session: AsyncSession, reservation_id: uuid.UUID) -> Reservation:
    """The held stock goes back on the shelf. Idempotent."""
    return await _settle(session, reservation_id, "released")


async def commit(session: AsyncSession, reservation_id: uuid.UUID) -> Reservation:
    """The held stock is sold: it leaves on_hand for good. Idempotent."""
    return await _settle(session, reservation_id, "committed")


async def extend_hold(
    session: AsyncSession, reservation_id: uuid.UUID, hold_expires_at: datetime
) -> bool:
    """A held reservation keeps its stock until the later time; True if it moved. Idempotent."""
    extended = await session.exec(
        update(Reservation)
        .where(
            col(Reservation.id) == reservation_id,
            col(Reservation.status) == "held",
            col(Reservation.hold_expires_at) < hold_expires_at,
        )
        .values(hold_expires_at=hold_expires_at, updated_at=utcnow())
        .returning(col(Reservation.id))
    )
    return extended.scalar_one_or_none() is not None


async def set_on_hand(session: AsyncSession, sku: str, on_hand: int) -> StockLevel:
    """An operator's count. Refused below what is held right now, so no hold is broken."""
    if not 0 <= on_hand <= 10_000_000:
        raise Invalid("invalid_on_hand", "on_hand must be between 0 and 10,000,000.")
    if await session.get(Product, sku) is None:
        raise NotFound("unknown_sku", f"No product with SKU {sku!r}: create it first.")
    await session.exec(
        insert(Stock).values(sku=sku, on_hand=0, reserved=0).on_conflict_do_nothing()
    )
    stock = (
        await session.exec(
            update(Stock)
            .where(col(Stock.sku) == sku, col(Stock.reserved) <= on_hand)
            .values(on_hand=on_hand)
            .returning(Stock)
        )
    ).scalar_one_or_none()
    if stock is None:
        level = await session.get_one(Stock, sku)
        raise Conflict(
            "below_reserved",
            f"{level.reserved} units of {sku} are held for open orders:"
            " on_hand cannot go below that.",
            reserved=level.reserved,
        )
    return StockLevel(stock.sku, stock.on_hand, stock.reserved, stock.on_hand - stock.reserved)
