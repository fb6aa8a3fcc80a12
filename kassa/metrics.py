"""Kassa's Prometheus metrics, one registry per process (prometheus_client's default).

The api serves them on `GET /metrics`; the worker on `KASSA_WORKER_METRICS_PORT`, next to the
Temporal SDK's own metrics on `KASSA_TEMPORAL_METRICS_PORT`. Counters count in the process that
saw the event, so sum them across processes (`sum(rate(kassa_checkouts_started_total[5m]))`).
"""

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CHECKOUTS_STARTED = Counter(
    "kassa_checkouts_started", "Checkouts that began making an order (Pay Now)."
)
CHECKOUTS_ENDED = Counter(
    "kassa_checkouts_ended",
    "Checkouts whose order reached a final status: PAID, EXPIRED, PAYMENT_FAILED, CANCELLED.",
    ["status"],
)
PAY_NOW_SECONDS = Histogram(
    "kassa_pay_now_seconds",
    "POST /checkout, from request to answer (payment_url, paid, declined or refused),"
    " by HTTP status.",
    ["status"],
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30),
)
HOLDS_ACTIVE = Gauge(
    "kassa_holds_active",
    "Reservations holding stock right now (read from the database at each scrape).",
)
RESERVATION_CONFLICTS = Counter(
    "kassa_reservation_conflicts",
    "Pay Now refused for lack of stock: by the gateway's availability check,"
    " or by the reservation itself.",
    ["stage"],  # gateway | reservation
)
HOLDS_REPAIRED = Counter(
    "kassa_holds_repaired",
    "Holds the sweeper released: workflow gone, or deadline long past.",
    ["reason"],
)
WEBHOOK_EVENTS = Counter(
    "kassa_webhook_events",
    "Payment provider webhooks by outcome: signalled, known, late, stale, duplicate, ignored,"
    " unknown_order, temporal_unavailable, or the refusal's code (signature_mismatch,"
    " malformed_event, untrusted_source…).",
    ["outcome"],
)
PSP_SECONDS = Histogram(
    "kassa_psp_request_seconds",
    "Calls to the payment provider's API, by provider and operation, answered or not.",
    ["provider", "operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
PSP_ERRORS = Counter(
    "kassa_psp_errors",
    "Payment provider calls that a retry may fix: unreachable, server_error, rate_limited…",
    ["provider", "operation", "kind"],
)


def serve(host: str, port: int) -> None:
    """This process's metrics on http://host:port/metrics, from a daemon thread."""
    start_http_server(port, addr=host)
