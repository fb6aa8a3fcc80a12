"""The OpenAPI document is a contract: Schemathesis (schemathesis.toml) fuzzes every operation of
the running api as anonymous, customer and admin, and finds no 5xx and no answer the document
does not describe (status, content type, body)."""

import asyncio
import io
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from api.main import create_app as create_gateway
from kassa.logs import JsonFormatter
from kassa.settings import Settings
from tests.conftest import Kassa

ROOT = Path(__file__).parent.parent
FUZZ_SECONDS = 120  # each run takes about 10 s alone; a busy machine is slower
ASSET_TYPES = {"text/javascript", "application/javascript", "text/css", "image/png"}


@pytest.mark.parametrize("role", ["anonymous", "customer", "admin"])
async def test_the_api_answers_as_its_document_says(kassa: Kassa, role: str) -> None:
    env = dict(
        os.environ, KASSA_ACQUIRER_WEBHOOK_SECRET=kassa.settings.acquirer_webhook_secret or ""
    )
    events_read = _webhook_events("malformed_event")
    if role != "anonymous":
        env["KASSA_FUZZ_TOKEN"] = (await kassa.account(role)).token
    # A process of its own: the api serves from this test's event loop, which must keep running.
    fuzzer = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        f"{kassa.api_url}/openapi.json",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(FUZZ_SECONDS):
            output, _ = await fuzzer.communicate()
    finally:
        if fuzzer.returncode is None:  # out of time: it goes with the test
            fuzzer.kill()
            await fuzzer.wait()
    assert fuzzer.returncode == 0, output.decode()[-20000:]
    # Signed as the bank signs: the events got past the signature, to be read (and refused).
    assert _webhook_events("malformed_event") > events_read, output.decode()[-20000:]


def _webhook_events(outcome: str) -> float:
    return REGISTRY.get_sample_value("kassa_webhook_events_total", {"outcome": outcome}) or 0.0


def gateway() -> FastAPI:
    # Its routes, without the lifespan: what these tests ask needs no database or Temporal.
    return create_gateway(Settings(env="test"))


def in_process(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://kassa.test")


def test_the_document_states_the_limits_the_server_keeps() -> None:
    document = gateway().openapi()
    schemas = document["components"]["schemas"]
    quantity = schemas["NewItem"]["properties"]["quantity"]
    assert (quantity["minimum"], quantity["maximum"]) == (1, 99)
    assert schemas["Credentials"]["properties"]["email"]["format"] == "email"
    assert schemas["NewAccount"]["properties"]["password"]["minLength"] == 8
    images = schemas["ProductFields"]["properties"]["images"]["anyOf"][0]
    assert images["items"]["pattern"].startswith("^https://")
    assert "after starts_at" in schemas["NewPromo"]["properties"]["ends_at"]["description"]
    assert "HTTPValidationError" not in schemas
    problems = {
        status: answer["content"]
        for path in document["paths"].values()
        for operation in path.values()
        for status, answer in operation["responses"].items()
        if status.startswith("4")
    }
    assert problems and all(
        content
        == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for content in problems.values()
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/orders?created_from=0.5", None),
        ("/admin/orders?created_before=1764000000", None),
        ("/admin/orders?created_from=2026-01-01T00:00:00", None),  # no zone
        ("/admin/promo-codes", {"code": "NUMBERS", "kind": "fixed", "value": 100, "starts_at": 0}),
        ("/admin/promo-codes", {"code": "NUMBERS", "kind": "fixed", "value": 100, "ends_at": 1.5}),
    ],
)
async def test_a_number_is_no_date_time(
    kassa: Kassa, path: str, body: dict[str, Any] | None
) -> None:
    admin = await kassa.account("admin")
    async with admin.http() as http:
        answer = await (http.get(path) if body is None else http.post(path, json=body))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_request"


async def test_a_method_not_allowed_names_the_allowed_ones() -> None:
    async with in_process(gateway()) as http:
        answer = await http.delete("/catalog/categories")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
    assert answer.json()["code"] == "method_not_allowed"


async def test_an_unexpected_error_is_logged_with_its_type_message_and_request_id() -> None:
    app = gateway()

    @app.get("/broken", include_in_schema=False)
    async def broken() -> None:
        # As SQLAlchemy words its errors: the last line alone says nothing.
        raise ValueError("the real reason\n(Background on this error at: https://sqlalche.me/e/20)")

    # Formatted as it is logged: the request's context is there only then.
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("kassa.api").addHandler(handler)
    try:
        async with in_process(app) as http:
            answer = await http.get("/broken", headers={"X-Request-Id": "req-broken-0001"})
    finally:
        logging.getLogger("kassa.api").removeHandler(handler)
    assert answer.status_code == 500 and answer.json()["code"] == "internal_error"
    assert answer.headers["x-request-id"] == "req-broken-0001"
    [line] = [json.loads(text) for text in lines.getvalue().splitlines()]
    assert line["msg"] == "unexpected error" and line["path"] == "/broken"
    assert line["request_id"] == "req-broken-0001"
    assert line["error_type"] == "builtins.ValueError"
    assert line["error"].startswith("the real reason")
    assert "in broken" in line["traceback"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_need_no_internet(page: str) -> None:
    async with in_process(gateway()) as http:
        html = (await http.get(page)).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets, html
        for url in assets:
            assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
            answer = await http.get(url)
            assert answer.status_code == 200, url
            assert answer.headers["content-type"].split(";")[0] in ASSET_TYPES, url
