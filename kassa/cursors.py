"""Opaque page cursors: a JSON value in URL-safe base64 without padding. Each list that pages
(the catalog search, the admin's orders) checks what it decodes: a cursor comes from the client."""

import base64
import json
from typing import Any


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The value inside; ValueError (bad base64, not JSON, not ASCII) if there is none."""
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
