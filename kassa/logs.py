"""Structured log lines: one JSON object a line, one event a line.

Call `log.info("reserved stock", extra={"order_id": ..., "skus": ...})`: every extra becomes a
field. Context fills in the rest without being passed around: `request_id` in the api (set by
its middleware), `workflow_id`, `run_id` and `activity` inside an activity, `order_id` when the
activity's input names one. Never pass a secret, a token or a card number as an extra; as a
safety net, card-number-like digit runs and secret-looking fields are masked anyway.
"""

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from kassa.cards import luhn_valid

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# The SDK's own loggers attach these dicts; their ids are picked out below.
_TEMPORAL_EXTRAS = ("temporal_workflow", "temporal_activity")

# Fields of the current request or activity, added to every line logged under it.
_context: ContextVar[dict[str, str]] = ContextVar("kassa_log_context", default={})  # noqa: B039 — never mutated

# Runs of 13 or more digits, maybe grouped by spaces, dashes or slashes: a card number (PAN) as
# people type it, perhaps with its expiry or CVC beside it. A run is masked when some 13 to 19 of
# its digits pass the Luhn check, so that ids and timestamps stay readable.
# A UUID is matched first and left alone: its dashes would otherwise join its digit groups into
# such a run: 0.8 % of random UUIDs (order ids, reservation ids) were masked, making lines
# unfindable.
_CARD_NUMBER_OR_UUID = re.compile(
    r"(?P<uuid>(?<![0-9a-fA-F])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9a-fA-F]))"
    r"|(?<!\d)\d(?:[ /-]?\d){12,}(?!\d)"
)
_SECRET_KEY = re.compile(
    r"secret|password|token|authorization|api_key|card_number|(^|_)(pan|cvc)(_|$)", re.IGNORECASE
)
_MASK = "[redacted]"


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Adds `fields` (the ones not None) to every line logged inside the block, in this task."""
    token = _context.set(_context.get() | {k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


def _activity_fields() -> dict[str, str]:
    if not activity.in_activity():
        return {}
    info = activity.info()
    return {
        "workflow_id": info.workflow_id or "",
        "run_id": info.workflow_run_id or "",
        "activity": info.activity_type,
    }


def _temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in _TEMPORAL_EXTRAS:
        found = record.__dict__.get(name)
        if isinstance(found, dict):
            fields |= {
                k: found[k]
                for k in ("workflow_id", "run_id", "workflow_type", "activity_type")
                if k in found
            }
    return fields


# Longer runs of digits are masked whole: no log field needs one, and checking every window of a
# crafted one (a query string of 16,000 digits) held the event loop for a quarter of a second.
LONGEST_CHECKED_RUN = 40


def _holds_a_card(run: str) -> bool:
    """A card number anywhere in this run of digits: an expiry, a CVC or an id may sit next to
    one."""
    digits = "".join(ch for ch in run if ch.isdigit())
    if len(digits) > LONGEST_CHECKED_RUN:
        return True
    return any(
        luhn_valid(digits[start : start + length])
        for length in range(13, min(len(digits), 19) + 1)
        for start in range(len(digits) - length + 1)
    )


def _without_cards(text: str) -> str:
    return _CARD_NUMBER_OR_UUID.sub(
        lambda found: (
            _MASK if not found.group("uuid") and _holds_a_card(found.group()) else found.group()
        ),
        text,
    )


def _masked(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and key not in ("token_type",):
        return _MASK
    if isinstance(value, str):
        return _without_cards(value)
    if isinstance(value, dict):
        return {k: _masked(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(key, v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _without_cards(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _without_cards(record.getMessage()),
        }
        line |= _context.get() | _activity_fields() | _temporal_fields(record)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _TEMPORAL_EXTRAS:
                line[key] = _masked(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            # Its type and whole message (a database error's message ends in a "Background on
            # this error" line, which alone says nothing), and where it came from.
            line["error_type"] = f"{type(error).__module__}.{type(error).__qualname__}"
            line["error"] = _without_cards(str(error))
            line["traceback"] = _without_cards(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class ActivityLogContext(Interceptor):
    """Worker interceptor: every line an activity logs carries the order id of its input."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _OrderIdOfInput(next)


class _OrderIdOfInput(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        order_id = getattr(input.args[0], "order_id", None) if input.args else None
        with log_context(order_id=order_id):
            return await super().execute_activity(input)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
