"""A readable line for every activity a workflow runs, so that a run in Temporal UI reads as the
story of one checkout ("Payment attempt 1: 4490.00 RUB at the acquirer", "Order PAID").

A worker interceptor fills in the `summary` of each activity from its input, so the workflows
stay about the business. Summaries are metadata, not commands: they do not affect replay.
"""

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


def _money(amount: int, currency: str) -> str:
    return f"{amount // 100}.{amount % 100:02d} {currency}"


def _marked(request: Any) -> str:
    return f"Order {request.status}" + (f" ({request.reason})" if request.reason else "")


def _refund(request: Any) -> str:
    amount = "everything left" if request.amount is None else f"{request.amount} kopecks"
    return f"Refund {amount} of order {request.order_id} ({request.reason})"


SUMMARIES: dict[str, Callable[[Any], str]] = {
    "extend_hold": lambda r: (
        f"Extend the hold to {r.hold_expires_at:%H:%M:%S} UTC (customer still in 3-D Secure)"
    ),
    "initiate_payment": lambda r: (
        f"Payment attempt {r.attempt}: {_money(r.amount, r.currency)} at the acquirer"
    ),
    "check_payment": lambda r: f"Ask the acquirer about {r.intent_id}",
    "cancel_payment": lambda r: f"Cancel {r.intent_id} (or learn that it went through)",
    "capture_payment": lambda r: f"Take the money held by {r.intent_id} (capture)",
    "commit_stock": lambda r: f"Commit the held stock: sold ({r.reservation_id})",
    "restock": lambda r: f"Put the sold stock back: the capture was refused ({r.reservation_id})",
    "release_stock": lambda r: f"Release the held stock ({r.reservation_id})",
    "mark_order": _marked,
    "commit_and_mark_paid": lambda r: (
        f"Commit the held stock: sold ({r.reservation_id}); order PAID"
    ),
    "reopen_cart": lambda r: f"Give cart {r.cart_id} back to the customer",
    "refund_payment": _refund,
    "settle_late_payment": lambda r: (
        f"Late payment {r.intent_id}: complete order {r.order_id}, or refund"
    ),
    "capture_late_payment": lambda r: (
        f"Late authorization {r.intent_id}: take the money for order {r.order_id}"
    ),
    "void_payment": lambda r: f"Let go of the late authorization {r.intent_id} (void)",
    "find_unsettled_payments": lambda r: "Find successes no checkout took",
    "sweep_holds": lambda r: "Release holds no checkout will release",
    "forget_old_records": lambda r: "Delete webhook events and login counts past their age",
}


class ActivitySummaries(Interceptor):
    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        _summarise(input)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        # The checkout's database steps run as local activities: their markers read the same way.
        _summarise(input)
        return super().start_local_activity(input)


def _summarise(input: StartActivityInput | StartLocalActivityInput) -> None:
    describe = SUMMARIES.get(input.activity)
    if input.summary is None and describe is not None and input.args:
        input.summary = describe(input.args[0])
