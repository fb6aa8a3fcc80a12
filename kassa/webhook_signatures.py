"""Webhook signatures: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`, Stripe's scheme,
which the sandbox bank uses too (in its `Acquirer-Signature` header; Stripe's is
`Stripe-Signature`).

The timestamp is signed with the body, so an old delivery cannot be replayed with a fresh one.
The sandbox bank signs; the gateway's provider adapters verify.
"""

import hashlib
import hmac


class SignatureError(Exception):
    """`code` is one of signature_missing, signature_malformed, signature_mismatch,
    signature_expired."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: str, header: str | None, body: bytes, now: int, tolerance_seconds: int = 300
) -> None:
    """Raises `SignatureError` unless `header` signs `body` with `secret` and is at most
    `tolerance_seconds` old at `now`."""
    if not header:
        raise SignatureError("signature_missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            # Several v1 values are allowed, as while a secret is being rotated.
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature_malformed")
    expected = _digest(secret, body, timestamp).encode()
    if not any(hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates):
        raise SignatureError("signature_mismatch")
    if now - timestamp > tolerance_seconds:
        raise SignatureError("signature_expired")
