"""Tracing, exported for real: a gateway and a worker configured with an OTLP endpoint send their
spans to a collector stand-in (OTLP over HTTP on loopback), and one Pay Now is one trace from the
API through the workflow and its activities to the acquirer.

The tracer provider is process-wide: the gateway's sets it, and it is shut down at the end, so
later tests in the session create spans that go nowhere.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.contrib.opentelemetry import TracingInterceptor

from api.main import create_app as create_gateway
from kassa.settings import Settings
from kassa.temporal import connect
from tests.conftest import Kassa
from tests.flow import CARD, pay_now
from tests.servers import listening_socket, serving
from worker import build_worker


def _provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "the gateway configured no tracing"
    return provider


def collector(received: list[ExportTraceServiceRequest]) -> ASGIApp:
    """OTLP/HTTP's trace endpoint, as a bare ASGI app: a FastAPI one would trace itself, and every
    export would make spans to export."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        received.append(export)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.fixture
async def traced(
    kassa: Kassa,
) -> AsyncIterator[tuple[str, Settings, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    collector_socket, api_socket = listening_socket(), listening_socket()
    async with AsyncExitStack() as stack:
        collector_url = await stack.enter_async_context(
            serving(collector(received), collector_socket)
        )
        settings = kassa.settings.model_copy(
            update={"otlp_endpoint": collector_url, "task_queue": f"traced-{uuid.uuid4()}"}
        )
        api_url = await stack.enter_async_context(serving(create_gateway(settings), api_socket))
        # The gateway's lifespan installed the exporter (configure_tracing); the worker's client
        # joins it.
        client = await connect(settings, interceptors=[TracingInterceptor()])
        await stack.enter_async_context(
            build_worker(client, settings, kassa.activities, kassa.money)
        )
        yield api_url, settings, received
        await asyncio.to_thread(
            _provider().shutdown
        )  # exports what is left, while the collector listens


async def test_one_pay_now_is_one_trace_from_the_api_to_the_acquirer(
    kassa: Kassa, traced: tuple[str, Settings, list[ExportTraceServiceRequest]]
) -> None:
    api_url, _, received = traced
    customer = await kassa.customer()
    cart = await customer.cart_with((await kassa.product(on_hand=1), 1))
    async with customer.http() as http:
        http.base_url = api_url  # the traced gateway
        answer = await pay_now(http, cart, CARD)
        assert answer.status_code == 201 and answer.json()["status"] == "PAID", answer.text
    # The exporter posts from its own thread to the collector served on this loop: never block it.
    await asyncio.to_thread(_provider().force_flush)

    spans = [
        span
        for export in received
        for resource_spans in export.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    (request,) = [span for span in spans if span.name == "POST /checkout"]
    in_trace = {span.name for span in spans if span.trace_id == request.trace_id}
    assert {
        "StartUpdateWithStartWorkflow:CheckoutWorkflow",
        "RunWorkflow:CheckoutWorkflow",
        "RunActivity:initiate_payment",
        "RunActivity:commit_and_mark_paid",  # a one-stage payment: stock and order at once
        "sandbox create_payment",
    } <= in_trace, in_trace
