"""The sandbox bank's ledger in one SQLite file: cards, payment intents, refunds, idempotency
keys and the webhook outbox.

A state change and the events it causes commit in one transaction, so no webhook is lost and
none is sent for a change that did not happen. Methods are called from the event loop's thread:
`on_events` may wake asyncio code.
"""

import dataclasses
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kassa.cards import luhn_valid

log = logging.getLogger(__name__)

Behaviour = Literal["approve", "three_ds", "decline"]
# `dropped`: lost on purpose by a sandbox fault (acquirer/faults.py), never sent.
EventState = Literal["pending", "delivered", "failed", "dropped"]

# The sandbox's magic cards and their ready-made tokens; any other valid card approves.
TEST_CARDS: dict[str, Behaviour] = {
    "4242424242424242": "approve",
    "4000000000003220": "three_ds",
    "4000000000000002": "decline",
}
TEST_TOKENS: dict[str, tuple[Behaviour, str, str]] = {
    "tok_success": ("approve", "4242", "visa"),
    "tok_3ds": ("three_ds", "3220", "visa"),
    "tok_decline": ("decline", "0002", "visa"),
}

OUTCOMES: dict[Behaviour, tuple[str, str | None]] = {
    "approve": ("succeeded", None),
    "three_ds": ("requires_action", None),
    "decline": ("failed", "card_declined"),
}
EVENT_TYPES = {
    "succeeded": "payment_intent.succeeded",
    "failed": "payment_intent.payment_failed",
    "requires_action": "payment_intent.requires_action",
    "canceled": "payment_intent.canceled",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    behaviour TEXT NOT NULL,
    last4 TEXT NOT NULL,
    brand TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_intents (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    merchant_reference TEXT NOT NULL,
    return_url TEXT,
    last4 TEXT NOT NULL,
    decline_code TEXT,
    authentication_url TEXT,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    payment_intent TEXT NOT NULL REFERENCES payment_intents (id),
    amount INTEGER NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    object_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_pending ON events (state) WHERE state = 'pending';
"""


class Rejected(Exception):
    """A request the bank refuses; `code` is the API's error code."""

    def __init__(self, code: str, message: str, intent: "Intent | None" = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.intent = intent


class NotFound(Rejected):
    pass


class Invalid(Rejected):
    pass


class Conflict(Rejected):
    pass


@dataclass(frozen=True)
class Token:
    id: str
    last4: str
    brand: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "card": {"last4": self.last4, "brand": self.brand}}


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    currency: str
    merchant_reference: str
    return_url: str | None
    last4: str
    decline_code: str | None
    # Issued at creation, like a real bank's challenge link; offered only while it is awaited.
    authentication_url: str | None
    created: int

    def as_json(self) -> dict[str, Any]:
        next_action = None
        if self.status == "requires_action":
            next_action = {"type": "redirect_to_url", "url": self.authentication_url}
        return {
            "id": self.id,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "merchant_reference": self.merchant_reference,
            "next_action": next_action,
            "decline_code": self.decline_code,
            "created": self.created,
        }


@dataclass(frozen=True)
class Refund:
    id: str
    payment_intent: str
    amount: int
    status: str

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Event:
    seq: int  # grows with every event; rows are never deleted
    id: str
    type: str
    body: bytes
    attempts: int


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:4] in {"2200", "2201", "2202", "2203", "2204"}:
        return "mir"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


class Storage:
    def __init__(self, path: Path, base_url: str, on_events: Callable[[], None]) -> None:
        """`base_url` is where shoppers reach this bank's 3-D Secure pages; `on_events` is told
        after a commit that added webhook events."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._base_url = base_url
        self._on_events = on_events
        # One connection behind a lock: every transaction is short and serialised, so
        # concurrent requests queue here instead of meeting "database is locked".
        self._lock = threading.Lock()
        self._emitted = False
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL with NORMAL may lose the last commits on a power cut, never corrupts: a sandbox
        # can afford that.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(SCHEMA)
        self._db.executemany(
            "INSERT OR IGNORE INTO tokens (id, behaviour, last4, brand) VALUES (?, ?, ?, ?)",
            [(id, *card) for id, card in TEST_TOKENS.items()],
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._emitted = False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            emitted = self._emitted
        if emitted:
            self._on_events()

    def create_token(self, card_number: str) -> Token:
        """Keeps what the card does and its last four digits, never the number itself."""
        number = re.sub(r"[ -]", "", card_number)
        if not (re.fullmatch(r"\d{12,19}", number) and luhn_valid(number)):
            raise Invalid("invalid_card_number", "The card number is not valid.")
        token = Token(new_id("tok"), number[-4:], card_brand(number))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO tokens (id, behaviour, last4, brand) VALUES (?, ?, ?, ?)",
                (token.id, TEST_CARDS.get(number, "approve"), token.last4, token.brand),
            )
        return token

    def create_intent(
        self,
        idempotency_key: str,
        fingerprint: str,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        merchant_reference: str,
        return_url: str | None,
    ) -> Intent:
        """Idempotent by `idempotency_key`: a replay returns the intent the key created, as it
        is now."""
        with self._transaction() as db:
            if (replayed := self._replay(db, idempotency_key, fingerprint)) is not None:
                return self._intent(db, replayed)
            token = db.execute(
                "SELECT behaviour, last4 FROM tokens WHERE id = ?", (payment_method,)
            ).fetchone()
            if token is None:
                raise Invalid("invalid_payment_method", "No such payment method.")
            status, decline_code = OUTCOMES[token["behaviour"]]
            intent_id = new_id("pi")
            intent = Intent(
                id=intent_id,
                status=status,
                amount=amount,
                currency=currency,
                merchant_reference=merchant_reference,
                return_url=return_url,
                last4=token["last4"],
                decline_code=decline_code,
                authentication_url=(
                    f"{self._base_url}/3ds/{intent_id}" if status == "requires_action" else None
                ),
                created=int(time.time()),
            )
            db.execute(
                "INSERT INTO payment_intents (id, status, amount, currency, merchant_reference,"
                " return_url, last4, decline_code, authentication_url, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                dataclasses.astuple(intent),
            )
            self._remember(db, idempotency_key, fingerprint, intent.id)
            self._emit(db, EVENT_TYPES[status], intent.as_json())
        log.info(
            "payment intent created",
            extra={
                "intent_id": intent.id,
                "merchant_reference": merchant_reference,
                "status": status,
            },
        )
        return intent

    def intent(self, intent_id: str) -> Intent:
        with self._lock:
            return self._intent(self._db, intent_id)

    def authenticate(self, intent_id: str, approved: bool) -> Intent:
        """The shopper's answer to 3-D Secure; only an intent still awaiting it moves, any
        other is refused with `Conflict` carrying the intent as it is."""
        with self._transaction() as db:
            intent = self._intent(db, intent_id)
            if intent.status != "requires_action":
                raise Conflict("authentication_not_required", "Nothing to confirm.", intent)
            if approved:
                return self._move(db, intent, "succeeded", None)
            return self._move(db, intent, "failed", "authentication_failed")

    def cancel(self, intent_id: str) -> Intent:
        """Idempotent: a canceled or failed intent is returned unchanged; a succeeded one is
        refused, so the caller learns the payment won the race."""
        with self._transaction() as db:
            intent = self._intent(db, intent_id)
            if intent.status == "succeeded":
                raise Conflict("intent_succeeded", "The payment already succeeded.", intent)
            if intent.status != "requires_action":
                return intent
            return self._move(db, intent, "canceled", None)

    def refund(
        self, idempotency_key: str, fingerprint: str, *, payment_intent: str, amount: int | None
    ) -> Refund:
        """Idempotent by `idempotency_key`; `amount=None` refunds what remains. An intent's
        refunds never add up to more than its amount."""
        with self._transaction() as db:
            if (replayed := self._replay(db, idempotency_key, fingerprint)) is not None:
                return self._refund(db, replayed)
            intent = self._intent(db, payment_intent)
            if intent.status != "succeeded":
                raise Conflict("intent_not_succeeded", f"The payment is {intent.status}.")
            refunded = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE payment_intent = ?",
                (intent.id,),
            ).fetchone()[0]
            remaining = intent.amount - refunded
            amount = remaining if amount is None else amount
            if not 0 < amount <= remaining:
                raise Conflict("refund_exceeds_charge", f"{remaining} kopecks remain to refund.")
            refund = Refund(new_id("re"), intent.id, amount, "succeeded")
            db.execute(
                "INSERT INTO refunds (id, payment_intent, amount, status) VALUES (?, ?, ?, ?)",
                dataclasses.astuple(refund),
            )
            self._remember(db, idempotency_key, fingerprint, refund.id)
            self._emit(db, "charge.refunded", refund.as_json())
        log.info(
            "refund created",
            extra={
                "intent_id": intent.id,
                "merchant_reference": intent.merchant_reference,
                "refund_id": refund.id,
                "amount": amount,
            },
        )
        return refund

    def pending_events(self, after_seq: int) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, type, body, attempts FROM events"
                " WHERE state = 'pending' AND seq > ? ORDER BY seq",
                (after_seq,),
            ).fetchall()
        return [
            Event(row["seq"], row["id"], row["type"], row["body"].encode(), row["attempts"])
            for row in rows
        ]

    def record_attempt(self, event_id: str, state: EventState, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE events SET attempts = attempts + 1, state = ?, last_error = ? WHERE id = ?",
                (state, error, event_id),
            )

    def drop_event(self, event_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE events SET state = 'dropped' WHERE id = ?", (event_id,))

    def _replay(self, db: sqlite3.Connection, key: str, fingerprint: str) -> str | None:
        """The id of what `key` created before, if anything; refuses a key reused for a
        different request."""
        row = db.execute(
            "SELECT fingerprint, object_id FROM idempotency_keys WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        if row["fingerprint"] != fingerprint:
            raise Conflict(
                "idempotency_key_reused", "This Idempotency-Key was used for a different request."
            )
        return str(row["object_id"])

    def _remember(self, db: sqlite3.Connection, key: str, fingerprint: str, object_id: str) -> None:
        db.execute(
            "INSERT INTO idempotency_keys (key, fingerprint, object_id) VALUES (?, ?, ?)",
            (key, fingerprint, object_id),
        )

    def _intent(self, db: sqlite3.Connection, intent_id: str) -> Intent:
        row = db.execute("SELECT * FROM payment_intents WHERE id = ?", (intent_id,)).fetchone()
        if row is None:
            raise NotFound("not_found", "No such payment intent.")
        return Intent(**row)

    def refund_of(self, refund_id: str) -> Refund:
        with self._lock:
            return self._refund(self._db, refund_id)

    def _refund(self, db: sqlite3.Connection, refund_id: str) -> Refund:
        row = db.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
        if row is None:
            raise NotFound("not_found", "No such refund.")
        return Refund(**row)

    def _move(
        self, db: sqlite3.Connection, intent: Intent, status: str, decline_code: str | None
    ) -> Intent:
        moved = dataclasses.replace(intent, status=status, decline_code=decline_code)
        db.execute(
            "UPDATE payment_intents SET status = ?, decline_code = ? WHERE id = ?",
            (status, decline_code, intent.id),
        )
        self._emit(db, EVENT_TYPES[status], moved.as_json())
        log.info(
            "payment intent moved",
            extra={
                "intent_id": intent.id,
                "merchant_reference": intent.merchant_reference,
                "status": status,
            },
        )
        return moved

    def _emit(self, db: sqlite3.Connection, type: str, payload: dict[str, Any]) -> None:
        """Adds a webhook event to the outbox, committed with the change it tells of."""
        event_id = new_id("evt")
        created = int(time.time())
        event = {"id": event_id, "type": type, "created": created, "data": {"object": payload}}
        db.execute(
            "INSERT INTO events (id, type, body) VALUES (?, ?, ?)",
            (event_id, type, json.dumps(event, separators=(",", ":"))),
        )
        self._emitted = True
