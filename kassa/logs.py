"""Structured log lines: `key=value` pairs, one event a line, the order id wherever there is one.

Call `log.info("reserved stock", extra={"order_id": ..., "skus": ...})`: every extra becomes a
pair. Never pass a secret, a token or a card number as an extra.
"""

import logging
import sys

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


def _pair(key: str, value: object) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' "='):
        text = '"' + text.replace('"', '\\"') + '"'
    return f"{key}={text}"


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pairs = [
            _pair("level", record.levelname.lower()),
            _pair("logger", record.name),
            _pair("msg", record.getMessage()),
        ]
        pairs += [_pair(k, v) for k, v in record.__dict__.items() if k not in _STANDARD]
        if record.exc_info:
            pairs.append(_pair("error", self.formatException(record.exc_info).splitlines()[-1]))
        return " ".join(pairs)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
