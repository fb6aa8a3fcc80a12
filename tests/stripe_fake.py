"""localstripe (the PyPI package) for the tests that speak Stripe: started as a process on a free
loopback port, a proxy in front of it that drops the parameters it refuses and records that they
were sent, its webhooks configured, and what the customer does in Stripe.js's place (3-D Secure).

Used by the adapter's tests (tests/test_provider_stripe.py) and by Pay Now end to end with
`KASSA_PSP=stripe` (tests/test_stripe_checkout.py). From the command line, for `make run` with
`KASSA_PSP=stripe` (README, "Payment providers"):

    python -m tests.stripe_fake --port 8420 --webhook-url http://127.0.0.1:8000/webhooks/stripe
"""

import argparse
import asyncio
import errno
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import listening_socket, serving
from tests.stack import free_port

SECRET_KEY = "sk_test_kassa"
WEBHOOK_SECRET = "whsec_kassa_test"
# Real Stripe needs `return_url` with confirm=true; localstripe answers 400 "Unexpected …" to it
# and to `description`. The proxy drops them on the way and keeps what was sent. A declined card:
# Stripe's 402 carries the failed intent (`error.payment_intent`), localstripe's names only the
# charge; the proxy adds the intent, read from localstripe, as Stripe answers.
REFUSED_BY_LOCALSTRIPE = frozenset({"return_url", "description"})
# localstripe asks for 3-D Secure for these card numbers (PaymentMethod._requires_authentication);
# it knows no pm_card_threeDSecure… id, so the test makes a PaymentMethod of this one.
CARD_3DS2_REQUIRED = "4000000000003220"
STARTUP_SECONDS = 15


@dataclass
class Sent:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Proxy:
    url: str
    sent: list[Sent]

    def last(self, path: str) -> Sent:
        return next(sent for sent in reversed(self.sent) if sent.path == path)


@asynccontextmanager
async def running_localstripe() -> AsyncIterator[str]:
    """localstripe on a free loopback port, from scratch, until the block ends: its URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "localstripe",
        "--port",
        str(port),
        "--from-scratch",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        process_group=0,  # a terminal's Ctrl-C reaches only its starter, which stops it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http, asyncio.timeout(STARTUP_SECONDS):
            while True:
                assert process.returncode is None, f"localstripe exited ({process.returncode})"
                try:
                    await http.get("/v1/payment_intents")  # 401 without a key: it answers
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


def localstripe_client(localstripe: str) -> httpx.AsyncClient:
    """Straight to localstripe, for what a test does in the customer's or Stripe's place."""
    return httpx.AsyncClient(
        base_url=localstripe, headers={"Authorization": f"Bearer {SECRET_KEY}"}
    )


def proxy_app(upstream: httpx.AsyncClient, sent: list[Sent]) -> Starlette:
    async def forward(request: Request) -> Response:
        body = await request.body()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        sent.append(Sent(request.method, request.url.path, dict(request.headers), form))
        kept = {name: value for name, value in form.items() if name not in REFUSED_BY_LOCALSTRIPE}
        answer = await upstream.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=urlencode(kept).encode() if body else None,
            headers={
                name: value
                for name, value in request.headers.items()
                if name in ("authorization", "content-type", "idempotency-key", "stripe-version")
            },
        )
        content = answer.content
        if answer.status_code == 402 and request.url.path == "/v1/payment_intents":
            content = await _with_the_intent(upstream, answer.json(), request.headers)
        return Response(content, answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


async def _with_the_intent(
    upstream: httpx.AsyncClient, refusal: dict[str, Any], headers: Mapping[str, str]
) -> bytes:
    """A card error as Stripe words it: with the intent the charge belongs to."""
    error = refusal.get("error", {})
    if "payment_intent" not in error and isinstance(error.get("charge"), str):
        auth = {"authorization": headers.get("authorization", "")}
        charge = (await upstream.get(f"/v1/charges/{error['charge']}", headers=auth)).json()
        intent = await upstream.get(f"/v1/payment_intents/{charge['payment_intent']}", headers=auth)
        error["payment_intent"] = intent.json()
    return json.dumps(refusal).encode()


@asynccontextmanager
async def running_proxy(localstripe: str, port: int = 0) -> AsyncIterator[Proxy]:
    """The proxy in front of localstripe, on loopback `port` (0: a free one), until the block
    ends."""
    sent: list[Sent] = []
    async with (
        httpx.AsyncClient(base_url=localstripe) as upstream,
        serving(proxy_app(upstream, sent), listening_socket(port)) as url,
    ):
        yield Proxy(url, sent)


async def configure_webhooks(
    localstripe_api: httpx.AsyncClient, name: str, url: str, secret: str = WEBHOOK_SECRET
) -> None:
    """localstripe signs every event with `secret` and sends it to `url` (a second later)."""
    configured = await localstripe_api.post(
        f"/_config/webhooks/{name}", data={"url": url, "secret": secret}
    )
    assert configured.status_code == 200, configured.text


async def three_d_secure_method(localstripe_api: httpx.AsyncClient) -> str:
    """A PaymentMethod for which localstripe asks for 3-D Secure: its id (pm_…)."""
    created = await localstripe_api.post(
        "/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": CARD_3DS2_REQUIRED,
            "card[exp_month]": "12",
            "card[exp_year]": "2030",
            "card[cvc]": "123",
        },
    )
    assert created.status_code == 200, created.text
    method_id: str = created.json()["id"]
    return method_id


async def authenticate(localstripe_api: httpx.AsyncClient, intent_id: str, success: bool) -> None:
    """The customer in 3-D Secure, as localstripe's Stripe.js would report it."""
    intent = (await localstripe_api.get(f"/v1/payment_intents/{intent_id}")).json()
    answered = await localstripe_api.post(
        f"/v1/payment_intents/{intent_id}/_authenticate",
        data={"client_secret": intent["client_secret"], "success": str(success).lower()},
    )
    assert answered.status_code == 200, answered.text


async def serve(port: int, webhook_url: str, webhook_secret: str, show_secret: bool) -> None:
    """localstripe, the proxy on `port` and its webhooks to `webhook_url`, until SIGINT/SIGTERM;
    prints Kassa's settings for them."""
    task = asyncio.current_task()
    assert task
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Once: uvicorn (the proxy's server) raises a signal it saw again as it stops.
        loop.add_signal_handler(signum, lambda: task.cancelling() or task.cancel())
    print("starting localstripe…", flush=True)
    async with running_localstripe() as localstripe:
        print(f"localstripe: {localstripe}; starting the proxy…", flush=True)
        async with (
            running_proxy(localstripe, port) as proxy,
            localstripe_client(localstripe) as localstripe_api,
        ):
            print(f"proxy: {proxy.url} (drops {', '.join(sorted(REFUSED_BY_LOCALSTRIPE))})")
            await configure_webhooks(localstripe_api, "kassa", webhook_url, webhook_secret)
            print(f"webhooks: signed, to {webhook_url}")
            print("# Kassa's settings (e.g. before `make run`):")
            print("export KASSA_PSP=stripe")
            print(f"export KASSA_PSP_URL={proxy.url}")
            print(f"export KASSA_PSP_SECRET_KEY={SECRET_KEY}")
            if show_secret:
                print(f"export KASSA_PSP_WEBHOOK_SECRET={webhook_secret}")
            else:
                print("# KASSA_PSP_WEBHOOK_SECRET: the one given")
            print("Ctrl-C stops localstripe and the proxy", flush=True)
            await asyncio.Future()  # until a signal cancels it


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.stripe_fake",
        description="localstripe behind the proxy, for Kassa with KASSA_PSP=stripe",
    )
    parser.add_argument("--port", type=int, default=8420, help="the proxy's port (Kassa's URL)")
    parser.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/stripe",
        help="where localstripe sends its signed events (Kassa's /webhooks/stripe)",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("KASSA_PSP_WEBHOOK_SECRET"),
        help="signs the webhooks (default: $KASSA_PSP_WEBHOOK_SECRET, else one is made up)",
    )
    args = parser.parse_args()
    secret = args.webhook_secret or f"whsec_{secrets.token_urlsafe(24)}"
    try:
        asyncio.run(serve(args.port, args.webhook_url, secret, show_secret=not args.webhook_secret))
    except asyncio.CancelledError:
        print("stopped", flush=True)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        sys.exit(f"stripe_fake: port {args.port} is in use — stop what uses it or pass --port")


if __name__ == "__main__":
    main()
