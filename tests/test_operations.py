"""Operating Kassa: metrics that move, log lines that tell one checkout's story without a secret in
them, the hold sweeper, the schedules, and the admin API operators work from."""

import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlmodel import col, select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import ScheduleActionStartWorkflow, ScheduleHandle, WorkflowHandle
from temporalio.service import RPCError

from acquirer.faults import clear_faults, set_faults
from activities.temporal.checkout_steps import CheckoutActivities
from activities.temporal.hold_sweep_steps import (
    DEADLINE_LONG_PAST,
    WORKFLOW_GONE,
    SweepActivities,
    SweepHoldsInput,
    SweepResult,
)
from activities.temporal.money_steps import MoneyActivities
from api.main import create_app as create_gateway
from kassa.db import session_scope
from kassa.logs import JsonFormatter
from kassa.tables import LoginAttempts, Reservation, WebhookEvent, utcnow
from tests.conftest import TEMPORAL_UI_URL, Customer, Kassa
from tests.flow import CARD, CARD_3DS, authenticate_3ds, order_reaches, pay_now, placed_checkout
from tests.servers import listening_socket, serving
from worker import HOLD_SWEEP_SCHEDULE, RECONCILE_SCHEDULE, RETENTION_SCHEDULE, ensure_schedules
from workflows.checkout import CheckoutWorkflow, checkout_workflow_id
from workflows.hold_sweep import HoldSweepWorkflow
from workflows.retention import RetentionWorkflow
from workflows.summaries import SUMMARIES

CARD_NUMBER_3DS = "4000000000003220"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(kassa: Kassa) -> Samples:
    async with httpx.AsyncClient(base_url=kassa.api_url) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def test_metrics_move_when_a_checkout_runs(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=1)
    buyer, too_late = await kassa.customer(), await kassa.customer()
    late_cart = await too_late.cart_with((sku, 1))  # in a cart while it was still there
    before = await scrape(kassa)

    async with buyer.http() as http:
        answer = await pay_now(http, await buyer.cart_with((sku, 1)), CARD_3DS)
        assert answer.status_code == 201, answer.text
        while_held = await scrape(kassa)
        await authenticate_3ds(answer.json()["payment_url"], approve=True)
        await order_reaches(http, answer.json()["order_id"], "PAID")
    async with too_late.http() as http:
        assert (await pay_now(http, late_cart, CARD)).status_code == 409
    after = await scrape(kassa)

    assert moved(before, after, "kassa_checkouts_started_total") >= 1
    assert moved(before, after, "kassa_checkouts_ended_total", status="PAID") >= 1
    # The last unit was held when the second buyer tapped: the gateway's check refused at once.
    assert moved(before, after, "kassa_reservation_conflicts_total", stage="gateway") >= 1
    assert moved(before, after, "kassa_pay_now_seconds_count", status="201") >= 1
    assert moved(before, after, "kassa_pay_now_seconds_count", status="409") >= 1
    assert moved(before, after, "kassa_webhook_events_total", outcome="signalled") >= 1
    assert (
        moved(
            before,
            after,
            "kassa_psp_request_seconds_count",
            provider="sandbox",
            operation="create_payment",
        )
        >= 1
    )
    assert while_held[("kassa_holds_active", ())] >= 1


async def test_metrics_in_production_answer_only_the_scraper_with_the_token(kassa: Kassa) -> None:
    token = secrets.token_urlsafe(32)
    cases = [  # env, KASSA_METRICS_TOKEN, and the status each Authorization header gets
        ("dev", None, {None: 200, "Bearer nope": 200}),
        (
            "production",
            token,
            {
                None: 401,
                "Bearer nope": 401,
                f"Bearer {token}x": 401,
                f"Basic {token}": 401,
                f"Bearer {token}": 200,
            },
        ),
        ("production", None, {None: 401, "Bearer": 401, "Bearer None": 401}),
    ]
    for env, metrics_token, answers in cases:
        settings = kassa.settings.model_copy(update={"env": env, "metrics_token": metrics_token})
        async with (
            serving(create_gateway(settings), listening_socket()) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            for authorization, status in answers.items():
                headers = {"Authorization": authorization} if authorization else {}
                answer = await http.get("/metrics", headers=headers)
                assert answer.status_code == status, (env, authorization, answer.text)
                if status == 200:
                    assert "kassa_holds_active" in answer.text
                else:
                    assert answer.headers["content-type"] == "application/problem+json"
                    assert answer.json()["code"] == "metrics_token_required"
                    assert answer.headers["www-authenticate"] == "Bearer"
                    assert token not in answer.text


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every line logged in this process meanwhile, formatted as in production."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_log_lines_of_a_checkout_carry_its_order_id_and_never_a_card_number_or_secret(
    kassa: Kassa,
) -> None:
    sku = await kassa.product(on_hand=2)
    customer = await kassa.customer()
    settings = kassa.settings
    with captured_logs() as output:
        async with httpx.AsyncClient(base_url=settings.acquirer_base_url) as bank:
            tokenized = await bank.post(
                "/v1/tokens",
                json={
                    "card_number": CARD_NUMBER_3DS,
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
                headers={"Authorization": f"Bearer {settings.acquirer_api_key}"},
            )
            assert tokenized.status_code in (200, 201), tokenized.text
        card = {"type": "card", "token": tokenized.json()["id"]}
        async with customer.http() as http:
            cart = await customer.cart_with((sku, 1))
            answer = await pay_now(http, cart, card)
            assert answer.status_code == 201, answer.text
            order_id = answer.json()["order_id"]
            await authenticate_3ds(answer.json()["payment_url"], approve=True)
            await order_reaches(http, order_id, "PAID")
        await asyncio.sleep(0.2)  # the webhook's own last line
    text = output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]

    workflow_id = checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
    ours = [line for line in lines if line.get("order_id") == order_id]
    messages = {line["msg"] for line in ours}
    assert {"order placed", "payment initiated", "order marked", "pay now answered"} <= messages
    assert "payment event signalled" in messages
    # Inside the workflow's activities, every line of ours knows its order and its run.
    in_activities = [
        line for line in lines if line.get("workflow_id") == workflow_id and "activity" in line
    ]
    assert in_activities and all(
        line.get("order_id") == order_id and line.get("run_id") for line in in_activities
    )
    # The gateway's lines carry their request's id, and the run they talk to.
    in_gateway = [
        line
        for line in ours
        if line["logger"] in ("kassa.checkout", "kassa.webhooks") and "activity" not in line
    ]
    assert {line["msg"] for line in in_gateway} == {
        "order placed",
        "pay now answered",
        "payment event signalled",
    }
    assert all(
        line.get("request_id") and line.get("workflow_id") == workflow_id for line in in_gateway
    )

    secrets = [
        settings.jwt_secret,
        settings.acquirer_api_key,
        settings.acquirer_webhook_secret,
        customer.token,
    ]
    for secret in secrets:
        assert secret and secret not in text
    for number in (CARD_NUMBER_3DS, "4000 0000 0000 3220", "4000-0000-0000-3220"):
        assert number not in text


async def test_a_card_number_or_a_secret_passed_by_mistake_is_masked() -> None:
    with captured_logs() as output:
        logging.getLogger("kassa.test").info(
            "customer typed 4242 4242 4242 4242 in the wrong field",
            extra={
                "order_id": "o-1",
                # All its hex digits decimal, with a Luhn-valid 16 in them: an id, not a card.
                "reservation_id": "42424242-4242-4242-4242-424242424242",
                "note": "card 4000-0000-0000-0002",
                "api_key": "sk_live_x",
                "password": "p",
                "at": "1764097000123",
                "with_expiry": "4242 4242 4242 4242 12/30",
                "with_cvc": "4242424242424242 123",
                "after_an_id": "order 1 4242 4242 4242 4242",
                "crafted": "7" * 16_000,  # no card in any window: checking each one took 0.27 s
            },
        )
    line = json.loads(output.getvalue())
    assert "4242" not in line["msg"] and "0002" not in line["note"]
    assert not any("4242" in line[key] for key in ("with_expiry", "with_cvc", "after_an_id"))
    assert line["at"] == "1764097000123"  # a long number that is no card (Luhn) stays
    assert line["crafted"] == "[redacted]"  # too long to check window by window
    assert line["reservation_id"] == "42424242-4242-4242-4242-424242424242"
    assert (line["api_key"], line["password"], line["order_id"]) == (
        "[redacted]",
        "[redacted]",
        "o-1",
    )


async def _pending_order(kassa: Kassa, customer: Customer, sku: str) -> tuple[dict, str]:
    async with customer.http() as http:
        cart = await customer.cart_with((sku, 2))
        answer = await pay_now(http, cart, CARD_3DS)
        assert answer.status_code == 201 and answer.json()["status"] == "PENDING_PAYMENT", (
            answer.text
        )
    return cart, answer.json()["order_id"]


async def _sweep(kassa: Kassa) -> SweepResult:
    return await kassa.temporal.execute_workflow(
        HoldSweepWorkflow.run,
        SweepHoldsInput(grace_seconds=900, min_age_seconds=0),
        id=f"sweep-holds-test-{uuid.uuid4()}",
        task_queue=kassa.settings.task_queue,
    )


async def test_the_sweeper_releases_a_hold_left_by_a_workflow_terminated_from_outside(
    kassa: Kassa,
) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    cart, order_id = await _pending_order(kassa, customer, sku)
    await kassa.temporal.get_workflow_handle(
        checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
    ).terminate(reason="test")
    assert (await kassa.stock(sku)).reserved == 2  # nobody will release it now
    before = await scrape(kassa)

    with captured_logs() as output:
        swept = await _sweep(kassa)
    assert [hold.why for hold in swept.repaired if str(hold.order_id) == order_id] == [
        WORKFLOW_GONE
    ]
    assert (await kassa.stock(sku)).reserved == 0
    async with customer.http() as http:
        order = (await http.get(f"/orders/{order_id}")).json()
        assert (order["status"], order["reason"]) == ("EXPIRED", "hold_swept")
        assert (await http.get("/cart")).json()["version"] == cart[
            "version"
        ] + 1  # the cart is theirs again
    after = await scrape(kassa)
    assert moved(before, after, "kassa_holds_repaired_total", reason=WORKFLOW_GONE) >= 1
    assert (
        moved(before, after, "kassa_checkouts_ended_total", status="EXPIRED") >= 1
    )  # ended here, counted here
    repairs = [json.loads(line) for line in output.getvalue().splitlines() if order_id in line]
    assert [
        (line["msg"], line["why"]) for line in repairs if line["logger"] == "kassa.sweeper"
    ] == [("hold released by the sweeper", WORKFLOW_GONE)]

    again = await _sweep(kassa)  # a repaired hold is not repaired twice
    assert order_id not in [str(hold.order_id) for hold in again.repaired]


async def test_the_sweeper_stops_a_checkout_stuck_long_past_its_deadline(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer = await kassa.customer()
    cart, order_id = await _pending_order(kassa, customer, sku)
    # As if its workers had been down for an hour.
    async with session_scope(kassa.engine) as session:
        await session.exec(
            update(Reservation)
            .where(col(Reservation.order_id) == uuid.UUID(order_id))
            .values(hold_expires_at=utcnow() - timedelta(hours=1))
        )
    swept = await _sweep(kassa)
    assert [hold.why for hold in swept.repaired if str(hold.order_id) == order_id] == [
        DEADLINE_LONG_PAST
    ]
    description = await kassa.temporal.get_workflow_handle(
        checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
    ).describe()
    assert description.status is not None and description.status.name == "TERMINATED"
    assert (await kassa.stock(sku)).reserved == 0


async def _delete_schedules(handles: list[ScheduleHandle]) -> None:
    for handle in handles:
        with contextlib.suppress(RPCError):  # not there
            await handle.delete()


async def test_schedules_are_created_once_however_many_workers_start(kassa: Kassa) -> None:
    handles = [
        kassa.temporal.get_schedule_handle(name)
        for name in (RECONCILE_SCHEDULE, HOLD_SWEEP_SCHEDULE, RETENTION_SCHEDULE)
    ]
    await _delete_schedules(handles)
    try:
        created = await asyncio.gather(
            *(ensure_schedules(kassa.temporal, kassa.settings) for _ in range(6))
        )
        assert sorted(name for names in created for name in names) == sorted(
            [HOLD_SWEEP_SCHEDULE, RECONCILE_SCHEDULE, RETENTION_SCHEDULE]
        )
        assert await ensure_schedules(kassa.temporal, kassa.settings) == []
        reconcile, sweep, retention = [(await handle.describe()).schedule for handle in handles]
        assert reconcile.spec.intervals[0].every == timedelta(minutes=1)
        assert sweep.spec.intervals[0].every == timedelta(
            seconds=kassa.settings.hold_sweep_interval_seconds
        )
        assert retention.spec.intervals[0].every == timedelta(hours=1)
        assert isinstance(retention.action, ScheduleActionStartWorkflow)
        assert retention.action.workflow == "RetentionWorkflow"
    finally:
        # Not left running on the test's task queue: the sweeper would see other tests' holds.
        await _delete_schedules(handles)


async def test_retention_deletes_records_past_their_age_and_keeps_the_rest(kassa: Kassa) -> None:
    """Through the workflow the schedule starts, on the test's worker, on the real database."""
    now, day, mark = utcnow(), timedelta(days=1), uuid.uuid4().hex[:12]
    window = timedelta(seconds=kassa.settings.login_window_seconds)
    assert (
        kassa.settings.webhook_event_retention_days,
        kassa.settings.login_attempt_retention_days,
    ) == (
        30,
        7,
    )
    events = {  # id: received, processed; and whether it is kept
        f"evt_{mark}_old": (now - 31 * day, now - 31 * day, False),
        f"evt_{mark}_old_unprocessed": (now - 31 * day, None, True),  # its news is still to tell
        f"evt_{mark}_young": (now - 29 * day, now - 29 * day, True),
    }
    attempts = {  # subject: window started; and whether it is kept
        f"old-{mark}@example.com": (now - 7 * day - window - timedelta(minutes=1), False),
        f"young-{mark}@example.com": (now - 7 * day, True),
        f"now-{mark}@example.com": (now, True),
    }
    async with session_scope(kassa.engine) as session:
        for event_id, (received_at, processed_at, _) in events.items():
            session.add(
                WebhookEvent(
                    id=event_id,
                    type="payment_intent.succeeded",
                    intent_id=f"pi_{mark}",
                    payload={"id": event_id},
                    received_at=received_at,
                    processed_at=processed_at,
                )
            )
        for subject, (started_at, _) in attempts.items():
            session.add(
                LoginAttempts(
                    scope="account", subject=subject, attempts=3, window_started_at=started_at
                )
            )

    with captured_logs() as output:
        forgotten = await kassa.temporal.execute_workflow(
            RetentionWorkflow.run,
            id=f"retention-test-{uuid.uuid4()}",
            task_queue=kassa.settings.task_queue,
        )
    assert forgotten.webhook_events >= 1 and forgotten.login_attempts >= 1

    async with session_scope(kassa.engine) as session:
        kept_events = set(
            await session.exec(
                select(WebhookEvent.id).where(col(WebhookEvent.intent_id) == f"pi_{mark}")
            )
        )
        kept_attempts = set(
            await session.exec(
                select(LoginAttempts.subject).where(col(LoginAttempts.subject).in_(list(attempts)))
            )
        )
    assert kept_events == {event_id for event_id, (*_, kept) in events.items() if kept}
    assert kept_attempts == {subject for subject, (_, kept) in attempts.items() if kept}
    [line] = [
        json.loads(line) for line in output.getvalue().splitlines() if "kassa.retention" in line
    ]
    assert (line["msg"], line["webhook_events"], line["login_attempts"]) == (
        "old records deleted",
        forgotten.webhook_events,
        forgotten.login_attempts,
    )


async def test_admin_finds_orders_by_customer_status_and_time_in_pages_and_reads_the_whole_story(
    kassa: Kassa,
) -> None:
    sku = await kassa.product(on_hand=5, price=120_000)
    customer, support = await kassa.customer(), await kassa.account("support")
    async with customer.http() as http:
        first = await pay_now(http, await customer.cart_with((sku, 1)), CARD_3DS)
        assert (await http.post(f"/orders/{first.json()['order_id']}/cancel")).status_code == 200
        second = await pay_now(http, await customer.cart_with((sku, 1)), CARD)
        assert second.status_code == 201 and second.json()["status"] == "PAID", second.text
    cancelled_id, paid_id = first.json()["order_id"], second.json()["order_id"]

    async with support.http() as http:
        mine: dict[str, str | int] = {"customer_id": str(customer.user.id), "limit": 1}
        page = (await http.get("/admin/orders", params=mine)).json()
        assert [order["id"] for order in page["items"]] == [paid_id] and page["next_cursor"]
        last = (
            await http.get("/admin/orders", params=mine | {"cursor": page["next_cursor"]})
        ).json()
        assert [order["id"] for order in last["items"]] == [cancelled_id] and last[
            "next_cursor"
        ] is None
        assert last["items"][0]["status"] == "CANCELLED"
        assert last["items"][0]["workflow_url"].startswith(
            f"{TEMPORAL_UI_URL}/namespaces/default/workflows/checkout-"
        )

        paid_only = (
            await http.get("/admin/orders", params=mine | {"status": "PAID", "limit": 10})
        ).json()
        assert [order["id"] for order in paid_only["items"]] == [paid_id]
        since: dict[str, str | int] = {"created_from": page["items"][0]["created_at"], "limit": 10}
        assert [
            order["id"]
            for order in (await http.get("/admin/orders", params=mine | since)).json()["items"]
        ] == [paid_id]
        until: dict[str, str | int] = {
            "created_before": page["items"][0]["created_at"],
            "limit": 10,
        }
        assert [
            o["id"] for o in (await http.get("/admin/orders", params=mine | until)).json()["items"]
        ] == [cancelled_id]

        for bad, code in (
            ({"cursor": "not-ours"}, "invalid_cursor"),
            ({"created_from": "2026-01-01T00:00:00"}, "invalid_request"),
        ):
            refused = await http.get("/admin/orders", params=bad)
            assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text

        dossier = (await http.get(f"/admin/orders/{paid_id}")).json()
    assert dossier["status"] == "PAID" and dossier["customer_id"] == str(customer.user.id)
    assert [p["status"] for p in dossier["payments"]] == ["succeeded"]
    assert sorted(t["kind"] for t in dossier["ledger"]) == [
        "charge",
        "points_accrued",
    ]  # one transaction each, same commit
    assert all(sum(posting["amount"] for posting in t["postings"]) == 0 for t in dossier["ledger"])
    assert [event["status"] for event in dossier["events"]] == [
        "CREATED",
        "PENDING_PAYMENT",
        "PAID",
    ]
    workflow = dossier["workflow"]
    assert (
        workflow["id"] == dossier["workflow_id"]
        and workflow["status"] == "COMPLETED"
        and workflow["run_id"]
    )
    run = f"{workflow['id']}/{workflow['run_id']}"
    assert workflow["url"] == f"{TEMPORAL_UI_URL}/namespaces/default/workflows/{run}/history"


async def test_a_checkout_run_reads_as_its_story_in_temporal(kassa: Kassa) -> None:
    customer = await kassa.customer()
    async with customer.http() as http:
        cart = await customer.cart_with((await kassa.product(on_hand=1, price=150_000), 1))
        answer = await pay_now(http, cart, CARD)
        assert answer.status_code == 201, answer.text
        order_id = answer.json()["order_id"]
        reservation_id = (await http.get(f"/orders/{order_id}")).json()["reservation_id"]
    handle = kassa.temporal.get_workflow_handle(
        checkout_workflow_id(uuid.UUID(cart["id"]), cart["version"])
    )
    description = await handle.describe()
    assert description.typed_search_attributes is not None
    attributes = {pair.key.name: pair.value for pair in description.typed_search_attributes}
    assert attributes["OrderStatus"] == "PAID" and attributes["PaymentStatus"] == "succeeded"
    assert attributes["CustomerId"] == str(customer.user.id)
    assert (
        await description.static_summary()
    ) == f"Pay Now: cart {cart['id']} v{cart['version']} of customer {customer.user.id}"
    assert (await description.static_details() or "").startswith(
        f"Order {order_id} placed by the gateway, stock held until "
    )
    summaries = [
        event.user_metadata.summary.data.decode()
        async for event in handle.fetch_history_events()
        # Local activities (the database steps) are markers; the bank calls are scheduled
        # activities.
        if event.HasField("activity_task_scheduled_event_attributes")
        or event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert summaries == [
        '"Payment attempt 1: 1500.00 RUB at the acquirer"',
        f'"Commit the held stock: sold ({reservation_id}); order PAID"',
    ]
    query = f'PaymentStatus = "succeeded" AND CustomerId = "{customer.user.id}"'
    found: list[str] = []
    for _ in range(50):  # visibility is eventually consistent
        if found := [run.id async for run in kassa.temporal.list_workflows(query)]:
            break
        await asyncio.sleep(0.1)
    assert found == [handle.id]


async def test_a_worker_stopped_with_sigterm_finishes_the_activity_it_is_running(
    kassa: Kassa,
) -> None:
    """`kassa worker` as in production, on a task queue of its own; the bank answers slowly, so its
    payment call is under way when SIGTERM comes: it completes, then the worker exits cleanly."""
    settings = kassa.settings
    task_queue = f"draining-{uuid.uuid4()}"
    environment = {
        "PATH": os.environ["PATH"],
        "KASSA_ENV": "test",
        "KASSA_DATA_DIR": str(settings.data_dir),
        "KASSA_DATABASE_URL": settings.database_url or "",
        "KASSA_TEMPORAL_ADDRESS": settings.temporal_target,
        "KASSA_TASK_QUEUE": task_queue,
        "KASSA_ACQUIRER_URL": settings.acquirer_base_url,
        "KASSA_ACQUIRER_API_KEY": settings.acquirer_api_key or "",
        "KASSA_ACQUIRER_WEBHOOK_SECRET": settings.acquirer_webhook_secret or "",
        "KASSA_JWT_SECRET": settings.jwt_secret or "",
        "KASSA_WORKER_METRICS_PORT": "0",
        "KASSA_TEMPORAL_METRICS_PORT": "0",
    }
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cli.main", "worker"),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    customer = await kassa.customer()
    sku = await kassa.product(on_hand=1)
    cart = await customer.cart_with((sku, 1))
    await set_faults(settings.acquirer_base_url, api={"latency_ms": 3000})
    try:
        workflow_id, checkout = await placed_checkout(
            kassa.engine, customer.user.id, cart, CARD, settings.hold_seconds
        )
        handle = await kassa.temporal.start_workflow(
            CheckoutWorkflow.run, checkout, id=workflow_id, task_queue=task_queue
        )
        await _until_running(handle, "initiate_payment")
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    finally:
        await clear_faults(settings.acquirer_base_url)
        if worker.returncode is None:
            worker.kill()
    assert worker.returncode == 0, output.decode()
    messages = [
        json.loads(line)["msg"] for line in output.decode().splitlines() if line.startswith("{")
    ]
    assert messages.index("worker stopping: finishing running activities") < messages.index(
        "payment initiated"
    )
    assert messages[-1] == "worker stopped"
    events = [event async for event in handle.fetch_history_events()]
    (payment,) = [
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "initiate_payment"
    ]
    completed = [e.activity_task_completed_event_attributes.scheduled_event_id for e in events]
    assert payment in completed  # completed: not failed, cancelled or timed out
    await handle.terminate(reason="test over: its worker is gone")
    await _sweep(kassa)
    assert (await kassa.stock(sku)).reserved == 0  # its hold went back


async def _until_running(handle: WorkflowHandle, activity_type: str) -> None:
    for _ in range(200):
        pending = (await handle.describe()).raw_description.pending_activities
        started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        if any(a.activity_type.name == activity_type and a.state == started for a in pending):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{activity_type} never started")


def test_every_activity_reads_as_a_line_in_temporal_ui() -> None:
    """Each activity a workflow can run has its summary (issue 19: the database steps had none)."""
    names = {
        definition.name
        for steps in (CheckoutActivities, MoneyActivities, SweepActivities)
        for member in vars(steps).values()
        if (definition := getattr(member, "__temporal_activity_definition", None)) is not None
    }
    assert len(names) >= 16, names
    assert sorted(names - SUMMARIES.keys()) == []
