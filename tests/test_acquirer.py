"""The sandbox acquirer over real HTTP: uvicorn serves it on a free port, and a real receiver,
also on uvicorn, takes its webhooks."""

import asyncio
import json
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from acquirer.app import create_app
from acquirer.storage import Storage
from acquirer.webhooks import Deliverer
from kassa.settings import Settings
from kassa.webhook_signatures import SignatureError, sign, verify
from tests.servers import listening_socket, serving

API_KEY = "k"
SECRET = "s"


@asynccontextmanager
async def running_acquirer(
    data_dir: Path, receiver_url: str, env: Literal["test", "production"] = "test"
) -> AsyncIterator[str]:
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        data_dir=data_dir,
        env=env,
        acquirer_api_key=API_KEY,
        acquirer_webhook_secret=SECRET,
        acquirer_url=url,
        public_url=receiver_url,
    )
    assert settings.webhook_url == f"{receiver_url}/webhooks/sandbox"
    async with serving(create_app(settings), sock):
        yield url


@dataclass
class Delivery:
    signature: str | None
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return event


class Receiver:
    """The merchant's webhook endpoint. Records every delivery; answers 500 to the first
    `failures[reference]` deliveries about that merchant reference, and stalls `stalls[reference]`
    seconds before answering about it."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.failures: dict[str, int] = {}
        self.stalls: dict[str, float] = {}
        self.app = FastAPI()
        self.app.add_api_route("/webhooks/sandbox", self._receive, methods=["POST"])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        reference = json.loads(body)["data"]["object"].get("merchant_reference")
        await asyncio.sleep(self.stalls.get(reference, 0))
        status = 200
        if self.failures.get(reference, 0) > 0:
            self.failures[reference] -= 1
            status = 500
        self.deliveries.append(Delivery(request.headers.get("acquirer-signature"), body, status))
        return Response(status_code=status)

    def about(self, object_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.event["data"]["object"]["id"] == object_id]

    async def attempted(self, object_id: str, within: float = 5) -> None:
        """Returns once a webhook about `object_id` has arrived, however it was answered."""
        deadline = time.monotonic() + within
        while not self.about(object_id):
            assert time.monotonic() < deadline, f"no webhook about {object_id} within {within} s"
            await asyncio.sleep(0.02)

    async def accepted(self, type: str, object_id: str, within: float = 5) -> Delivery:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for delivery in self.about(object_id):
                if delivery.status == 200 and delivery.event["type"] == type:
                    return delivery
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {type} webhook about {object_id} within {within} s")


@dataclass
class Stack:
    client: httpx.AsyncClient
    receiver: Receiver
    data_dir: Path


@asynccontextmanager
async def acquirer_stack(
    data_dir: Path, env: Literal["test", "production"] = "test"
) -> AsyncIterator[Stack]:
    receiver = Receiver()
    async with (
        serving(receiver.app, listening_socket()) as receiver_url,
        running_acquirer(data_dir, receiver_url, env) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
    ):
        yield Stack(client, receiver, data_dir)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with acquirer_stack(tmp_path) as stack:
        yield stack


async def create_intent(
    client: httpx.AsyncClient, key: str | None = None, **fields: Any
) -> httpx.Response:
    body = {
        "amount": 123450,
        "currency": "RUB",
        "payment_method": "tok_success",
        "merchant_reference": f"order-{uuid.uuid4()}",
        "return_url": None,
    } | fields
    return await client.post(
        "/v1/payment_intents", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())}
    )


async def create_token(client: httpx.AsyncClient, card_number: str) -> httpx.Response:
    card = {"card_number": card_number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    return await client.post("/v1/tokens", json=card)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_health_needs_no_key_but_the_api_does(stack: Stack) -> None:
    anonymous = httpx.AsyncClient(base_url=str(stack.client.base_url))
    async with anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            response = await anonymous.get("/v1/payment_intents/pi_x", headers=headers)
            assert response.status_code == 401
            assert error_code(response) == "unauthorized"
        # An anonymous caller is refused before its body is even parsed.
        json_header = {"Content-Type": "application/json"}
        response = await anonymous.post("/v1/tokens", content=b"{", headers=json_header)
        assert (response.status_code, error_code(response)) == (401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_tokens_check_the_card_and_keep_only_its_last_digits(stack: Stack) -> None:
    response = await create_token(stack.client, "4242 4242 4242 4242")
    assert response.status_code == 200
    assert response.json()["id"].startswith("tok_")
    assert response.json()["card"] == {"last4": "4242", "brand": "visa"}

    response = await create_token(stack.client, "4242 4242 4242 4241")
    assert response.status_code == 400
    assert error_code(response) == "invalid_card_number"
    assert "4241" not in response.text

    cases = {
        "4000 0000 0000 3220": ("requires_action", None),
        "4000 0000 0000 0002": ("failed", "card_declined"),
        "5555 5555 5555 4444": ("succeeded", None),
    }
    for number, (status, decline_code) in cases.items():
        token = (await create_token(stack.client, number)).json()["id"]
        intent = (await create_intent(stack.client, payment_method=token)).json()
        assert (intent["status"], intent["decline_code"]) == (status, decline_code)

    stored = b"".join(path.read_bytes() for path in stack.data_dir.glob("acquirer.sqlite3*"))
    assert b"5555555555554444" not in stored
    assert b"4000000000003220" not in stored


@pytest.mark.parametrize(
    ("token", "status", "decline_code", "event"),
    [
        ("tok_success", "succeeded", None, "payment_intent.succeeded"),
        ("tok_3ds", "requires_action", None, "payment_intent.requires_action"),
        ("tok_decline", "failed", "card_declined", "payment_intent.payment_failed"),
    ],
)
async def test_test_tokens_behave_as_documented(
    stack: Stack, token: str, status: str, decline_code: str | None, event: str
) -> None:
    response = await create_intent(stack.client, payment_method=token, amount=5000)
    assert response.status_code == 200
    intent = response.json()
    assert intent["id"].startswith("pi_")
    assert (intent["status"], intent["decline_code"]) == (status, decline_code)
    assert (intent["amount"], intent["currency"]) == (5000, "RUB")
    assert isinstance(intent["created"], int)
    if status == "requires_action":
        url = f"{stack.client.base_url}/3ds/{intent['id']}"
        assert intent["next_action"] == {"type": "redirect_to_url", "url": url}
    else:
        assert intent["next_action"] is None

    assert (await stack.client.get(f"/v1/payment_intents/{intent['id']}")).json() == intent
    delivery = await stack.receiver.accepted(event, intent["id"])
    assert delivery.event["data"]["object"] == intent


async def test_unknown_things_and_bad_requests_are_4xx_with_a_code(stack: Stack) -> None:
    response = await create_intent(stack.client, payment_method="tok_nope")
    assert (response.status_code, error_code(response)) == (400, "invalid_payment_method")

    response = await stack.client.get("/v1/payment_intents/pi_nope")
    assert (response.status_code, error_code(response)) == (404, "not_found")

    for bad in ({"amount": 0}, {"amount": "100"}, {"amount": 1.5}, {"currency": "USD"}):
        response = await create_intent(stack.client, **bad)
        assert (response.status_code, error_code(response)) == (422, "invalid_request")

    response = await stack.client.post(
        "/v1/payment_intents",
        content=b"{not json",
        headers={"Idempotency-Key": "x", "Content-Type": "application/json"},
    )
    assert (response.status_code, error_code(response)) == (422, "invalid_request")


async def test_an_idempotency_key_makes_one_intent(stack: Stack) -> None:
    body = {"merchant_reference": "order-idem", "amount": 777}
    first = await create_intent(stack.client, key="idem-1", **body)
    again = await create_intent(stack.client, key="idem-1", **body)
    assert again.json() == first.json()

    response = await create_intent(stack.client, key="idem-1", merchant_reference="order-idem")
    assert (response.status_code, error_code(response)) == (409, "idempotency_key_reused")

    response = await stack.client.post("/v1/payment_intents", json=body)
    assert (response.status_code, error_code(response)) == (400, "idempotency_key_required")

    same = {"key": "idem-race", "merchant_reference": "order-race"}
    racing = await asyncio.gather(*(create_intent(stack.client, **same) for _ in range(20)))
    assert {r.status_code for r in racing} == {200}
    ids = {r.json()["id"] for r in racing}
    assert len(ids) == 1
    (intent_id,) = ids
    await stack.receiver.accepted("payment_intent.succeeded", intent_id)
    await asyncio.sleep(0.2)
    assert len(stack.receiver.about(intent_id)) == 1


async def test_200_concurrent_requests_all_succeed(stack: Stack) -> None:
    responses = await asyncio.gather(*(create_intent(stack.client) for _ in range(200)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 200


async def test_3ds_approve_redirects_to_the_store(stack: Stack) -> None:
    return_url = "https://shop.example/return?order=1"
    intent = (
        await create_intent(stack.client, payment_method="tok_3ds", return_url=return_url)
    ).json()
    await stack.receiver.accepted("payment_intent.requires_action", intent["id"])

    page = await stack.client.get(intent["next_action"]["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "1 234,50 ₽" in page.text
    assert "3220" in page.text
    assert f'action="/3ds/{intent["id"]}/approve"' in page.text
    assert f'action="/3ds/{intent["id"]}/decline"' in page.text

    response = await stack.client.post(f"/3ds/{intent['id']}/approve")
    assert response.status_code == 303
    assert response.headers["location"] == f"{return_url}&payment_intent={intent['id']}"
    approved = (await stack.client.get(f"/v1/payment_intents/{intent['id']}")).json()
    assert (approved["status"], approved["next_action"]) == ("succeeded", None)
    await stack.receiver.accepted("payment_intent.succeeded", intent["id"])

    # A second press, with the other button, changes nothing.
    response = await stack.client.post(f"/3ds/{intent['id']}/decline")
    assert response.status_code == 200
    assert "Payment approved" in response.text
    assert (await stack.client.get(f"/3ds/{intent['id']}")).text == response.text
    current = await stack.client.get(f"/v1/payment_intents/{intent['id']}")
    assert current.json()["status"] == "succeeded"

    response = await stack.client.post(f"/v1/payment_intents/{intent['id']}/cancel")
    assert (response.status_code, error_code(response)) == (409, "intent_succeeded")
    assert response.json()["intent"]["status"] == "succeeded"


# Measured in a real browser: every element of the page's card ends inside the card.
_OVERFLOW_PROBE = """<script>
const card = document.querySelector("main").getBoundingClientRect();
const out = [...document.querySelectorAll("main *")]
  .filter((e) => e.getBoundingClientRect().right > card.right + 0.5)
  .map((e) => e.tagName + ":" + e.textContent.trim());
document.body.setAttribute("data-overflowing", out.length ? out.join(" | ") : "none");
</script></body>"""


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)"
)
async def test_3ds_page_keeps_a_long_order_id_inside_its_card(stack: Stack, tmp_path: Path) -> None:
    """On a phone the order id (a UUID, 36 characters without a space) wraps instead of running
    out of the card."""
    intent = (
        await create_intent(
            stack.client, payment_method="tok_3ds", merchant_reference=str(uuid.uuid4())
        )
    ).json()
    page = await stack.client.get(intent["next_action"]["url"])
    assert intent["merchant_reference"] in page.text
    probe = tmp_path / "3ds.html"
    # Headless Chromium's window is at least 500 px wide: the page is laid out in 320 px, a phone's.
    phone = "<style>body { width: 320px; }</style></head>"
    probe.write_text(page.text.replace("</head>", phone).replace("</body>", _OVERFLOW_PROBE))
    chromium = await asyncio.create_subprocess_exec(
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        probe.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(chromium.communicate(), timeout=60)
    overflowing = re.search(r'data-overflowing="([^"]*)"', dom.decode())
    assert overflowing, dom.decode()
    assert overflowing.group(1) == "none"


async def test_3ds_decline_without_return_url_shows_the_outcome(stack: Stack) -> None:
    intent = (await create_intent(stack.client, payment_method="tok_3ds")).json()
    response = await stack.client.post(f"/3ds/{intent['id']}/decline")
    assert response.status_code == 200
    assert "Payment declined" in response.text

    declined = (await stack.client.get(f"/v1/payment_intents/{intent['id']}")).json()
    assert (declined["status"], declined["decline_code"]) == ("failed", "authentication_failed")
    delivery = await stack.receiver.accepted("payment_intent.payment_failed", intent["id"])
    assert delivery.event["data"]["object"] == declined

    for unknown in (stack.client.get("/3ds/pi_nope"), stack.client.post("/3ds/pi_nope/approve")):
        response = await unknown
        assert response.status_code == 404
        assert "not found" in response.text


async def test_cancel_is_idempotent_and_wins_over_a_late_approve(stack: Stack) -> None:
    intent = (await create_intent(stack.client, payment_method="tok_3ds")).json()
    cancel = f"/v1/payment_intents/{intent['id']}/cancel"
    first = await stack.client.post(cancel)
    assert (first.status_code, first.json()["status"]) == (200, "canceled")
    assert (await stack.client.post(cancel)).json() == first.json()
    await stack.receiver.accepted("payment_intent.canceled", intent["id"])

    response = await stack.client.post(f"/3ds/{intent['id']}/approve")
    assert "Payment canceled" in response.text
    current = await stack.client.get(f"/v1/payment_intents/{intent['id']}")
    assert current.json()["status"] == "canceled"

    failed = (await create_intent(stack.client, payment_method="tok_decline")).json()
    response = await stack.client.post(f"/v1/payment_intents/{failed['id']}/cancel")
    assert (response.status_code, response.json()) == (200, failed)

    response = await stack.client.post("/v1/payment_intents/pi_nope/cancel")
    assert response.status_code == 404


async def test_refunds_never_exceed_the_charge(stack: Stack) -> None:
    intent = (await create_intent(stack.client, amount=10000)).json()

    async def refund(key: str, amount: int | None) -> httpx.Response:
        body = {"payment_intent": intent["id"], "amount": amount}
        return await stack.client.post("/v1/refunds", json=body, headers={"Idempotency-Key": key})

    first = await refund("r1", 3000)
    assert first.status_code == 200
    assert first.json()["id"].startswith("re_")
    assert first.json() | {"id": None} == {
        "id": None,
        "payment_intent": intent["id"],
        "amount": 3000,
        "status": "succeeded",
    }
    assert (await refund("r1", 3000)).json() == first.json()
    assert error_code(await refund("r1", 2000)) == "idempotency_key_reused"

    too_much = await refund("r2", 8000)
    assert (too_much.status_code, error_code(too_much)) == (409, "refund_exceeds_charge")
    rest = await refund("r3", None)
    assert rest.json()["amount"] == 7000
    assert error_code(await refund("r4", None)) == "refund_exceeds_charge"

    delivery = await stack.receiver.accepted("charge.refunded", first.json()["id"])
    assert delivery.event["data"]["object"] == first.json()

    declined = (await create_intent(stack.client, payment_method="tok_decline")).json()
    body = {"payment_intent": declined["id"], "amount": None}
    response = await stack.client.post("/v1/refunds", json=body, headers={"Idempotency-Key": "r5"})
    assert (response.status_code, error_code(response)) == (409, "intent_not_succeeded")
    response = await stack.client.post("/v1/refunds", json=body)
    assert (response.status_code, error_code(response)) == (400, "idempotency_key_required")


async def test_webhooks_are_signed(stack: Stack) -> None:
    intent = (await create_intent(stack.client)).json()
    delivery = await stack.receiver.accepted("payment_intent.succeeded", intent["id"])
    assert delivery.event["id"].startswith("evt_")
    now = int(time.time())
    verify(SECRET, delivery.signature, delivery.body, now)

    forged = sign("not the secret", delivery.body, now)
    old = sign(SECRET, delivery.body, now - 301)
    cases = [
        (SECRET, delivery.signature, delivery.body + b" ", "signature_mismatch"),
        (SECRET, forged, delivery.body, "signature_mismatch"),
        (SECRET, old, delivery.body, "signature_expired"),
        (SECRET, None, delivery.body, "signature_missing"),
        (SECRET, "v1=abc", delivery.body, "signature_malformed"),
        (SECRET, "t=soon,v1=abc", delivery.body, "signature_malformed"),
    ]
    for secret, header, body, code in cases:
        with pytest.raises(SignatureError) as raised:
            verify(secret, header, body, now)
        assert raised.value.code == code


async def test_webhooks_are_retried_until_a_2xx(stack: Stack) -> None:
    stack.receiver.failures["order-flaky"] = 2
    intent = (await create_intent(stack.client, merchant_reference="order-flaky")).json()
    await stack.receiver.accepted("payment_intent.succeeded", intent["id"])
    attempts = stack.receiver.about(intent["id"])
    assert [d.status for d in attempts] == [500, 500, 200]
    assert len({d.event["id"] for d in attempts}) == 1


async def test_a_slow_webhook_does_not_hold_up_the_others(stack: Stack) -> None:
    stack.receiver.stalls["order-slow"] = 1.0
    slow = (await create_intent(stack.client, merchant_reference="order-slow")).json()
    fast = (await create_intent(stack.client)).json()
    await stack.receiver.accepted("payment_intent.succeeded", fast["id"], within=0.5)
    assert stack.receiver.about(slow["id"]) == []
    await stack.receiver.accepted("payment_intent.succeeded", slow["id"])


async def test_undelivered_webhooks_resume_after_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.failures["order-restart"] = 1_000
    async with serving(receiver.app, listening_socket()) as receiver_url:
        async with (
            running_acquirer(tmp_path, receiver_url) as url,
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as c,
        ):
            intent = (await create_intent(c, merchant_reference="order-restart")).json()
            await receiver.attempted(intent["id"])

        receiver.failures.clear()
        async with running_acquirer(tmp_path, receiver_url):
            await receiver.accepted("payment_intent.succeeded", intent["id"])


async def test_a_webhook_is_given_up_after_its_last_attempt(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.failures["order-doomed"] = 1_000
    new_events = asyncio.Event()
    path = tmp_path / "acquirer.sqlite3"
    storage = Storage(path, "http://acquirer.invalid", new_events.set)
    async with (
        serving(receiver.app, listening_socket()) as receiver_url,
        httpx.AsyncClient() as client,
    ):
        deliverer = Deliverer(
            storage,
            new_events,
            f"{receiver_url}/webhooks/sandbox",
            SECRET,
            client,
            first_retry_seconds=0.01,
            max_attempts=3,
        )
        delivery = asyncio.create_task(deliverer.run())
        intent = storage.create_intent(
            "doomed",
            "fingerprint",
            amount=100,
            currency="RUB",
            payment_method="tok_success",
            merchant_reference="order-doomed",
            return_url=None,
        )
        with closing(sqlite3.connect(path)) as db:
            deadline = time.monotonic() + 5
            while (state := db.execute("SELECT state, attempts FROM events").fetchone()) != (
                "failed",
                3,
            ):
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert [d.status for d in receiver.about(intent.id)] == [500, 500, 500]
        delivery.cancel()
        with pytest.raises(asyncio.CancelledError):
            await delivery
    storage.close()
