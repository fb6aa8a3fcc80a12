"""Sandbox faults over real HTTP: the acquirer and the merchant's receiver on uvicorn, faults set
through `/_sandbox/faults` with the helpers of acquirer/faults.py."""

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from acquirer.faults import ApiFaults, Faults, WebhookFaults, clear_faults, set_faults
from kassa.webhook_signatures import verify
from tests.test_acquirer import (
    SECRET,
    Stack,
    acquirer_stack,
    create_intent,
    create_token,
    error_code,
)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with acquirer_stack(tmp_path) as stack:
        yield stack


def url(stack: Stack) -> str:
    return str(stack.client.base_url)


def count(stack: Stack, sql: str, *params: Any) -> int:
    with closing(sqlite3.connect(stack.data_dir / "acquirer.sqlite3")) as db:
        found: int = db.execute(sql, params).fetchone()[0]
    return found


async def eventually(condition: Callable[[], bool], within: float = 5) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.02)


async def test_faults_are_set_shown_validated_and_cleared(stack: Stack) -> None:
    none = Faults().as_json()
    assert none == {
        "webhooks": {"drop_rate": 0.0, "duplicate": 1, "delay_seconds": 0.0, "reorder": False},
        "api": {"error_rate": 0.0, "latency_ms": 0},
    }
    # The test harness's door takes no API key.
    async with httpx.AsyncClient(base_url=url(stack)) as sandbox:
        assert (await sandbox.get("/_sandbox/faults")).json() == none

        faults = await set_faults(url(stack), webhooks={"duplicate": 2, "reorder": True})
        assert faults == Faults(webhooks=WebhookFaults(duplicate=2, reorder=True))
        assert (await sandbox.get("/_sandbox/faults")).json() == faults.as_json()

        bad_parts = [
            {"webhooks": {"drop_rate": 1.5}},
            {"webhooks": {"drop_rate": "0.5"}},
            {"webhooks": {"duplicate": 0}},
            {"webhooks": {"duplicate": 2.5}},
            {"webhooks": {"delay_seconds": -1}},
            {"webhooks": {"reorder": "yes"}},
            {"webhooks": {"lose": True}},
            {"api": {"error_rate": -0.1}},
            {"api": {"latency_ms": 10**6}},
            {"apis": {}},
        ]
        for bad in bad_parts:
            response = await sandbox.post("/_sandbox/faults", json=bad)
            assert (response.status_code, error_code(response)) == (422, "invalid_request"), bad
        assert (await sandbox.get("/_sandbox/faults")).json() == faults.as_json()

        # A POST replaces everything: the webhooks part it leaves out goes back to none.
        faults = await set_faults(url(stack), api=ApiFaults(latency_ms=5))
        assert faults == Faults(api=ApiFaults(latency_ms=5))

        response = await sandbox.delete("/_sandbox/faults")
        assert (response.status_code, response.json()) == (200, none)
        assert (await sandbox.get("/_sandbox/faults")).json() == none


async def test_there_are_no_faults_in_production(tmp_path: Path) -> None:
    async with acquirer_stack(tmp_path, env="production") as stack:
        async with httpx.AsyncClient(base_url=url(stack)) as sandbox:
            for method in ("GET", "POST", "DELETE"):
                response = await sandbox.request(method, "/_sandbox/faults", json={})
                assert response.status_code == 404, method
        intent = (await create_intent(stack.client)).json()
        await stack.receiver.accepted("payment_intent.succeeded", intent["id"])


async def test_dropped_webhooks_are_never_sent_and_are_counted(stack: Stack) -> None:
    await set_faults(url(stack), webhooks={"drop_rate": 1})
    for _ in range(10):
        assert (await create_intent(stack.client)).status_code == 200
    dropped = "SELECT count(*) FROM events WHERE state = 'dropped'"
    await eventually(lambda: count(stack, dropped) == 10)
    await asyncio.sleep(0.2)
    assert stack.receiver.deliveries == []

    await clear_faults(url(stack))
    intent = (await create_intent(stack.client)).json()
    await stack.receiver.accepted("payment_intent.succeeded", intent["id"])
    assert len(stack.receiver.deliveries) == 1


async def test_duplicated_webhooks_share_their_id_and_are_each_signed(stack: Stack) -> None:
    await set_faults(url(stack), webhooks={"duplicate": 3})
    intent = (await create_intent(stack.client)).json()
    await eventually(lambda: len(stack.receiver.about(intent["id"])) == 3)
    await asyncio.sleep(0.2)
    copies = stack.receiver.about(intent["id"])
    assert len(copies) == 3
    assert len({copy.event["id"] for copy in copies}) == 1
    for copy in copies:
        verify(SECRET, copy.signature, copy.body, int(time.time()))
    assert count(stack, "SELECT count(*) FROM events WHERE state = 'delivered'") == 1


async def test_reordered_webhooks_arrive_out_of_order(stack: Stack) -> None:
    await set_faults(url(stack), webhooks={"reorder": True})
    intents = []
    for _ in range(20):
        intent = (await create_intent(stack.client, payment_method="tok_3ds")).json()
        await stack.client.post(f"/3ds/{intent['id']}/approve")
        intents.append(intent["id"])
    await eventually(lambda: len(stack.receiver.deliveries) == 40)

    with closing(sqlite3.connect(stack.data_dir / "acquirer.sqlite3")) as db:
        created = [row[0] for row in db.execute("SELECT id FROM events ORDER BY seq")]
    arrived = [delivery.event["id"] for delivery in stack.receiver.deliveries]
    assert sorted(arrived) == sorted(created)
    assert arrived != created
    # Within one intent too: its success before the request for 3-D Secure.
    success_first = [
        intent_id
        for intent_id in intents
        if stack.receiver.about(intent_id)[0].event["type"] == "payment_intent.succeeded"
    ]
    assert success_first


async def test_delayed_webhooks_wait_first(stack: Stack) -> None:
    await set_faults(url(stack), webhooks={"delay_seconds": 0.5})
    started = time.monotonic()
    intent = (await create_intent(stack.client)).json()
    await stack.receiver.accepted("payment_intent.succeeded", intent["id"])
    assert time.monotonic() - started >= 0.5


async def test_an_error_rate_of_one_fails_every_api_call(stack: Stack) -> None:
    intent = (await create_intent(stack.client)).json()
    await set_faults(url(stack), api={"error_rate": 1})

    calls = [
        create_token(stack.client, "4242 4242 4242 4242"),
        stack.client.get(f"/v1/payment_intents/{intent['id']}"),
        stack.client.post(f"/v1/payment_intents/{intent['id']}/cancel"),
        stack.client.post(
            "/v1/refunds", json={"payment_intent": intent["id"]}, headers={"Idempotency-Key": "r"}
        ),
    ]
    calls += [create_intent(stack.client) for _ in range(40)]
    for response in await asyncio.gather(*calls):
        assert (response.status_code, error_code(response)) == (503, "sandbox_unavailable")
    # About half of the failed creations were done before the answer was lost.
    created = count(stack, "SELECT count(*) FROM payment_intents") - 1
    assert 0 < created < 40

    # Outside /v1 nothing fails, and a caller without the key still learns only that.
    assert (await stack.client.get(f"/3ds/{intent['id']}")).status_code == 200
    async with httpx.AsyncClient(base_url=url(stack)) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/v1/payment_intents/pi_x")).status_code == 401

    await clear_faults(url(stack))
    assert (await stack.client.get(f"/v1/payment_intents/{intent['id']}")).status_code == 200


async def test_retries_under_one_key_never_make_two_intents(stack: Stack) -> None:
    await set_faults(url(stack), api={"error_rate": 0.5})

    async def pay(reference: str) -> tuple[dict[str, Any], int]:
        key = str(uuid.uuid4())
        for failures in range(40):
            response = await create_intent(stack.client, key, merchant_reference=reference)
            if response.status_code == 200:
                return response.json(), failures
            assert error_code(response) == "sandbox_unavailable"
        raise AssertionError("no answer in 40 tries")

    references = [f"order-{n}" for n in range(30)]
    results = await asyncio.gather(*(pay(reference) for reference in references))
    assert sum(failures for _, failures in results) > 0
    assert count(stack, "SELECT count(*) FROM payment_intents") == 30
    for reference, (intent, _) in zip(references, results, strict=True):
        sql = "SELECT id FROM payment_intents WHERE merchant_reference = ?"
        with closing(sqlite3.connect(stack.data_dir / "acquirer.sqlite3")) as db:
            assert db.execute(sql, (reference,)).fetchall() == [(intent["id"],)]


async def test_latency_slows_down_the_api_only(stack: Stack) -> None:
    intent = (await create_intent(stack.client)).json()
    await set_faults(url(stack), api={"latency_ms": 300})

    started = time.monotonic()
    assert (await stack.client.get(f"/v1/payment_intents/{intent['id']}")).status_code == 200
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    assert (await stack.client.get("/healthz")).status_code == 200
    assert time.monotonic() - started < 0.3
