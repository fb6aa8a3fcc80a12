"""Errors as `application/problem+json` with a machine-readable `code`; never a bare 500."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from kassa.errors import DomainError
from kassa.logs import log_context

log = logging.getLogger("kassa.api")

STATUS_OF_KIND = {
    "invalid": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_many_requests": 429,
}
MAX_BODY_BYTES = 64 * 1024
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Where the request id waits for `_unexpected`, which runs outside the middleware that set it.
REQUEST_ID_KEY = "kassa.request_id"


class FieldProblem(BaseModel):
    field: str = Field(description="where: body.quantity, query.limit, header.Idempotency-Key…")
    problem: str


class Problem(BaseModel):
    """An error, as RFC 9457 has it, with our machine-readable `code`. Some codes carry fields of
    their own: `retry_after` (429, 503), `order_id` and `order_status` (402, 409), `skus`…"""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="always about:blank: `code` says what happened")
    title: str = Field(description="the HTTP status's phrase")
    status: int = Field(description="the HTTP status (an order's is `order_status`)")
    code: str = Field(description="what went wrong, for machines: out_of_stock, invalid_request…")
    detail: str = Field(description="what went wrong and what to do next, for people")
    errors: list[FieldProblem] = Field(
        default_factory=list,
        description="422 invalid_request: each field that is missing or wrong",
    )


# What each error status means in this api, for the OpenAPI document (api/contract.py).
WHEN = {
    400: "The body is not valid JSON (`malformed_json`), or an event that is not the provider's.",
    401: "No token, or one that is expired, forged or revoked: log in (again).",
    402: "The payment was declined (`payment_declined`): the order and its attempts are given.",
    403: "The account may not do this (its role, or blocked).",
    404: "What the path or body names does not exist, or is not the caller's.",
    409: "The request clashes with the state of things (stock, the cart, the order): see `code`.",
    413: f"The body is over {MAX_BODY_BYTES} bytes (`body_too_large`).",
    422: "Fields missing or wrong (`invalid_request`, see `errors`), or refused by a rule.",
    429: "Too many tries: wait `retry_after` seconds (the `Retry-After` header says the same).",
    503: "Temporal, the payment provider or the database did not answer: repeat in a moment.",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: the problems it may answer beyond those its dependencies imply
    (api/contract.py adds those)."""
    return {status: problem_response(status) for status in statuses}


def problem_response(status: int) -> dict[str, Any]:
    return {
        "description": WHEN[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def problem(
    status: int,
    code: str,
    detail: str,
    /,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """`status` is the HTTP status, as RFC 9457 has it; an order's status goes in `order_status`."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(
        body | extra, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DomainError)
    return problem(STATUS_OF_KIND[error.kind], error.code, error.message, **error.detail)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(400, "malformed_json", "The body is not valid JSON.")
    # Name the fields and what is wrong with them, without echoing the input back.
    fields = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in errors]
    return problem(
        422, "invalid_request", "Some fields are missing or wrong: see `errors`.", errors=fields
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 400 and isinstance(error.__cause__, (ValueError, RecursionError)):
        # FastAPI's answer to a body json.loads gave up on other than by a syntax error
        # (nested too deep, say): malformed all the same.
        return problem(400, "malformed_json", "The body is not valid JSON.")
    code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
    # Starlette's own headers stay: `Allow` on a 405.
    return problem(error.status_code, code, str(error.detail), headers=error.headers)


async def _workflow_slow(request: Request, error: Exception) -> JSONResponse:
    # The workflow goes on; repeating the request attaches to the same run (idempotent).
    return problem(
        503, "checkout_busy", "Still working on it: repeat the request in a moment.", retry_after=1
    )


async def _temporal_unreachable(request: Request, error: Exception) -> JSONResponse:
    log.warning(
        "temporal unreachable", extra={"path": request.url.path, "error": type(error).__name__}
    )
    return problem(
        503,
        "temporal_unavailable",
        "Orders cannot be processed right now: try again shortly.",
        retry_after=5,
    )


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DBAPIError)
    if not error.connection_invalidated:
        return await _unexpected(request, error)
    # A connection PostgreSQL or the network dropped while the request used it (the ping at each
    # take, kassa/db.py, catches those dropped while pooled): the request, repeated, gets a new one.
    log.warning("database connection lost", extra={"path": request.url.path})
    return problem(
        503,
        "database_unavailable",
        "The database connection was lost: repeat the request in a moment.",
        retry_after=1,
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # Starlette calls this from its outermost middleware, after the request's log context is gone:
    # the id comes back from the scope, into the line and the answer.
    request_id = request.scope.get(REQUEST_ID_KEY)
    with log_context(request_id=request_id):
        log.error("unexpected error", exc_info=error, extra={"path": request.url.path})
    return problem(
        500,
        "internal_error",
        "Something went wrong on our side; it was logged. Try again shortly, or tell us the"
        " request id.",
        headers={"X-Request-Id": request_id} if request_id else None,
    )


class BodySizeLimit:
    """Refuse bodies over MAX_BODY_BYTES before the app reads them: by Content-Length when it is
    given, else (a chunked body) by reading ahead at most MAX_BODY_BYTES and a chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None:
                too_large = not length.isdigit() or int(length) > MAX_BODY_BYTES
            else:
                messages, size = await _read_ahead(receive, MAX_BODY_BYTES)
                too_large = size > MAX_BODY_BYTES
                receive = _replaying(messages, receive)
            if too_large:
                response = problem(
                    413, "body_too_large", f"Bodies are limited to {MAX_BODY_BYTES} bytes."
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_ahead(receive: Receive, limit: int) -> tuple[list[Message], int]:
    """The messages of a body, read until it ends (or the client leaves) or passes `limit` bytes,
    and how many bytes they carry."""
    messages: list[Message] = []
    size = 0
    while size <= limit:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return messages, size


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    ahead = iter(messages)

    async def replay() -> Message:
        return next(ahead, None) or await receive()

    return replay


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError, _workflow_slow)
    app.add_exception_handler(RPCError, _temporal_unreachable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodySizeLimit)
