"""The sandbox acquirer's HTTP face: the `/v1` API for the gateway (a Bearer key, JSON errors
`{"error": {"code", "message"}}`), the 3-D Secure pages for the shopper and, outside
production, `/_sandbox/faults` for tests and demos."""

import asyncio
import hashlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from html import escape
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

from acquirer.faults import ApiFaults, Faults
from acquirer.storage import Conflict, Intent, Invalid, NotFound, Rejected, Storage
from acquirer.webhooks import Deliverer
from kassa.money import format_rub
from kassa.settings import Settings

log = logging.getLogger(__name__)

MAX_AMOUNT = 10**12  # kopecks; keeps sums far inside SQLite's 64-bit integers


def _storable(text: str) -> str:
    # JSON can carry lone surrogates, which have no UTF-8 form for SQLite.
    text.encode()
    return text


Text = Annotated[str, AfterValidator(_storable)]
Amount = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]


class TokenRequest(BaseModel):
    card_number: str = Field(max_length=32)
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=2100)
    cvc: str = Field(pattern=r"^\d{3,4}$")


class PaymentIntentRequest(BaseModel):
    amount: Amount
    currency: Literal["RUB"]
    payment_method: Annotated[Text, Field(max_length=64)]
    merchant_reference: Annotated[Text, Field(min_length=1, max_length=255)]
    return_url: Annotated[Text, Field(min_length=1, max_length=2048)] | None = None


class RefundRequest(BaseModel):
    payment_intent: Annotated[Text, Field(max_length=64)]
    amount: Amount | None = None


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _idempotency_key(
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> str:
    if not idempotency_key:
        raise Invalid("idempotency_key_required", "An Idempotency-Key header is required.")
    return idempotency_key


StorageDep = Annotated[Storage, Depends(_storage)]
IdempotencyKey = Annotated[str, Depends(_idempotency_key)]


def _fingerprint(endpoint: str, body: BaseModel) -> str:
    """What a replay under the same Idempotency-Key must match; the endpoint is part of it, so a
    key is never valid on two endpoints."""
    canonical = json.dumps([endpoint, body.model_dump()], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Routes are async and call the storage inline: its transactions take well under a
# millisecond, and staying on the loop's thread lets the storage wake the deliverer.
api = APIRouter(prefix="/v1")


@api.post("/tokens")
async def create_token(body: TokenRequest, storage: StorageDep) -> dict[str, Any]:
    return storage.create_token(body.card_number).as_json()


@api.post("/payment_intents")
async def create_payment_intent(
    body: PaymentIntentRequest, key: IdempotencyKey, storage: StorageDep
) -> dict[str, Any]:
    intent = storage.create_intent(key, _fingerprint("payment_intents", body), **body.model_dump())
    return intent.as_json()


@api.get("/payment_intents/{intent_id}")
async def get_payment_intent(intent_id: str, storage: StorageDep) -> dict[str, Any]:
    return storage.intent(intent_id).as_json()


@api.post("/payment_intents/{intent_id}/cancel")
async def cancel_payment_intent(intent_id: str, storage: StorageDep) -> dict[str, Any]:
    return storage.cancel(intent_id).as_json()


@api.post("/refunds")
async def create_refund(
    body: RefundRequest, key: IdempotencyKey, storage: StorageDep
) -> dict[str, Any]:
    refund = storage.refund(key, _fingerprint("refunds", body), **body.model_dump())
    return refund.as_json()


@api.get("/refunds/{refund_id}")
async def get_refund(refund_id: str, storage: StorageDep) -> dict[str, Any]:
    return storage.refund_of(refund_id).as_json()


pages = APIRouter(prefix="/3ds", default_response_class=HTMLResponse)


@pages.get("/{intent_id}")
async def challenge(intent_id: str, storage: StorageDep) -> HTMLResponse:
    try:
        intent = storage.intent(intent_id)
    except NotFound:
        return _not_found_page()
    if intent.status != "requires_action":
        return _result_page(intent)
    return _challenge_page(intent)


@pages.post("/{intent_id}/approve")
async def approve(intent_id: str, storage: StorageDep) -> Response:
    return _answer(storage, intent_id, approved=True)


@pages.post("/{intent_id}/decline")
async def decline(intent_id: str, storage: StorageDep) -> Response:
    return _answer(storage, intent_id, approved=False)


def _answer(storage: Storage, intent_id: str, approved: bool) -> Response:
    """Pressing again, or after the merchant canceled, changes nothing and shows the outcome."""
    try:
        intent = storage.authenticate(intent_id, approved)
    except NotFound:
        return _not_found_page()
    except Conflict as already:
        assert already.intent is not None
        return _result_page(already.intent)
    if intent.return_url is None:
        return _result_page(intent)
    return RedirectResponse(_return_address(intent.return_url, intent.id), status_code=303)


def _return_address(return_url: str, intent_id: str) -> str:
    parts = urlsplit(return_url)
    query = "&".join(filter(None, [parts.query, urlencode({"payment_intent": intent_id})]))
    return urlunsplit(parts._replace(query=query))


_STYLE = """
body { font-family: system-ui, sans-serif; background: #eef1f5; margin: 0; color: #1d2330; }
main { max-width: 24rem; margin: 2rem auto; background: #fff; border-radius: 12px;
       padding: 1.5rem; box-shadow: 0 2px 12px rgba(0, 0, 0, .08); }
.bank { color: #5a6475; font-size: .85rem; letter-spacing: .05em; text-transform: uppercase; }
dl { display: grid; grid-template-columns: auto minmax(0, 1fr); gap: .5rem 1rem; }
dt { color: #5a6475; }
/* An order id has no spaces: it may break anywhere rather than run out of the card. */
dd { margin: 0; text-align: right; overflow-wrap: anywhere; }
.amount, .card { white-space: nowrap; }
.actions { display: flex; gap: .75rem; margin-top: 1.5rem; }
.actions form { flex: 1; }
button { width: 100%; padding: .8rem; font-size: 1rem; border-radius: 8px; border: 0; }
.approve { background: #1f7a4d; color: #fff; }
.decline { background: #e4e7ec; color: #1d2330; }
"""


def _page(title: str, content: str, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f'<p class="bank">Sandbox Bank · 3-D Secure</p><h1>{escape(title)}</h1>{content}'
        "</main></body></html>"
    )
    return HTMLResponse(html, status_code=status_code)


def _details(intent: Intent) -> str:
    return (
        f"<dl><dt>Order</dt><dd>{escape(intent.merchant_reference)}</dd>"
        f'<dt>Amount</dt><dd class="amount">{format_rub(intent.amount)}</dd>'
        f'<dt>Card</dt><dd class="card">•••• {escape(intent.last4)}</dd></dl>'
    )


def _challenge_page(intent: Intent) -> HTMLResponse:
    action = f"/3ds/{escape(intent.id)}"
    buttons = (
        '<div class="actions">'
        f'<form method="post" action="{action}/approve">'
        '<button class="approve" type="submit">Approve</button></form>'
        f'<form method="post" action="{action}/decline">'
        '<button class="decline" type="submit">Decline</button></form></div>'
    )
    return _page("Confirm your payment", _details(intent) + buttons)


_OUTCOMES = {
    "succeeded": "Payment approved",
    "failed": "Payment declined",
    "canceled": "Payment canceled",
}


def _result_page(intent: Intent) -> HTMLResponse:
    back = ""
    if intent.return_url is not None:
        href = escape(_return_address(intent.return_url, intent.id))
        back = f'<p><a href="{href}">Return to the store</a></p>'
    content = _details(intent) + "<p>You can close this page.</p>" + back
    return _page(_OUTCOMES[intent.status], content)


def _not_found_page() -> HTMLResponse:
    return _page("Payment not found", "<p>This payment does not exist.</p>", status_code=404)


# The test harness's door: no API key, and mounted only outside production (create_app).
sandbox = APIRouter(prefix="/_sandbox")


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


FaultsDep = Annotated[Faults, Depends(_faults)]


@sandbox.get("/faults")
async def get_faults(faults: FaultsDep) -> dict[str, Any]:
    return faults.as_json()


@sandbox.post("/faults")
async def set_faults(body: Faults, faults: FaultsDep) -> dict[str, Any]:
    """Replaces every fault: a part left out is no fault of that kind."""
    faults.set(body)
    log.warning("sandbox faults set", extra={"webhooks": faults.webhooks, "api": faults.api})
    return faults.as_json()


@sandbox.delete("/faults")
async def clear_faults(faults: FaultsDep) -> dict[str, Any]:
    faults.set(Faults())
    log.info("sandbox faults cleared")
    return faults.as_json()


async def _under_faults(
    faults: ApiFaults, request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """A `/v1` call as the sandbox's faults have it: late, and by a per-call draw a 503; half of
    the failed POSTs fail after the work is done, like a timeout after the bank committed."""
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if random.random() >= faults.error_rate:
        return await call_next(request)
    if request.method == "POST" and random.random() < 0.5:
        await call_next(request)  # committed; the answer is lost
    return _error(503, "sandbox_unavailable", "A sandbox fault: /_sandbox/faults api.error_rate.")


def _error(status_code: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code)


_STATUS_CODES: dict[type[Rejected], int] = {NotFound: 404, Invalid: 400, Conflict: 409}


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Rejected)
    extra = {"intent": exc.intent.as_json()} if exc.intent is not None else {}
    return _error(_STATUS_CODES[type(exc)], exc.code, exc.message, **extra)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    response = _error(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Field names and reasons only: the rejected input may be a card number.
    problems = "; ".join(
        f"{'.'.join(p for p in error['loc'][1:] if isinstance(p, str)) or 'body'}: {error['msg']}"
        for error in exc.errors()
    )
    return _error(422, "invalid_request", problems)


def create_app(settings: Settings) -> FastAPI:
    api_key, webhook_secret = settings.acquirer_api_key, settings.acquirer_webhook_secret
    if not api_key or not webhook_secret:
        raise ValueError("the acquirer needs acquirer_api_key and acquirer_webhook_secret")
    faults = Faults()  # none until set at /_sandbox/faults; never set in production

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        new_events = asyncio.Event()
        storage = Storage(
            settings.data_dir / "acquirer.sqlite3", settings.acquirer_pages_url, new_events.set
        )
        async with httpx.AsyncClient(timeout=10) as client:
            deliverer = Deliverer(
                storage, new_events, settings.webhook_url, webhook_secret, client, faults=faults
            )
            delivery = asyncio.create_task(deliverer.run())
            app.state.storage = storage
            try:
                yield
            finally:
                delivery.cancel()
                with suppress(asyncio.CancelledError):
                    await delivery
                storage.close()

    app = FastAPI(title="Kassa sandbox acquirer", lifespan=lifespan)
    app.state.faults = faults

    # A middleware, not a dependency: FastAPI parses a body before it runs dependencies, and
    # an anonymous caller must learn nothing, not even that its JSON is malformed.
    @app.middleware("http")
    async def require_api_key(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path.startswith("/v1"):
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            valid = hmac.compare_digest(key.encode(), api_key.encode())
            if scheme.lower() != "bearer" or not valid:
                response = _error(401, "unauthorized", "A valid Bearer API key is required.")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            return await _under_faults(faults.api, request, call_next)
        return await call_next(request)

    app.include_router(api)
    app.include_router(pages)
    if settings.env != "production":
        app.include_router(sandbox)
    app.add_exception_handler(Rejected, _rejected)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
