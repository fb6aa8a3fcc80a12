"""Per request: an id on every log line and in the answer (`X-Request-Id`), and the Pay Now
latency histogram. A pure ASGI middleware, so the context reaches the route's own task.
(The request's trace span is FastAPI's own: it opens one per request, from `traceparent`.)"""

import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import REQUEST_ID_KEY
from kassa.logs import log_context
from kassa.metrics import PAY_NOW_SECONDS

REQUEST_ID_HEADER = b"x-request-id"
# A caller's own id is kept when it is a plain token (a proxy's, the app's); anything else is
# replaced.
_ACCEPTABLE_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _ACCEPTABLE_ID.match(given) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        started = time.perf_counter()
        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if scope["method"] == "POST" and scope["path"] == "/checkout":
                    PAY_NOW_SECONDS.labels(str(status)).observe(time.perf_counter() - started)
