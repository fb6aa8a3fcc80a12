"""Delivers the outbox's events to the merchant, each on its own, until a 2xx or the last try.

At least once: an event whose delivery is cut short (a crash, a shutdown mid-request) stays
pending and is sent again at the next start, so receivers dedupe by event id.

Sandbox faults (acquirer/faults.py) are read when an event is picked up and hold for all its
deliveries: it may be dropped, sent more than once, later, or after a random extra wait of up to
`REORDER_WINDOW_SECONDS` that shuffles events created close together.
"""

import asyncio
import logging
import random
import time

import httpx

from acquirer.faults import REORDER_WINDOW_SECONDS, Faults, WebhookFaults
from acquirer.storage import Event, EventState, Storage
from kassa.webhook_signatures import sign

log = logging.getLogger(__name__)


class Deliverer:
    def __init__(
        self,
        storage: Storage,
        new_events: asyncio.Event,
        url: str,
        secret: str,
        client: httpx.AsyncClient,
        *,
        first_retry_seconds: float = 0.5,
        max_retry_seconds: float = 30.0,
        max_attempts: int = 12,
        concurrency: int = 16,
        faults: Faults | None = None,
    ) -> None:
        """`new_events` is set whenever the storage commits events; `faults` may change while
        this runs."""
        self._storage = storage
        self._new_events = new_events
        self._url = url
        self._secret = secret
        self._client = client
        self._first_retry_seconds = first_retry_seconds
        self._max_retry_seconds = max_retry_seconds
        self._max_attempts = max_attempts
        self._faults = faults if faults is not None else Faults()
        # Bounds requests in flight, not events: an event waiting out its backoff holds no slot.
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self) -> None:
        """Runs until cancelled; cancelling it cancels the deliveries, which stay pending."""
        seen = 0  # each event is picked up once: at start if pending, else when it is added
        async with asyncio.TaskGroup() as deliveries:
            while True:
                self._new_events.clear()
                for event in self._storage.pending_events(after_seq=seen):
                    seen = event.seq
                    deliveries.create_task(self._deliver(event))
                await self._new_events.wait()

    async def _deliver(self, event: Event) -> None:
        faults = self._faults.webhooks
        if random.random() < faults.drop_rate:
            self._storage.drop_event(event.id)
            extra = {"event_id": event.id, "event_type": event.type}
            log.warning("webhook dropped by a sandbox fault", extra=extra)
            return
        async with asyncio.TaskGroup() as copies:
            for copy in range(1, faults.duplicate):
                copies.create_task(self._send_until_taken(event, faults, copy))
            await self._send_until_taken(event, faults, copy=0)

    async def _send_until_taken(self, event: Event, faults: WebhookFaults, copy: int) -> None:
        """Copy 0 is the event itself and its attempts are recorded; the others are the sandbox's
        duplicates, retried alike but not recorded."""
        wait = faults.delay_seconds
        if faults.reorder:
            wait += random.uniform(0, REORDER_WINDOW_SECONDS)
        if wait:
            await asyncio.sleep(wait)
        attempts = event.attempts
        while True:
            async with self._slots:
                error = await self._send(event)
            attempts += 1
            state: EventState = "pending"
            if error is None:
                state = "delivered"
            elif attempts >= self._max_attempts:
                state = "failed"
            extra = {"event_id": event.id, "event_type": event.type, "attempts": attempts}
            if copy:
                extra["copy"] = copy
            else:
                self._storage.record_attempt(event.id, state, error)
            if state == "delivered":
                log.info("webhook delivered", extra=extra)
                return
            if state == "failed":
                log.error("webhook given up", extra=extra | {"reason": error})
                return
            log.warning("webhook delivery failed", extra=extra | {"reason": error})
            await asyncio.sleep(self._retry_delay(attempts))

    def _retry_delay(self, attempts: int) -> float:
        return min(self._first_retry_seconds * 2 ** (attempts - 1), self._max_retry_seconds)

    async def _send(self, event: Event) -> str | None:
        """One attempt: None when the merchant took the event, else why not."""
        headers = {
            "Content-Type": "application/json",
            "Acquirer-Signature": sign(self._secret, event.body, int(time.time())),
        }
        try:
            response = await self._client.post(self._url, content=event.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if response.is_success else f"HTTP {response.status_code}"
