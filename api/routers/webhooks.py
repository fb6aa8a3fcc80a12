"""The sandbox acquirer's signed payment events: verified and read here, then taken by the inbox
(activities/webhook_inbox.py) and handed on to the order's workflow (api/workflow_calls.py)."""

import json
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from acquirer.signing import SignatureError, verify
from activities import webhook_inbox
from activities.webhook_inbox import PaymentEvent
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.fields import Text
from api.problems import problem
from api.workflow_calls import hand_on
from kassa.db import session_scope
from kassa.metrics import WEBHOOK_EVENTS
from kassa.statuses import PaymentStatus

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("kassa.webhooks")

PAYMENT_STATUS_OF_EVENT = {
    "payment_intent.succeeded": PaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
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
    payment_event = PaymentEvent(
        event.id,
        event.type,
        intent.id,
        PAYMENT_STATUS_OF_EVENT.get(event.type),
        intent.decline_code,
        _order_id(intent),
        payload,
    )

    async with session_scope(engine) as session:
        receipt = await webhook_inbox.receive(session, payment_event)
    outcome: str = receipt.outcome
    if receipt.news is not None:
        # The payment's new status is committed before the workflow hears of it: the workflow's
        # next steps (the charge on the ledger when the order is PAID) read it at once. A crash in
        # between leaves the event unprocessed, and the acquirer's retry signals again.
        try:
            outcome = await hand_on(temporal, settings.task_queue, receipt.news)
        except RPCError:
            log.warning(
                "temporal unreachable; the acquirer will retry", extra={"event_id": event.id}
            )
            WEBHOOK_EVENTS.labels("temporal_unavailable").inc()
            return problem(503, "temporal_unavailable", "Could not hand the event on; retry later.")
        async with session_scope(engine) as session:
            await webhook_inbox.mark_processed(session, event.id)
    WEBHOOK_EVENTS.labels(outcome).inc()
    if outcome == "duplicate":
        return JSONResponse({"received": True, "duplicate": True})
    return JSONResponse({"received": True})


def _order_id(intent: Intent) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(intent.merchant_reference))
    except ValueError:
        return None
