"""Money going back: refunds, late payments and the reconciliation that finds them.

RefundWorkflow        — refund an order's charge (all that is left, or an amount), once per key
LatePaymentWorkflow   — money the checkout did not take: complete the order if its stock is
                        still there and its cart has moved on to nothing else; otherwise give it
                        back (a success refunded, an authorization voided; one that can complete
                        the order is captured first)
ReconcileWorkflow     — on a schedule: successes without a charge on the ledger → LatePayment
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.temporal.money_steps import (
        FindUnsettledInput,
        LatePaymentInput,
        LatePaymentSettled,
        MoneyActivities,
        RefundDone,
        RefundPaymentInput,
    )
    from kassa.statuses import PaymentStatus
    from workflows.retries import DATABASE_RETRY, REFUND_RETRY


def refund_workflow_id(order_id: uuid.UUID, idempotency_key: str) -> str:
    return f"refund-{order_id}-{idempotency_key}"


def late_payment_workflow_id(intent_id: str) -> str:
    return f"late-payment-{intent_id}"


@dataclass(frozen=True)
class LatePaymentResult:
    outcome: str  # counted | completed | refunded | voided
    refund_id: str | None = None


@dataclass(frozen=True)
class ReconcileResult:
    late_payments_started: int


@workflow.defn
class RefundWorkflow:
    @workflow.run
    async def run(self, request: RefundPaymentInput) -> RefundDone:
        return await workflow.execute_activity_method(
            MoneyActivities.refund_payment,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=REFUND_RETRY,
        )


@workflow.defn
class LatePaymentWorkflow:
    @workflow.run
    async def run(self, payment: LatePaymentInput) -> LatePaymentResult:
        settled = await self._settle(payment)
        if settled.outcome == "capture":
            # Money held on the card, and the order's stock held for it again: take the money,
            # then settle it as any late success (the order completed, or a refund after all).
            captured = await workflow.execute_activity_method(
                MoneyActivities.capture_late_payment,
                payment,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REFUND_RETRY,
            )
            if captured.outcome != PaymentStatus.SUCCEEDED:
                return LatePaymentResult("voided")  # the hold was gone: nothing was taken
            settled = await self._settle(payment)
        if settled.outcome == "void":
            # Held, never taken: let go of the hold instead of refunding (no fee, no statement).
            await workflow.execute_activity_method(
                MoneyActivities.void_payment,
                payment,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REFUND_RETRY,
            )
            return LatePaymentResult("voided")
        if settled.outcome != "refund":
            return LatePaymentResult(settled.outcome)
        # Keyed by the intent: whoever finds this payment, it is refunded once.
        key = f"late-{payment.intent_id}"
        refund = await workflow.execute_child_workflow(
            RefundWorkflow.run,
            RefundPaymentInput(
                payment.order_id, key, "late_payment", payment.amount, payment.intent_id
            ),
            id=refund_workflow_id(payment.order_id, key),
        )
        return LatePaymentResult("refunded", refund.refund_id)

    async def _settle(self, payment: LatePaymentInput) -> LatePaymentSettled:
        return await workflow.execute_activity_method(
            MoneyActivities.settle_late_payment,
            payment,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> ReconcileResult:
        found = await workflow.execute_activity_method(
            MoneyActivities.find_unsettled_payments,
            FindUnsettledInput(),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        started = 0
        for payment in found.payments:
            try:
                await workflow.start_child_workflow(
                    LatePaymentWorkflow.run,
                    payment,
                    id=late_payment_workflow_id(payment.intent_id),
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
                started += 1
            except WorkflowAlreadyStartedError:
                pass  # being settled already
        return ReconcileResult(started)
