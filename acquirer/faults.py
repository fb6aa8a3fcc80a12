"""Faults on demand for tests and demos: webhooks dropped, duplicated, delayed or reordered;
`/v1` calls slowed down or failed with 503.

They live in the acquirer process's memory (`app.state.faults`) and are set over HTTP at
`/_sandbox/faults`, which exists only outside production. What a POST sets replaces all that was
set before; a part it leaves out means no fault of that kind.
"""

from dataclasses import asdict, field
from typing import Annotated, Any

import httpx
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

Rate = Annotated[float, Field(strict=True, ge=0, le=1)]

# With `reorder`, each delivery waits up to this much longer, at random: events created within
# this window of each other (an intent's requires_action and succeeded, a burst of intents)
# arrive in random order.
REORDER_WINDOW_SECONDS = 1.0


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class WebhookFaults:
    # Decided once per event: a dropped event is marked `dropped` and never sent.
    drop_rate: Rate = 0.0
    # How many times each delivered event reaches the merchant, each copy signed afresh.
    duplicate: Annotated[int, Field(strict=True, ge=1, le=10)] = 1
    delay_seconds: Annotated[float, Field(strict=True, ge=0, le=600)] = 0.0
    reorder: Annotated[bool, Field(strict=True)] = False


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ApiFaults:
    # Drawn per call; half of the failed POSTs fail after the work is done, like a timeout
    # after the bank committed, so only a retry under the same Idempotency-Key is safe.
    error_rate: Rate = 0.0
    latency_ms: Annotated[int, Field(strict=True, ge=0, le=60_000)] = 0


@dataclass(config=ConfigDict(extra="forbid"))
class Faults:
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)
    api: ApiFaults = field(default_factory=ApiFaults)

    def set(self, other: "Faults") -> None:
        """Changes this object in place: the deliverer and the API middleware hold it."""
        self.webhooks, self.api = other.webhooks, other.api

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


async def set_faults(
    base_url: str,
    *,
    webhooks: WebhookFaults | dict[str, Any] | None = None,
    api: ApiFaults | dict[str, Any] | None = None,
) -> Faults:
    """Sets exactly these faults at the sandbox acquirer at `base_url`, e.g.
    `await set_faults(url, webhooks={"duplicate": 3, "reorder": True})`; idempotent."""
    parts = {"webhooks": webhooks, "api": api}
    body = {
        name: asdict(part) if isinstance(part, WebhookFaults | ApiFaults) else part
        for name, part in parts.items()
        if part is not None
    }
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/_sandbox/faults", json=body)
    response.raise_for_status()
    return Faults(**response.json())


async def clear_faults(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.delete("/_sandbox/faults")
    response.raise_for_status()
