"""The OpenAPI document is a contract: Schemathesis (schemathesis.toml) fuzzes every operation of
the running api as anonymous, customer and admin, and finds no 5xx and no answer the document
does not describe (status, content type, body)."""

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import Kassa

ROOT = Path(__file__).parent.parent
FUZZ_SECONDS = 60


@pytest.mark.parametrize("role", ["anonymous", "customer", "admin"])
async def test_the_api_answers_as_its_document_says(kassa: Kassa, role: str) -> None:
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS="tests.contract_hooks",
        KASSA_ACQUIRER_WEBHOOK_SECRET=kassa.settings.acquirer_webhook_secret or "",
    )
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
    async with asyncio.timeout(FUZZ_SECONDS):
        output, _ = await fuzzer.communicate()
    assert fuzzer.returncode == 0, output.decode()[-20000:]
