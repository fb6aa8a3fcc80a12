"""The inbox of the payment provider's events: each stored once under its id, our record of the
payment moved forward, and the decision whether the order's workflow must hear of it.

The event comes in already verified and read into our terms (`PaymentEvent`), whatever the
provider. Telling the workflow is the caller's part: the inbox says what to tell (`PaymentNews`).
"""

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from activities import payments
from kassa.statuses import SECURED_PAYMENTS, PaymentStatus
from kassa.tables import Order, Payment, WebhookEvent, utcnow

log = logging.getLogger("kassa.webhooks")

# news: the order's workflow must hear it (`Receipt.news`); every other outcome is final.
Outcome = Literal["news", "known", "stale", "ignored", "duplicate", "unknown_order"]


@dataclass(frozen=True)
class PaymentEvent:
    """A provider's word about a payment, verified and normalized."""

    id: str  # the provider's event id: the event is taken once under it
    type: str  # the provider's name for the event, stored as it came
    intent_id: str
    # Settled (succeeded, failed, canceled); None: not a payment's outcome (stored, ignored).
    status: PaymentStatus | None
    decline_code: str | None
    order_id: uuid.UUID | None  # the order the payment was made for, as the provider echoes it
    payload: dict[str, Any]  # the whole event as it came


@dataclass(frozen=True)
class Charge:
    """A success as we recorded it: what a late payment's run settles."""

    order_id: uuid.UUID
    intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class PaymentNews:
    """A status the order's workflow must hear. If the run has ended, a success we have on record
    (`charge`) is a late payment."""

    order_id: uuid.UUID
    workflow_id: str
    intent_id: str
    status: PaymentStatus
    decline_code: str | None
    charge: Charge | None


@dataclass(frozen=True)
class Receipt:
    outcome: Outcome
    news: PaymentNews | None = None  # for "news" only; the event is processed once it is told


async def receive(session: AsyncSession, event: PaymentEvent) -> Receipt:
    """Store the event and move our record of the payment, in the caller's transaction: once it
    commits, the event is ours. An event that needs no telling is processed in it too; news stays
    unprocessed until `mark_processed`, so a crash before the telling leaves it to the provider's
    retry (a repeated telling is harmless).

    Idempotent on the event id: a processed event is a "duplicate" and changes nothing."""
    first_delivery = (
        await session.exec(
            insert(WebhookEvent)
            .values(
                id=event.id,
                type=event.type,
                intent_id=event.intent_id,
                payload=event.payload,
                received_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(col(WebhookEvent.id))
        )
    ).first() is not None
    # A row this transaction did not insert may be another delivery's, being handled or done.
    if (
        not first_delivery
        and (await session.get_one(WebhookEvent, event.id, with_for_update=True)).processed_at
    ):
        return Receipt("duplicate")
    outcome: Outcome = (
        "ignored"
        if event.status is None
        else await _news(session, event, event.status, first_delivery)
    )
    if outcome == "news":
        assert event.status is not None
        news = await _addressee(session, event, event.status)
        if news is not None:
            return Receipt("news", news)
        outcome = "unknown_order"
    await mark_processed(session, event.id)
    return Receipt(outcome)


async def mark_processed(session: AsyncSession, event_id: str) -> None:
    """Idempotent: the first processing's time stays."""
    await session.exec(
        update(WebhookEvent)
        .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.processed_at).is_(None))
        .values(processed_at=utcnow())
    )


async def _news(
    session: AsyncSession, event: PaymentEvent, status: PaymentStatus, first_delivery: bool
) -> Outcome:
    """Whether the workflow should hear this status: "news" if it moved our record, or if the
    record is not written yet. Otherwise only the webhook handler and the workflow's own payment
    activities move a record, and those activities hand the status to the workflow themselves:
    a status agreeing with the record is news only when redelivered (the handler that moved it may
    have crashed before signalling), and "known" on a first delivery (a frictionless payment's
    webhook, answered by the bank within milliseconds of the intent: signalling it cost the
    workflow a task thrown away and its last steps run twice). A contradicting status is "stale".

    The one way a "known" status is not known to the workflow: every try of a payment attempt
    outlived its activity's timeout after writing the record, so the workflow holds the attempt as
    unanswered. The customer's next tap pays under the same attempt key and gets it; if none comes,
    reconciliation finds the success once the order has ended (a late payment)."""
    if await payments.advance(session, event.intent_id, status, event.decline_code):
        return "news"
    recorded = await session.get(Payment, event.intent_id)
    if recorded is None:
        return "news"
    if recorded.status == status:
        return "known" if first_delivery else "news"
    log.info(
        "stale payment event ignored",
        extra={"order_id": str(recorded.order_id), "intent_id": event.intent_id, "status": status},
    )
    return "stale"


async def _addressee(
    session: AsyncSession, event: PaymentEvent, status: PaymentStatus
) -> PaymentNews | None:
    """The news for the order's workflow; None when the event names no order of ours."""
    order = await session.get(Order, event.order_id) if event.order_id else None
    if order is None:
        log.warning("webhook for unknown order", extra={"intent_id": event.intent_id})
        return None
    # Money the order may have (taken, or held): if its run has ended, a late payment's.
    payment = await session.get(Payment, event.intent_id) if status in SECURED_PAYMENTS else None
    charge = (
        Charge(payment.order_id, payment.intent_id, payment.amount, payment.currency)
        if payment
        else None
    )
    return PaymentNews(
        order.id, order.workflow_id, event.intent_id, status, event.decline_code, charge
    )
