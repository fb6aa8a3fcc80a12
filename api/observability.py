"""Per request: an id on every log line and in the answer (`X-Request-Id`), a trace span, and the
Pay Now latency histogram. A pure ASGI middleware, so the context reaches the route's own task."""

import re
import time
import uuid

from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.logs import log_context
from kassa.metrics import PAY_NOW_SECONDS
from kassa.tracing import tracer

REQUEST_ID_HEADER = b"x-request-id"
# A caller's own id is kept when it is a plain token (a proxy's, the app's); anything else is replaced.
_ACCEPTABLE_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _ACCEPTABLE_ID.match(given) else uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in headers.items()}
        started = time.perf_counter()
        with (
            log_context(request_id=request_id),
            tracer.start_as_current_span(
                f"{scope['method']} {scope['path']}", context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
            ) as span,
        ):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                span.set_attribute("http.response.status_code", status)
                if (route := scope.get("route")) is not None:  # the template, not the ids in the path
                    span.update_name(f"{scope['method']} {route.path}")
                if scope["method"] == "POST" and scope["path"] == "/checkout":
                    PAY_NOW_SECONDS.labels(str(status)).observe(time.perf_counter() - started)
