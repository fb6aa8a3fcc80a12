"""The payment provider's events: verified and read into our terms by the provider's adapter
(activities/providers), taken by the inbox (activities/webhook_inbox.py), and handed on to the
order's workflow (api/workflow_calls.py)."""

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from activities import webhook_inbox
from activities.providers.protocol import WebhookRefused, WebhookRequest
from api.deps import EngineDep, ProviderDep, SettingsDep, TemporalDep
from api.problems import answers, problem
from api.workflow_calls import hand_on
from kassa.db import session_scope
from kassa.metrics import WEBHOOK_EVENTS

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("kassa.webhooks")


@router.post(
    "/webhooks/{provider_name}",
    response_model=dict[str, Any],
    responses=answers(400, 413, 503),
    # The body is the provider's, read as bytes (its signature is over them): stated here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's event, signed as it signs them.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def provider_event(
    provider_name: str,
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    provider: ProviderDep,
) -> JSONResponse:
    if provider_name != provider.name:
        return problem(
            404, "unknown_provider", f"This gateway takes events at /webhooks/{provider.name}."
        )
    received = WebhookRequest(
        body=await request.body(),
        headers={name.lower(): value for name, value in request.headers.items()},
        peer=request.client.host if request.client else None,
    )
    try:
        event = await provider.parse_webhook(received)
    except WebhookRefused as refused:
        log.warning("webhook refused", extra={"code": refused.code, "peer": received.peer})
        WEBHOOK_EVENTS.labels(refused.code).inc()
        if refused.retry:
            return problem(503, refused.code, f"{refused.message} Send it again later.")
        return problem(400, refused.code, refused.message)

    async with session_scope(engine) as session:
        receipt = await webhook_inbox.receive(session, event)
    outcome: str = receipt.outcome
    if receipt.news is not None:
        # The payment's new status is committed before the workflow hears of it: the workflow's
        # next steps (the charge on the ledger when the order is PAID) read it at once. A crash in
        # between leaves the event unprocessed, and the provider's retry signals again.
        try:
            outcome = await hand_on(temporal, settings.task_queue, receipt.news)
        except RPCError:
            log.warning(
                "temporal unreachable; the provider will retry", extra={"event_id": event.id}
            )
            WEBHOOK_EVENTS.labels("temporal_unavailable").inc()
            return problem(503, "temporal_unavailable", "Could not hand the event on; retry later.")
        async with session_scope(engine) as session:
            await webhook_inbox.mark_processed(session, event.id)
    WEBHOOK_EVENTS.labels(outcome).inc()
    acknowledgement = provider.acknowledgement()
    body = acknowledgement.body | ({"duplicate": True} if outcome == "duplicate" else {})
    return JSONResponse(body, status_code=acknowledgement.status_code)
