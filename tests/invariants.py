"""Kassa's promises (design.md §4), checked over the whole database and the acquirer's own
books.

One function, `check_invariants`, run at the end of every crash test and of the flash-sale
benchmark: stock never oversold and never left held, every order in a final state that agrees
with the money, at most one charge kept per order (by our ledger and by the bank's records),
every ledger transaction summing to zero. It reads; it never repairs.
"""

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from activities.ledger import RECEIVABLE
from kassa.statuses import ENDED, UNPAID_ENDINGS, OrderStatus

# Orders whose stock left for good (PAID, REFUNDED): a refund gives the money back, not the goods.
SOLD = ENDED - UNPAID_ENDINGS


class InvariantsBroken(AssertionError):
    pass


@dataclass
class InvariantReport:
    orders: int = 0
    orders_by_status: dict[str, int] = field(default_factory=dict)
    skus: int = 0
    violations: list[str] = field(default_factory=list)

    def raise_if_broken(self) -> "InvariantReport":
        if self.violations:
            listed = "\n  ".join(self.violations[:50])
            more = (
                f"\n  … and {len(self.violations) - 50} more" if len(self.violations) > 50 else ""
            )
            raise InvariantsBroken(
                f"{len(self.violations)} invariant violations:\n  {listed}{more}"
            )
        return self


async def check_invariants(
    engine: AsyncEngine,
    acquirer_db: Path | None = None,
    stocked: dict[str, int] | None = None,
    settled: bool = True,
) -> InvariantReport:
    """`acquirer_db`: the sandbox acquirer's SQLite file, to check the charges against the bank's
    own records. `stocked`: on_hand of some SKUs before the run, to check that what left equals
    what was sold. `settled`: every order must have reached a final state (False mid-run)."""
    async with engine.connect() as connection:
        return await check_connection(connection, acquirer_db, stocked, settled)


async def check_connection(
    connection: AsyncConnection,
    acquirer_db: Path | None = None,
    stocked: dict[str, int] | None = None,
    settled: bool = True,
) -> InvariantReport:
    """The same, inside the caller's transaction: a test may corrupt the state, check, and roll
    back."""
    report = InvariantReport()
    broken = report.violations.append

    async def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await connection.execute(text(sql))]

    stock = {
        sku: (on_hand, reserved)
        for sku, on_hand, reserved in await rows("SELECT sku, on_hand, reserved FROM stock")
    }
    report.skus = len(stock)
    held = dict(
        await rows(
            "SELECT l.sku, SUM(l.quantity) FROM reservation_lines l"
            " JOIN reservations r ON r.id = l.reservation_id"
            " WHERE r.status = 'held' GROUP BY l.sku"
        )
    )
    committed = dict(
        await rows(
            "SELECT l.sku, SUM(l.quantity) FROM reservation_lines l"
            " JOIN reservations r ON r.id = l.reservation_id"
            " WHERE r.status = 'committed' GROUP BY l.sku"
        )
    )
    for sku, (on_hand, reserved) in sorted(stock.items()):
        if not 0 <= reserved <= on_hand:
            broken(f"stock {sku}: reserved {reserved} outside 0..on_hand {on_hand} (oversold)")
        if reserved != held.get(sku, 0):
            broken(
                f"stock {sku}: reserved {reserved}"
                f" but the held reservations add up to {held.get(sku, 0)}"
            )
    for sku, before in sorted((stocked or {}).items()):
        sold = committed.get(sku, 0)
        if sku in stock and stock[sku][0] != before - sold:
            broken(f"stock {sku}: on_hand {stock[sku][0]}, expected {before} stocked - {sold} sold")

    orders = {
        order_id: (status, total)
        for order_id, status, total in await rows("SELECT id::text, status, total FROM orders")
    }
    report.orders = len(orders)
    by_status: dict[str, int] = defaultdict(int)
    for status, _ in orders.values():
        by_status[status] += 1
    report.orders_by_status = dict(sorted(by_status.items()))
    if settled:
        for order_id, (status, _) in sorted(orders.items()):
            if status not in ENDED:
                broken(f"order {order_id}: still {status}, not in a final state")

    reservations: dict[str | None, list[str]] = defaultdict(list)  # None: the gateway's claims
    for order_id, status in await rows("SELECT order_id::text, status FROM reservations"):
        reservations[order_id].append(status)
    if settled and (claims := reservations.get(None, []).count("held")):
        broken(
            f"claims holding stock for no order: {claims}"
            " (the hold sweeper releases them a minute after they were taken)"
        )
    for order_id, (status, _) in sorted(orders.items()):
        kept = reservations.get(order_id, [])
        if status in ENDED and "held" in kept:
            broken(f"order {order_id}: {status} but its stock is still held")
        if status in SOLD and "committed" not in kept:
            broken(f"order {order_id}: {status} but no stock was committed for it")
        if status not in SOLD and "committed" in kept:
            broken(f"order {order_id}: {status} but its stock was committed (sold)")

    for transaction_id, currency, total in await rows(
        "SELECT transaction_id::text, currency, SUM(amount) FROM ledger_postings"
        " GROUP BY 1, 2 HAVING SUM(amount) <> 0"
    ):
        broken(f"ledger transaction {transaction_id}: postings sum to {total} {currency}, not 0")
    ledger_net = dict(
        await rows(
            "SELECT t.order_id::text, SUM(p.amount) FROM ledger_transactions t"
            " JOIN ledger_postings p ON p.transaction_id = t.id"
            f" WHERE p.account = '{RECEIVABLE}' GROUP BY t.order_id"
        )
    )
    for order_id, (status, total) in sorted(orders.items()):
        net = ledger_net.get(order_id, 0)
        if status == OrderStatus.PAID and not 0 < net <= total:
            broken(f"order {order_id}: PAID but the ledger holds {net} of its {total} kopecks")
        if status in ENDED and status != OrderStatus.PAID and net != 0:
            broken(f"order {order_id}: {status} but the ledger still holds {net} kopecks of it")

    if acquirer_db is not None:
        _check_bank(report, acquirer_db, orders, ledger_net, settled)
    return report


def _check_bank(
    report: InvariantReport,
    acquirer_db: Path,
    orders: dict[str, tuple[str, int]],
    ledger_net: dict[str, int],
    settled: bool,
) -> None:
    """What the bank kept per order (succeeded intents net of refunds) against our records."""
    broken = report.violations.append
    with sqlite3.connect(f"file:{acquirer_db}?mode=ro", uri=True) as bank:
        kept_rows = bank.execute(
            "SELECT i.merchant_reference, i.id, i.amount - COALESCE(SUM(r.amount), 0)"
            " FROM payment_intents i LEFT JOIN refunds r ON r.payment_intent = i.id"
            " WHERE i.status = 'succeeded' GROUP BY i.id"
        ).fetchall()
    kept: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for order_id, intent_id, amount in kept_rows:
        if amount > 0:
            kept[order_id].append((intent_id, amount))
    for order_id, charges in sorted(kept.items()):
        status = orders.get(order_id, ("unknown", 0))[0]
        intents, bank_kept = ", ".join(i for i, _ in charges), sum(a for _, a in charges)
        if len(charges) > 1:
            broken(f"order {order_id}: charged {len(charges)} times at the bank ({intents})")
        if settled and status != OrderStatus.PAID:
            broken(f"order {order_id}: {status} but the bank kept {bank_kept} kopecks of it")
        if status == OrderStatus.PAID and bank_kept != ledger_net.get(order_id, 0):
            broken(
                f"order {order_id}: the bank kept {bank_kept},"
                f" our ledger {ledger_net.get(order_id, 0)}"
            )
    for order_id, (status, _) in sorted(orders.items()):
        if status == OrderStatus.PAID and order_id not in kept:
            broken(f"order {order_id}: PAID but the bank kept no charge for it")
