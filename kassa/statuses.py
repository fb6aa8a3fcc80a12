"""Where an order and a payment stand: one vocabulary for the tables, the services, the workflows
and the API. Each member is its own string (StrEnum), so the database and JSON see the words."""

from enum import StrEnum


class OrderStatus(StrEnum):
    CREATED = "CREATED"  # only inside the transaction that places the order
    PENDING_PAYMENT = "PENDING_PAYMENT"  # placed, its stock held; its checkout run owns it
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


# An order in any of these has ended: its checkout is over, nothing of it is held any more.
ENDED: frozenset[OrderStatus] = frozenset(OrderStatus) - {
    OrderStatus.CREATED,
    OrderStatus.PENDING_PAYMENT,
}
# Ended without the money: its stock, promo use and points went back; a late payment may still
# complete it (PAID).
UNPAID_ENDINGS = frozenset({OrderStatus.PAYMENT_FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELLED})


class PaymentStatus(StrEnum):
    """An intent's status at the acquirer, as our `payments` table keeps it."""

    REQUIRES_ACTION = "requires_action"  # the customer is in 3-D Secure
    PROCESSING = "processing"
    # Two-stage: the money is held on the card, to be captured (succeeded) or voided (canceled).
    AUTHORIZED = "authorized"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# Forward only: a settled intent never goes back to waiting, nor from one outcome to another.
OPEN_PAYMENTS = frozenset({PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING})
# The order has its money: taken, or held on the card to be captured once its stock is committed.
SECURED_PAYMENTS = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED})
# Where each status may come from: an authorization is captured (succeeded), voided by us
# (canceled), or let go by the provider (failed: YooKassa's `expired_on_capture`).
PAYMENT_MOVES_FROM: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.AUTHORIZED: OPEN_PAYMENTS,
    PaymentStatus.SUCCEEDED: OPEN_PAYMENTS | {PaymentStatus.AUTHORIZED},
    PaymentStatus.CANCELED: OPEN_PAYMENTS | {PaymentStatus.AUTHORIZED},
    PaymentStatus.FAILED: OPEN_PAYMENTS | {PaymentStatus.AUTHORIZED},
}
SETTLED_PAYMENTS = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}
)
