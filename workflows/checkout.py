"""CheckoutWorkflow: the customer taps Pay Now, and the placed order is paid for or given back.

Hold the stock first, charge the money second, and keep every step reversible until the money
is in. The gateway has placed the order before this run starts (activities/placement.py: a
claim on the stock, then the order PENDING_PAYMENT in one transaction), so the run begins at
payment and owns the order from then on:

    initiate payment → wait for the outcome (webhook signal, customer, or the hold's end)
    → paid: commit the stock, then capture the money if it was only held (two-stage providers)
    → not paid: cancel the intent, release the stock, reopen the cart

One workflow per cart version (the id says which), so a double tap on Pay Now attaches to the
same run: one order, one reservation, at most one charge.
"""

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import IntentState
    from activities.temporal.checkout_steps import (
        CheckoutActivities,
        ExtendHoldInput,
        InitiatePaymentInput,
        IntentInput,
        MarkOrderInput,
        PaidOrderInput,
        ReopenCartInput,
        ReservationInput,
    )
    from kassa.statuses import (
        ENDED,
        OPEN_PAYMENTS,
        SECURED_PAYMENTS,
        SETTLED_PAYMENTS,
        OrderStatus,
        PaymentStatus,
    )
    from workflows.retries import ACQUIRER_RETRY, DATABASE_RETRY

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
ORDER_TOTAL = SearchAttributeKey.for_int("OrderTotal")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
# Registered wherever the server is set up: cli/embedded.py, tests/conftest.py, docker-compose.yml.
SEARCH_ATTRIBUTES = (ORDER_STATUS, CUSTOMER_ID, ORDER_TOTAL, PAYMENT_STATUS)

MAX_PAYMENT_ATTEMPTS = 3
# Who cancelled, as the order's reason: the customer, or support on their behalf.
CANCELLED_BY_CUSTOMER, CANCELLED_BY_STAFF = "cancelled_by_customer", "cancelled_by_staff"
CANCEL_REASONS = (CANCELLED_BY_CUSTOMER, CANCELLED_BY_STAFF)
# The checkout's own mark, in an attempt's `status`, for an attempt the acquirer did not answer
# (outage): retryable, and not counted as one of the three. Not a PaymentStatus: the acquirer never
# says it, and our payments table never holds it.
UNANSWERED_ATTEMPT = "unavailable"
# While 3-D Secure runs, ask the acquirer on this backoff in case its webhooks are lost.
STATUS_POLL_FIRST = timedelta(seconds=5)
STATUS_POLL_LONGEST = timedelta(minutes=1)
# Runs from here on commit the stock and mark the order PAID in one local activity (one
# transaction) when the money is taken in one stage, where earlier runs took two; and they gather
# their search attributes into one upsert per wait (a history event and a visibility write each),
# where earlier runs upserted each change: a frictionless checkout upserts once, at its end.
PAID_IN_ONE_STEP = "paid-in-one-step"


def checkout_workflow_id(cart_id: uuid.UUID, cart_version: int) -> str:
    return f"checkout-{cart_id}-v{cart_version}"


@dataclass(frozen=True)
class PaymentMethod:
    type: str
    token: str | None  # the provider's: tok_… (sandbox), pm_… (Stripe); None: the provider's page


@dataclass(frozen=True)
class OrderToPay:
    order_id: uuid.UUID
    total: int
    currency: str


@dataclass(frozen=True)
class HeldStock:
    reservation_id: uuid.UUID
    hold_expires_at: datetime


@dataclass(frozen=True)
class PlacedOrder:
    """The order the gateway placed, PENDING_PAYMENT, with its stock held until
    `hold_expires_at`."""

    order: OrderToPay
    reservation: HeldStock


@dataclass(frozen=True)
class CheckoutInput:
    customer_id: uuid.UUID
    cart_id: uuid.UUID
    cart_version: int
    payment_method: PaymentMethod
    placed: PlacedOrder
    # Once, for a customer still in 3-D Secure when the hold ends: more time, not a release.
    hold_grace_seconds: int = 0


def starting_search_attributes(checkout: CheckoutInput) -> TypedSearchAttributes:
    """What a run shows in search from its start, given by its starter (the gateway): part of the
    start event, so searchable while the bank is still being asked, at no upsert of its own."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CUSTOMER_ID, str(checkout.customer_id)),
            SearchAttributePair(ORDER_TOTAL, checkout.placed.order.total),
            SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING_PAYMENT),
        ]
    )


@dataclass(frozen=True)
class PaymentUpdate:
    """What the acquirer's webhook said about one intent of this order."""

    intent_id: str
    status: PaymentStatus
    decline_code: str | None = None


@dataclass(frozen=True)
class CheckoutState:
    """The answer to Pay Now, to another attempt, to cancel, and to the `status` query."""

    order_id: uuid.UUID
    status: OrderStatus
    hold_expires_at: datetime
    attempts: int
    payment: IntentState | None
    reason: str | None


@dataclass(frozen=True)
class CheckoutResult:
    order_id: uuid.UUID
    status: OrderStatus
    reason: str | None


# Outside the sandbox: Pay Now's hot path. A sandboxed run re-imports this module and checks
# every call, which took about a fifth of the worker's CPU per checkout (bench/, py-spy). The
# code here keeps to the rules by itself: time, randomness and ids come only from `workflow`.
@workflow.defn(sandboxed=False)
class CheckoutWorkflow:
    @workflow.init
    def __init__(self, checkout: CheckoutInput) -> None:
        # Set before any handler runs: a double tap's update may arrive with the first task.
        self._order = checkout.placed.order
        self._reservation_id = checkout.placed.reservation.reservation_id
        self._hold_expires_at = checkout.placed.reservation.hold_expires_at
        self._status = OrderStatus.PENDING_PAYMENT
        self._reason: str | None = None
        self._hold_extended = False
        self._attempts: list[IntentState] = []
        self._next_method: PaymentMethod | None = None
        self._cancel_requested = False
        self._cancel_reason = CANCELLED_BY_CUSTOMER
        self._webhook_updates: dict[str, PaymentUpdate] = {}
        # The attempt whose money the order has: taken, or held to be captured.
        self._paying: IntentState | None = None
        # Search attributes changed since the last upsert (by key name), and whether they wait
        # for the run's next wait (PAID_IN_ONE_STEP) or are upserted at once.
        self._unpublished: dict[str, SearchAttributeUpdate[Any]] = {}
        self._gather_attributes = False

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> CheckoutResult:
        paid_in_one_step = workflow.patched(PAID_IN_ONE_STEP)
        self._gather_attributes = paid_in_one_step
        if not paid_in_one_step:  # since the patch, the gateway starts runs with them
            self._show_attributes(
                CUSTOMER_ID.value_set(str(checkout.customer_id)),
                ORDER_TOTAL.value_set(self._order.total),
                ORDER_STATUS.value_set(self._status),
            )
        self._show_details()

        outcome, reason = await self._collect_payment(checkout)

        if outcome == OrderStatus.PAID and self._money_taken() and paid_in_one_step:
            await self._database_step(
                CheckoutActivities.commit_and_mark_paid,
                PaidOrderInput(self._order.order_id, self._reservation_id),
                start_to_close_timeout=timedelta(seconds=10),
            )
            self._ended(outcome, None)
        elif outcome == OrderStatus.PAID:
            await self._database_step(
                CheckoutActivities.commit_stock,
                ReservationInput(self._reservation_id),
                start_to_close_timeout=timedelta(seconds=10),
            )
            if await self._capture():
                await self._mark(outcome, None)
            else:
                # The held money is gone (voided, expired): the sale is undone, nothing was taken.
                await self._database_step(
                    CheckoutActivities.restock,
                    ReservationInput(self._reservation_id),
                    start_to_close_timeout=timedelta(seconds=10),
                )
                await self._end_unpaid(checkout, OrderStatus.PAYMENT_FAILED, "capture_refused")
        else:
            await self._end_unpaid(checkout, outcome, reason)
        self._publish_attributes()
        # Never complete under a running update: its caller is still waiting for the answer.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CheckoutResult(self._order.order_id, self._status, self._reason)

    async def _collect_payment(self, checkout: CheckoutInput) -> tuple[OrderStatus, str | None]:
        """Attempts until one is paid, the customer cancels, three are declined, or the hold
        ends."""
        method = checkout.payment_method
        while True:
            if self._cancelled():
                return OrderStatus.CANCELLED, self._cancel_reason
            intent = await self._initiate_payment(method)
            if intent.status in OPEN_PAYMENTS:
                intent = await self._await_authentication(checkout, intent)
            if intent.status in SECURED_PAYMENTS:
                self._paying = intent
                return OrderStatus.PAID, None
            if self._paid_by_webhook():
                await self._record_webhook_payment(method)
                return OrderStatus.PAID, None
            if self._cancelled():
                return OrderStatus.CANCELLED, self._cancel_reason
            if self._hold_remaining() <= timedelta(0):
                return OrderStatus.EXPIRED, "hold_expired"
            if self._reached_attempts() >= MAX_PAYMENT_ATTEMPTS:
                return OrderStatus.PAYMENT_FAILED, intent.decline_code or "declined"
            # Declined or unreachable: the hold keeps running while the customer tries again.
            self._publish_attributes()
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._next_method is not None
                        or self._cancel_requested
                        or self._paid_by_webhook()
                    ),
                    timeout=self._hold_remaining(),
                )
            except TimeoutError:
                return OrderStatus.EXPIRED, "hold_expired"
            if self._paid_by_webhook():
                await self._record_webhook_payment(method)
                return OrderStatus.PAID, None
            if self._next_method is not None:
                method, self._next_method = self._next_method, None

    async def _initiate_payment(self, method: PaymentMethod) -> IntentState:
        # An attempt the acquirer never answered is tried again under the same number, so the
        # same idempotency key: if the intent was made after all, it comes back, never a second.
        attempt = self._reached_attempts() + 1
        try:
            intent = await workflow.execute_activity_method(
                CheckoutActivities.initiate_payment,
                InitiatePaymentInput(
                    self._order.order_id,
                    attempt,
                    self._order.total,
                    self._order.currency,
                    method.token,
                ),
                start_to_close_timeout=timedelta(seconds=5),
                # The customer is waiting on Pay Now: past this, answer "try again" while the hold
                # runs.
                schedule_to_close_timeout=timedelta(seconds=20),
                retry_policy=ACQUIRER_RETRY,
            )
        except ActivityError:
            intent = IntentState(
                intent_id="", status=UNANSWERED_ATTEMPT, decline_code="acquirer_unavailable"
            )
        self._attempts.append(intent)
        self._show_payment()
        return intent

    async def _record_webhook_payment(self, method: PaymentMethod) -> None:
        """A webhook said an intent went through (or holds the money). If it is the one of an
        unanswered attempt (the bank made it, its answer was lost), asking again under that
        attempt's key records it."""
        if self._attempts[-1].status == UNANSWERED_ATTEMPT:
            await self._initiate_payment(method)
        secured = next(u for u in self._webhook_updates.values() if u.status in SECURED_PAYMENTS)
        self._paying = IntentState(secured.intent_id, secured.status)

    async def _capture(self) -> bool:
        """Two-stage: the stock is committed, now the money held on the card is taken. False if
        the provider refuses (the authorization is gone); one-stage money is taken already."""
        if self._money_taken():
            return True
        assert self._paying is not None
        # The capture is retried as long as it takes: what the run shows meanwhile is up to date.
        self._publish_attributes()
        try:
            captured = await workflow.execute_activity_method(
                CheckoutActivities.capture_payment,
                IntentInput(self._order.order_id, self._paying.intent_id),
                start_to_close_timeout=timedelta(seconds=15),
                # No deadline: the stock is sold, so the money must follow; only a refusal ends it.
                retry_policy=ACQUIRER_RETRY,
            )
        except ActivityError:
            return False
        if self._attempts and self._attempts[-1].intent_id == captured.intent_id:
            self._attempts[-1] = captured
            self._show_payment()
        return captured.status == PaymentStatus.SUCCEEDED

    def _money_taken(self) -> bool:
        """Paid in one stage (or captured): nothing held on the card is left to capture."""
        assert self._paying is not None
        return self._paying.status != PaymentStatus.AUTHORIZED

    def _reached_attempts(self) -> int:
        return sum(1 for attempt in self._attempts if attempt.status != UNANSWERED_ATTEMPT)

    async def _await_authentication(
        self, checkout: CheckoutInput, intent: IntentState
    ) -> IntentState:
        """3-D Secure: the webhook tells the outcome; the acquirer is asked too, in case it is
        lost."""
        intent = await self._poll_until_settled(checkout, intent)
        if intent.intent_id in self._webhook_updates:
            update = self._webhook_updates[intent.intent_id]
            intent = IntentState(
                intent.intent_id, update.status, intent.payment_url, update.decline_code
            )
        if intent.status in OPEN_PAYMENTS and not self._paid_by_webhook():
            # Customer cancelled or hold ended: cancel the intent. If it already went
            # through, the payment won the race and the order is paid.
            intent = await self._payment_call(CheckoutActivities.cancel_payment, intent)
        self._attempts[-1] = intent
        self._show_payment()
        return intent

    async def _poll_until_settled(
        self, checkout: CheckoutInput, intent: IntentState
    ) -> IntentState:
        """Wait for the webhook, asking the acquirer on a backoff: a lost webhook must not lose a
        paid order, nor keep it waiting until the hold ends."""
        poll_in = STATUS_POLL_FIRST
        while True:
            try:
                # This round's intent, bound now: each round waits on the intent it last polled.
                self._publish_attributes()
                await workflow.wait_condition(
                    functools.partial(self._settled, intent),
                    timeout=min(poll_in, self._hold_remaining()),
                )
                return intent
            except TimeoutError:
                pass
            intent = await self._payment_call(CheckoutActivities.check_payment, intent)
            if intent.status not in OPEN_PAYMENTS:
                return intent
            if self._hold_remaining() <= timedelta(0):
                if self._hold_extended or not checkout.hold_grace_seconds:
                    return intent
                await self._extend_hold(timedelta(seconds=checkout.hold_grace_seconds))
            poll_in = min(poll_in * 2, STATUS_POLL_LONGEST)

    async def _extend_hold(self, grace: timedelta) -> None:
        """The customer is paying right now: keep the stock for them a little longer, once."""
        self._hold_extended = True
        self._hold_expires_at += grace
        await self._database_step(
            CheckoutActivities.extend_hold,
            ExtendHoldInput(self._order.order_id, self._reservation_id, self._hold_expires_at),
            start_to_close_timeout=timedelta(seconds=10),
        )

    def _cancelled(self) -> bool:
        """The `cancel` update asked for it. Read through a call: the update sets it while `run`
        awaits, which the type checker's narrowing of a checked attribute does not see."""
        return self._cancel_requested

    def _settled(self, intent: IntentState) -> bool:
        return (
            intent.intent_id in self._webhook_updates
            or self._paid_by_webhook()
            or self._cancel_requested
        )

    async def _database_step(
        self, activity: Any, request: Any, *, start_to_close_timeout: timedelta
    ) -> None:
        """A step on our own database, run as a local activity: in the worker, inside the workflow
        task, with no round trip through the Temporal server (Pay Now's latency was mostly those).
        Each step is idempotent, so one re-run after a crash changes nothing; it is retried until
        the database answers, since a compensation must never give up."""
        await workflow.execute_local_activity_method(
            activity,
            request,
            start_to_close_timeout=start_to_close_timeout,
            retry_policy=DATABASE_RETRY,
        )

    async def _payment_call(self, activity: Any, intent: IntentState) -> IntentState:
        order_id = self._order.order_id
        try:
            return await workflow.execute_activity_method(
                activity,
                IntentInput(order_id, intent.intent_id),
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=ACQUIRER_RETRY,
            )
        except ActivityError:
            workflow.logger.warning(
                "acquirer unreachable; a late success will be refunded",
                extra={"order_id": str(order_id)},
            )
            return intent

    async def _end_unpaid(
        self, checkout: CheckoutInput, status: OrderStatus, reason: str | None
    ) -> None:
        """Undo in reverse: stock back on the shelf, the order's final state, the cart back to the
        customer."""
        await self._database_step(
            CheckoutActivities.release_stock,
            ReservationInput(self._reservation_id),
            start_to_close_timeout=timedelta(seconds=10),
        )
        await self._mark(status, reason)
        await self._database_step(
            CheckoutActivities.reopen_cart,
            ReopenCartInput(checkout.cart_id, checkout.cart_version),
            start_to_close_timeout=timedelta(seconds=10),
        )

    async def _mark(self, status: OrderStatus, reason: str | None) -> None:
        await self._database_step(
            CheckoutActivities.mark_order,
            MarkOrderInput(self._order.order_id, status, reason),
            start_to_close_timeout=timedelta(seconds=10),
        )
        self._ended(status, reason)

    def _ended(self, status: OrderStatus, reason: str | None) -> None:
        """The order's final state, as the database has it now: in the run, the UI and search."""
        self._reason = reason
        self._status = status
        self._show_attributes(ORDER_STATUS.value_set(status))
        self._show_details()

    # --- ops: what Temporal UI shows of this run (search attributes, current details) -----------

    def _show_payment(self) -> None:
        self._show_attributes(PAYMENT_STATUS.value_set(self._attempts[-1].status))
        self._show_details()

    def _show_attributes(self, *changes: SearchAttributeUpdate[Any]) -> None:
        self._unpublished |= {change.key.name: change for change in changes}
        if not self._gather_attributes:
            self._publish_attributes()

    def _publish_attributes(self) -> None:
        """One upsert of what changed: before the run waits on the customer, the bank or its end."""
        if self._unpublished:
            workflow.upsert_search_attributes(list(self._unpublished.values()))
            self._unpublished = {}

    def _show_details(self) -> None:
        """The run's current details in the UI (not history: no effect on replay)."""
        lines = [
            f"Order {self._order.order_id}: {self._status}"
            + (f" ({self._reason})" if self._reason else "")
        ]
        lines.append(f"Hold until {self._hold_expires_at:%Y-%m-%d %H:%M:%S} UTC")
        if self._attempts:
            last = self._attempts[-1]
            lines.append(
                f"Payment attempt {len(self._attempts)}: {last.intent_id or '-'} {last.status}"
            )
        workflow.set_current_details("\n\n".join(lines))

    def _hold_remaining(self) -> timedelta:
        return max(self._hold_expires_at - workflow.now(), timedelta(0))

    def _paid_by_webhook(self) -> bool:
        return any(update.status in SECURED_PAYMENTS for update in self._webhook_updates.values())

    def _answer_ready(self, attempts_before: int) -> bool:
        if self._status in ENDED:
            return True
        if len(self._attempts) <= attempts_before:
            return False
        # 3-D Secure and a decline that leaves attempts are answered at once; a success once the
        # order is PAID, and the last decline once the order has ended.
        last = self._attempts[-1].status
        return last in (*OPEN_PAYMENTS, UNANSWERED_ATTEMPT) or (
            last == PaymentStatus.FAILED and self._reached_attempts() < MAX_PAYMENT_ATTEMPTS
        )

    def _state(self) -> CheckoutState:
        return CheckoutState(
            order_id=self._order.order_id,
            status=self._status,
            hold_expires_at=self._hold_expires_at,
            attempts=self._reached_attempts(),
            payment=self._attempts[-1] if self._attempts else None,
            reason=self._reason,
        )

    async def _answer(self, attempts_before: int) -> CheckoutState:
        await workflow.wait_condition(lambda: self._answer_ready(attempts_before))
        return self._state()

    @workflow.update
    async def pay_now(self) -> CheckoutState:
        """Answers once the first payment attempt has an outcome to show."""
        return await self._answer(0)

    @workflow.update
    async def retry_payment(self, method: PaymentMethod) -> CheckoutState:
        attempts_before = len(self._attempts)
        self._next_method = method
        return await self._answer(attempts_before)

    @retry_payment.validator
    def _may_retry_payment(self, method: PaymentMethod) -> None:
        waiting_for_method = (
            self._status == OrderStatus.PENDING_PAYMENT
            and self._attempts
            and self._attempts[-1].status in (PaymentStatus.FAILED, UNANSWERED_ATTEMPT)
            and self._next_method is None
            and not self._cancel_requested
        )
        if not waiting_for_method:
            raise ApplicationError(
                "This order is not waiting for another payment method.",
                type="payment_not_retryable",
            )
        if self._reached_attempts() >= MAX_PAYMENT_ATTEMPTS:
            raise ApplicationError(
                "All payment attempts are used.", type="payment_attempts_exhausted"
            )

    @workflow.update
    async def cancel(self, reason: str = CANCELLED_BY_CUSTOMER) -> CheckoutState:
        self._cancel_requested = True
        self._cancel_reason = reason
        await workflow.wait_condition(lambda: self._status in ENDED)
        return self._state()

    @cancel.validator
    def _may_cancel(self, reason: str = CANCELLED_BY_CUSTOMER) -> None:
        if reason not in CANCEL_REASONS:
            raise ApplicationError(
                f"No such reason to cancel: {reason}.", type="invalid_cancel_reason"
            )
        if self._status in ENDED:
            raise ApplicationError(
                f"The order is {self._status}: nothing to cancel.", type="order_not_cancellable"
            )

    @workflow.signal
    def payment_updated(self, update: PaymentUpdate) -> None:
        # Replays of a webhook are harmless: the first settled word on an intent stands (an
        # authorization counts: its capture is this run's own doing).
        settled = update.status in SETTLED_PAYMENTS or update.status == PaymentStatus.AUTHORIZED
        if settled and update.intent_id not in self._webhook_updates:
            self._webhook_updates[update.intent_id] = update

    @workflow.query
    def status(self) -> CheckoutState:
        return self._state()
