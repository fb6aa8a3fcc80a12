"""Retry policies the workflows share, named for what they call."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# Our own database: retried until it answers; compensations must never give up.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
# The acquirer: retried under the same idempotency key, so a retry never makes a second charge.
ACQUIRER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=5)
)
# A refund: the acquirer may be down for a while; it is retried until it goes through.
REFUND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
