"""The acquirer's signed payment events: verified, stored (once per event id), then signalled."""

import json
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from acquirer.signing import SignatureError, verify
from activities import payments
from activities.money import LatePaymentInput
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.fields import Text
from api.problems import problem
from kassa.db import session_scope
from kassa.metrics import WEBHOOK_EVENTS
from kassa.tables import Order, Payment, WebhookEvent, utcnow
from workflows.checkout import CheckoutWorkflow, PaymentUpdate
from workflows.refunds import LatePaymentWorkflow, late_payment_workflow_id

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("kassa.webhooks")

PAYMENT_STATUS_OF_EVENT = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
}

# What we read of an event, checked to fit our columns; the whole event is stored as it came.
Identifier = Annotated[Text, Field(min_length=1, max_length=64)]


class Intent(BaseModel):
    id: Identifier
    merchant_reference: str | None = None
    decline_code: Text | None = None


class EventData(BaseModel):
    object: Intent


class AcquirerEvent(BaseModel):
    id: Identifier
    type: Identifier
    data: EventData


def _not_json(constant: str) -> None:
    # NaN and Infinity are Python's extension, not JSON: PostgreSQL would refuse the payload.
    raise ValueError(f"{constant} is not JSON")


@router.post("/webhooks/acquirer")
async def acquirer_event(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    signature: Annotated[str | None, Header(alias="Acquirer-Signature")] = None,
) -> JSONResponse:
    raw = await request.body()
    assert settings.acquirer_webhook_secret
    try:
        verify(settings.acquirer_webhook_secret, signature, raw, int(time.time()))
    except SignatureError as bad:
        log.warning("webhook refused", extra={"code": bad.code})
        WEBHOOK_EVENTS.labels("bad_signature").inc()
        return problem(400, bad.code, "The webhook signature is missing, wrong or too old.")
    try:
        payload: Any = json.loads(raw, parse_constant=_not_json)
        event = AcquirerEvent.model_validate(payload)
        # Storable as a whole: no lone surrogates anywhere in it.
        json.dumps(payload, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # ValidationError and UnicodeError are ValueErrors
        WEBHOOK_EVENTS.labels("malformed").inc()
        return problem(400, "malformed_event", "The event is not the acquirer's event format.")
    intent = event.data.object

    # Stored, and our record of the payment moved, in one transaction: once we answer 2xx the
    # event is ours. An event that needs no signal is processed in it too.
    async with session_scope(engine) as session:
        first_delivery = (
            await session.exec(
                insert(WebhookEvent)
                .values(id=event.id, type=event.type, intent_id=intent.id, payload=payload, received_at=utcnow())
                .on_conflict_do_nothing()
                .returning(col(WebhookEvent.id))
            )
        ).first() is not None
        # A row this transaction did not insert may be another delivery's, being handled or done.
        if not first_delivery and (await session.get_one(WebhookEvent, event.id, with_for_update=True)).processed_at:
            WEBHOOK_EVENTS.labels("duplicate").inc()
            return JSONResponse({"received": True, "duplicate": True})
        status = PAYMENT_STATUS_OF_EVENT.get(event.type)
        outcome = "ignored" if status is None else await _news(session, intent.id, status, intent.decline_code, first_delivery)
        if outcome != "news":
            await _mark_processed(session, event.id)
    # The payment's new status is committed before the workflow hears of it: the workflow's next
    # steps (the charge on the ledger when the order is PAID) read it at once. A crash in between
    # leaves the event unprocessed, and the acquirer's retry signals again (a repeat is harmless).
    if outcome == "news":
        assert status is not None
        try:
            async with session_scope(engine) as session:
                outcome = await _signal_checkout(session, temporal, settings.task_queue, intent, status)
                await _mark_processed(session, event.id)
        except RPCError:
            log.warning("temporal unreachable; the acquirer will retry", extra={"event_id": event.id})
            WEBHOOK_EVENTS.labels("temporal_unavailable").inc()
            return problem(503, "temporal_unavailable", "Could not hand the event on; retry later.")
    WEBHOOK_EVENTS.labels(outcome).inc()
    return JSONResponse({"received": True})


async def _mark_processed(session: AsyncSession, event_id: str) -> None:
    await session.exec(
        update(WebhookEvent)
        .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.processed_at).is_(None))
        .values(processed_at=utcnow())
    )


async def _news(session: AsyncSession, intent_id: str, status: str, decline_code: str | None, first_delivery: bool) -> str:
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
    if await payments.advance(session, intent_id, status, decline_code):
        return "news"
    recorded = await session.get(Payment, intent_id)
    if recorded is None:
        return "news"
    if recorded.status == status:
        return "known" if first_delivery else "news"
    log.info("stale payment event ignored", extra={"order_id": str(recorded.order_id), "intent_id": intent_id, "status": status})
    return "stale"


async def _signal_checkout(session: AsyncSession, temporal: Client, task_queue: str, intent: Intent, status: str) -> str:
    """Tell the order's workflow; returns the outcome (signalled, late, unknown_order). If it has
    ended, a success is a late payment with a workflow of its own (keyed by the intent, so it runs
    once). Temporal unreachable raises: the event stays unprocessed and the acquirer's retry
    delivers it again."""
    order_id = _order_id(intent)
    order = await session.get(Order, order_id) if order_id else None
    if order is None:
        log.warning("webhook for unknown order", extra={"intent_id": intent.id})
        return "unknown_order"
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, order.workflow_id)
    try:
        await handle.signal(CheckoutWorkflow.payment_updated, PaymentUpdate(intent.id, status, intent.decline_code))
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        log.info("webhook after checkout ended", extra={"order_id": str(order.id), "intent_id": intent.id, "status": status})
        payment = await session.get(Payment, intent.id)
        if status == "succeeded" and payment is not None:
            await _start_late_payment(temporal, task_queue, payment)
        return "late"
    log.info(
        "payment event signalled",
        extra={"order_id": str(order.id), "workflow_id": order.workflow_id, "intent_id": intent.id, "status": status},
    )
    return "signalled"


async def _start_late_payment(temporal: Client, task_queue: str, payment: Payment) -> None:
    try:
        await temporal.start_workflow(
            LatePaymentWorkflow.run,
            LatePaymentInput(str(payment.order_id), payment.intent_id, payment.amount, payment.currency),
            id=late_payment_workflow_id(payment.intent_id),
            task_queue=task_queue,
            static_summary=f"Late payment {payment.intent_id} of order {payment.order_id}: complete or refund",
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass  # settled or being settled: once per intent
    log.info("late payment", extra={"order_id": str(payment.order_id), "intent_id": payment.intent_id})


def _order_id(intent: Intent) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(intent.merchant_reference))
    except ValueError:
        return None
