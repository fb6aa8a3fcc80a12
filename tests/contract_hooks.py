"""Schemathesis hooks for the api's contract (schemathesis.toml): each request carries the
caller's token (`KASSA_FUZZ_TOKEN`; none: anonymous), and a webhook's body is signed as the
sandbox bank signs it (`KASSA_ACQUIRER_WEBHOOK_SECRET`), so that the fuzzer reaches past the
signature check into the event's reading."""

import json
import os
import time
from typing import Any

import schemathesis
from schemathesis.core import NotSet

from kassa.webhook_signatures import sign

WEBHOOK_PATH = "/webhooks/{provider_name}"


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    token = os.environ.get("KASSA_FUZZ_TOKEN")
    if token:
        case.headers["Authorization"] = f"Bearer {token}"
    secret = os.environ.get("KASSA_ACQUIRER_WEBHOOK_SECRET")
    if secret and case.operation.path == WEBHOOK_PATH and not isinstance(case.body, bytes | NotSet):
        case.path_parameters = {"provider_name": "sandbox"}
        body = json.dumps(case.body).encode()
        case.body = body
        case.headers["Acquirer-Signature"] = sign(secret, body, int(time.time()))
