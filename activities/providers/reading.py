"""Reading a provider's event, whichever the provider: its body as JSON that PostgreSQL can store
whole (webhook_events keeps it), and the order id it echoes back, which may be anything."""

import json
import math
import uuid
from typing import Any


def storable_json(body: bytes) -> Any:
    """The parsed body; ValueError if it is not JSON, or JSON that PostgreSQL would refuse: NaN
    and Infinity (Python's extension) or a number too large for a float (`1e400`, which Python
    reads as infinity), NUL or a lone surrogate in any string, nesting too deep to read."""
    try:
        payload = json.loads(body, parse_constant=_not_json, parse_float=_finite)
        json.dumps(payload, ensure_ascii=False).encode()  # a lone surrogate: UnicodeEncodeError
        if _has_nul(payload):
            raise ValueError("NUL is not storable")
    except RecursionError:
        raise ValueError("nested too deeply") from None
    return payload


def order_id_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{number} is not a finite number")
    return value


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
