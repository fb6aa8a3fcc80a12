"""The acquirer's signed payment events: verified, stored (once per event id), then signalled."""

import json
import uuid
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from acquirer.signing import SignatureError, verify
from activities import payments
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.problems import problem
from kassa.db import session_scope
from kassa.tables import Order, WebhookEvent, utcnow
from workflows.checkout import CheckoutWorkflow, PaymentUpdate

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("kassa.webhooks")

PAYMENT_STATUS_OF_EVENT = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
}


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
        return problem(400, bad.code, "The webhook signature is missing, wrong or too old.")
    try:
        event: dict[str, Any] = json.loads(raw)
        event_id, event_type, intent = str(event["id"]), str(event["type"]), event["data"]["object"]
        str(intent["id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return problem(400, "malformed_event", "The event is not the acquirer's event format.")

    # Stored and committed first: once we answer 2xx the event is ours, even if we crash next.
    async with session_scope(engine) as session:
        await session.exec(
            insert(WebhookEvent)
            .values(id=event_id, type=event_type, intent_id=intent.get("id"), payload=event, received_at=utcnow())
            .on_conflict_do_nothing()
        )
    async with session_scope(engine) as session:
        stored = await session.get_one(WebhookEvent, event_id, with_for_update=True)
        if stored.processed_at is not None:
            return JSONResponse({"received": True, "duplicate": True})
        status = PAYMENT_STATUS_OF_EVENT.get(event_type)
        if status is not None:
            await payments.advance(session, intent["id"], status, intent.get("decline_code"))
            try:
                await _signal_checkout(session, temporal, intent, status)
            except RPCError:
                log.warning("temporal unreachable; the acquirer will retry", extra={"event_id": event_id})
                return problem(503, "temporal_unavailable", "Could not hand the event on; retry later.")
        stored.processed_at = utcnow()
    return JSONResponse({"received": True})


async def _signal_checkout(session: AsyncSession, temporal: Client, intent: dict[str, Any], status: str) -> None:
    """Tell the order's workflow. A workflow already finished does not need it (a late success is the
    payments issue's refund); Temporal unreachable raises, the event stays unprocessed, and the
    acquirer's retry delivers it again."""
    order_id = _order_id(intent)
    order = await session.get(Order, order_id) if order_id else None
    if order is None:
        log.warning("webhook for unknown order", extra={"intent_id": intent.get("id")})
        return
    handle = temporal.get_workflow_handle_for(CheckoutWorkflow.run, order.workflow_id)
    try:
        await handle.signal(CheckoutWorkflow.payment_updated, PaymentUpdate(intent["id"], status, intent.get("decline_code")))
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        log.warning("webhook after checkout ended", extra={"order_id": str(order.id), "intent_id": intent["id"], "status": status})
        return
    log.info("payment event signalled", extra={"order_id": str(order.id), "intent_id": intent["id"], "status": status})


def _order_id(intent: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(intent.get("merchant_reference")))
    except ValueError:
        return None
