"""The one interface Kassa speaks to a payment service provider (PSP), whichever it is.

The checkout's activities, the webhooks, refunds and the reconciler use `PaymentProvider` and
nothing else; an adapter (sandbox, stripe, yookassa) turns it into the provider's own API.

- Money crosses it as integer minor units (kopecks) and an ISO currency code; an adapter converts
  to the provider's form (YooKassa's decimal strings, through `Decimal`).
- Every call that changes something takes an idempotency key that the caller derives from what
  it is doing (`payment_key(order, attempt, "create")`, never random), so a retried activity
  repeats the same request and the provider does it once.
- Statuses are ours (`kassa.statuses.PaymentStatus`): each adapter maps its provider's words.
- A provider that cannot answer raises `ProviderUnavailable` (retry under the same key); one
  that refuses (a declined card, a refund over what is left) raises a `DomainError`.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from activities.webhook_inbox import PaymentEvent
from kassa.errors import Conflict, DomainError, Invalid


@dataclass(frozen=True)
class Capabilities:
    two_stage: bool  # authorize now, capture (or void) later
    partial_capture: bool
    partial_refund: bool
    currencies: frozenset[str]
    # A card token with every payment (sandbox, Stripe); False: the customer may pay on the
    # provider's own page instead (YooKassa).
    payment_method_required: bool = True


@dataclass(frozen=True)
class NewPayment:
    order_id: uuid.UUID  # echoed back by the provider (metadata), so its events find the order
    amount: int  # minor units
    currency: str
    idempotency_key: str
    return_url: str  # where the provider sends the customer back after 3-D Secure or its page
    capture: bool  # False: authorize only (two-stage providers)
    payment_method: str | None  # the provider's token for the card; None: the provider's own page
    description: str


@dataclass(frozen=True)
class ProviderPayment:
    payment_id: str
    status: str  # one of PaymentStatus's values
    amount: int
    currency: str
    redirect_url: str | None = None  # where the customer must go (3-D Secure, the PSP's page)
    decline_code: str | None = None


@dataclass(frozen=True)
class ProviderRefund:
    refund_id: str
    payment_id: str
    amount: int
    status: str  # pending | succeeded | failed | canceled, the provider's refund words mapped


@dataclass(frozen=True)
class WebhookRequest:
    """What arrived at `POST /webhooks/{provider}`, as it arrived: the provider signs the raw
    body, and YooKassa is trusted by where it came from."""

    body: bytes
    headers: Mapping[str, str]  # lower-case names
    peer: str | None  # the sending address, as the gateway's proxy settings resolve it


@dataclass(frozen=True)
class Acknowledgement:
    """What the provider expects back for an event it may stop sending."""

    status_code: int
    body: dict[str, object]


class ProviderUnavailable(Exception):
    """The provider did not answer, or answered 5xx: safe to retry under the same key."""


class PaymentMethodRejected(Invalid):
    """The provider refused the payment method outright (no payment was made)."""


class RefundRefused(Conflict):
    pass


class WebhookRefused(Exception):
    """Not the provider's event (bad signature, foreign address, malformed): answered 4xx, stored
    nowhere. `retry` means the provider should send it again (the check itself could not run)."""

    def __init__(self, code: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.retry = code, message, retry


class PaymentProvider(Protocol):
    name: str
    capabilities: Capabilities

    async def create_payment(self, payment: NewPayment) -> ProviderPayment:
        """Idempotent on `payment.idempotency_key`: a retry returns the payment the first made."""
        ...

    async def get_payment(self, payment_id: str) -> ProviderPayment:
        """The provider's word now: the source of truth after a webhook, when polling, and when
        reconciling."""
        ...

    async def capture(
        self, payment_id: str, amount: int | None, idempotency_key: str
    ) -> ProviderPayment:
        """An authorized payment taken, all of it or `amount`. Idempotent on the key."""
        ...

    async def cancel(self, payment_id: str, idempotency_key: str) -> ProviderPayment:
        """Void a payment not yet captured (or one still waiting for the customer). If it went
        through meanwhile, says so (status succeeded) instead. Idempotent."""
        ...

    async def refund(self, payment_id: str, amount: int, idempotency_key: str) -> ProviderRefund:
        """Money back from a captured payment. Idempotent on the key; more than is left is a
        RefundRefused."""
        ...

    async def get_refund(self, refund_id: str) -> ProviderRefund: ...

    async def parse_webhook(self, request: WebhookRequest) -> PaymentEvent:
        """The provider's event, verified (signature, or source address and a re-fetch from its
        API) and in our terms; raises WebhookRefused."""
        ...

    def acknowledgement(self) -> Acknowledgement:
        """The answer that tells the provider the event is taken."""
        ...

    async def aclose(self) -> None: ...


def payment_key(order_id: uuid.UUID, attempt: int, action: str) -> str:
    """The idempotency key of creating a payment attempt: `{order}:{attempt}:{action}`, the same
    on every retry. A payment's own actions are keyed by its id (`{payment}:capture`, …)."""
    return f"{order_id}:{attempt}:{action}"


async def capture_all(provider: PaymentProvider, payment_id: str) -> tuple[ProviderPayment, bool]:
    """A held payment taken, all of it, once per payment (`{payment}:capture`): the provider's
    word after, and whether it refused (the hold is gone; the word is then what it says of the
    payment now)."""
    try:
        return await provider.capture(payment_id, None, f"{payment_id}:capture"), False
    except DomainError:
        return await provider.get_payment(payment_id), True
