"""Logins that hold up to an attacker: rotating refresh tokens (reuse ends the login), logout, key
rotation, throttling per account and per address, lockout; blocked accounts; the profile and the
addresses, down to Pay Now with one. Tokens forged in other ways are in test_api_guards.py."""

import asyncio
import dataclasses
import hashlib
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError
from sqlalchemy import text, update
from sqlmodel import col, select

from activities.tokens import key_id
from api.main import create_app as create_gateway
from kassa.db import session_scope
from kassa.settings import Settings, WeakSecret
from kassa.tables import Address, Cart, LoginAttempts, Order, RefreshToken, User
from tests.conftest import PASSWORD, Kassa, until_a_lock_is_awaited
from tests.flow import CARD, CARD_3DS, pay_now
from tests.servers import listening_socket, serving
from tests.stack import free_port, settings_environment
from tests.test_api_guards import assert_problem
from tests.test_operations import captured_logs

ADDRESS = {
    "recipient": "Ann Petrova",
    "country": "RU",
    "city": "Moscow",
    "postal_code": "101000",
    "line1": "Tverskaya 1",
}
_addresses = itertools.count(1)


def client_address() -> str:
    """A client address of its own for each use (TEST-NET-3), sent as X-Forwarded-For: the
    session's gateway trusts the header from 127.0.0.1 (KASSA_TRUSTED_PROXIES), as from a proxy."""
    n = next(_addresses)
    return f"203.0.{113 + n // 250}.{n % 250 + 1}"


async def log_in(
    http: httpx.AsyncClient, email: str, password: str = PASSWORD, address: str = "203.0.113.254"
) -> httpx.Response:
    return await http.post(
        "/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": address},
    )


async def logged_in(kassa: Kassa, email: str, address: str = "203.0.113.254") -> dict[str, Any]:
    async with kassa.http() as http:
        response = await log_in(http, email, address=address)
    assert response.status_code == 200, response.text
    return response.json()


async def status_with(kassa: Kassa, access_token: str) -> int:
    async with kassa.http(access_token) as http:
        return (await http.get("/me")).status_code


async def refreshed(kassa: Kassa, refresh_token: str) -> httpx.Response:
    async with kassa.http() as http:
        return await http.post("/auth/refresh", json={"refresh_token": refresh_token})


async def window_ends(kassa: Kassa, scope: str, subject: str) -> None:
    """As if the throttling window had passed: its start moved back by the window."""
    window = timedelta(seconds=kassa.settings.login_window_seconds)
    async with session_scope(kassa.engine) as session:
        await session.exec(
            update(LoginAttempts)
            .where(col(LoginAttempts.scope) == scope, col(LoginAttempts.subject) == subject)
            .values(window_started_at=col(LoginAttempts.window_started_at) - window)
        )


async def account_of(kassa: Kassa, user_id: uuid.UUID) -> User:
    async with session_scope(kassa.engine) as session:
        return await session.get_one(User, user_id)


# --- tokens -----------------------------------------------------------------------------------


async def test_login_answers_a_pair_and_each_refresh_token_works_once(kassa: Kassa) -> None:
    customer = await kassa.customer()
    first = await logged_in(kassa, customer.user.email)
    assert set(first) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert (
        first["token_type"] == "bearer"
        and first["expires_in"] == kassa.settings.access_token_seconds
    )
    assert jwt.get_unverified_header(first["access_token"])["kid"] == key_id(
        kassa.settings.jwt_secret or ""
    )
    other_device = await logged_in(kassa, customer.user.email)

    second = await refreshed(kassa, first["refresh_token"])
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert await status_with(kassa, pair["access_token"]) == 200
    async with session_scope(kassa.engine) as session:
        stored = set(await session.exec(select(RefreshToken.token_hash)))
    # Kept as their SHA-256 only.
    for refresh_token in (first["refresh_token"], pair["refresh_token"]):
        assert (
            refresh_token not in stored
            and hashlib.sha256(refresh_token.encode()).hexdigest() in stored
        )

    # The first refresh token again: copied, say, by someone. The whole login ends, for both
    # holders.
    assert_problem(await refreshed(kassa, first["refresh_token"]), 401, "refresh_token_reused")
    assert_problem(await refreshed(kassa, pair["refresh_token"]), 401, "invalid_refresh_token")
    for access_token in (first["access_token"], pair["access_token"]):
        async with kassa.http(access_token) as http:
            assert_problem(await http.get("/me"), 401, "token_revoked")
    # Another login of the same account is another family, untouched.
    assert (await refreshed(kassa, other_device["refresh_token"])).status_code == 200

    for bogus in ("", "x" * 129):
        async with kassa.http() as http:
            assert_problem(
                await http.post("/auth/refresh", json={"refresh_token": bogus}),
                422,
                "invalid_request",
            )
    assert_problem(await refreshed(kassa, "never-issued"), 401, "invalid_refresh_token")


async def test_two_refreshes_at_once_with_one_token_end_the_login(kassa: Kassa) -> None:
    customer = await kassa.customer()
    pair = await logged_in(kassa, customer.user.email)
    answers = await asyncio.gather(*(refreshed(kassa, pair["refresh_token"]) for _ in range(5)))
    assert sorted(answer.status_code for answer in answers) == [200, 401, 401, 401, 401]
    winner = next(answer.json() for answer in answers if answer.status_code == 200)
    # One spent it, the others reused it: the login has ended for the winner too.
    assert await status_with(kassa, winner["access_token"]) == 401


async def test_logout_ends_that_login_only(kassa: Kassa) -> None:
    customer = await kassa.customer()
    phone, laptop = (
        await logged_in(kassa, customer.user.email),
        await logged_in(kassa, customer.user.email),
    )
    async with kassa.http() as http:
        for _ in range(2):  # a second logout changes nothing and says so the same way
            response = await http.post(
                "/auth/logout", json={"refresh_token": phone["refresh_token"]}
            )
            assert response.status_code == 204 and response.content == b""
        assert_problem(
            await http.post("/auth/logout", json={"refresh_token": "never-issued"}),
            401,
            "invalid_refresh_token",
        )
    async with kassa.http(phone["access_token"]) as http:
        assert_problem(await http.get("/cart"), 401, "token_revoked")
    assert_problem(await refreshed(kassa, phone["refresh_token"]), 401, "invalid_refresh_token")
    assert await status_with(kassa, laptop["access_token"]) == 200
    assert (await refreshed(kassa, laptop["refresh_token"])).status_code == 200


@asynccontextmanager
async def gateway_with_keys(kassa: Kassa, current: str, *previous: str) -> AsyncIterator[Kassa]:
    """Another gateway on the same database, its keys rotated: as after a deploy."""
    settings = kassa.settings.model_copy(
        update={"jwt_secret": current, "jwt_previous_secrets": list(previous)}
    )
    async with serving(create_gateway(settings), listening_socket()) as url:
        yield dataclasses.replace(kassa, settings=settings, api_url=url)


async def test_key_rotation_keeps_logins_and_forgets_retired_keys(kassa: Kassa) -> None:
    customer = await kassa.customer()
    old_key = kassa.settings.jwt_secret or ""
    new_key, newest_key = "rotated-key-" + "n" * 32, "rotated-again-" + "m" * 32
    before = await logged_in(kassa, customer.user.email)

    async with gateway_with_keys(kassa, new_key, old_key) as rotated:
        assert await status_with(rotated, before["access_token"]) == 200
        after = (await refreshed(rotated, before["refresh_token"])).json()
        assert jwt.get_unverified_header(after["access_token"])["kid"] == key_id(new_key)
        assert await status_with(rotated, after["access_token"]) == 200

    async with gateway_with_keys(kassa, newest_key, new_key) as retired_old:
        assert await status_with(retired_old, after["access_token"]) == 200
        async with retired_old.http(before["access_token"]) as http:
            assert_problem(
                await http.get("/me"), 401, "invalid_token"
            )  # its kid names a key no longer kept
        # Refresh tokens are not signed: they outlive any key.
        assert (await refreshed(retired_old, after["refresh_token"])).status_code == 200


def test_production_wants_long_signing_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    strong, weak = "s" * 32, "w" * 31
    monkeypatch.setenv("KASSA_JWT_PREVIOUS_SECRETS", f" {strong}, {strong}2 ,")

    def settings(jwt_secret: str, env: Literal["test", "production"] = "production") -> Settings:
        return Settings(
            env=env,
            data_dir=tmp_path,
            acquirer_api_key="k",
            acquirer_webhook_secret="w",
            jwt_secret=jwt_secret,
        ).with_secrets()

    assert settings(strong).jwt_previous_secrets == [strong, f"{strong}2"]
    for current, previous in ((weak, strong), (strong, weak)):
        monkeypatch.setenv("KASSA_JWT_PREVIOUS_SECRETS", previous)
        with pytest.raises(WeakSecret, match="at least 32 bytes"):
            settings(current)
    settings(weak, env="test")  # dev and test take any key


# --- throttling and lockout -----------------------------------------------------------------


async def test_account_is_throttled_from_any_address_until_its_window_ends(kassa: Kassa) -> None:
    customer = await kassa.customer()
    email, limit = customer.user.email, kassa.settings.login_attempts_per_account
    async with kassa.http() as http:
        # A burst of concurrent guesses: exactly `limit` are checked, the rest are turned away.
        burst = await asyncio.gather(
            *(log_in(http, email, "wrong password", client_address()) for _ in range(limit + 5))
        )
        assert sorted(answer.status_code for answer in burst) == [401] * limit + [429] * 5
        for address in (client_address(), client_address()):
            throttled = await log_in(
                http, email, address=address
            )  # the right password changes nothing now
            problem = assert_problem(throttled, 429, "too_many_attempts")
            assert 0 < int(throttled.headers["retry-after"]) <= kassa.settings.login_window_seconds
            assert problem["retry_after"] == int(throttled.headers["retry-after"])
        await window_ends(kassa, "account", email)
        assert (await log_in(http, email, address=client_address())).status_code == 200
        # A right password starts the count over.
        for _ in range(limit):
            assert_problem(
                await log_in(http, email, "wrong password", client_address()),
                401,
                "invalid_credentials",
            )


async def test_address_is_throttled_across_accounts_until_its_window_ends(kassa: Kassa) -> None:
    customer = await kassa.customer()
    address, limit = client_address(), kassa.settings.login_attempts_per_address
    async with kassa.http() as http:
        # Credential stuffing: one guess each at many e-mails, known or not.
        guesses = await asyncio.gather(
            *(
                log_in(http, f"victim-{n}@example.com", "wrong password", address)
                for n in range(limit)
            )
        )
        for guess in guesses:
            assert_problem(guess, 401, "invalid_credentials")
        assert_problem(
            await log_in(http, customer.user.email, address=address), 429, "too_many_attempts"
        )
        assert (
            await log_in(http, customer.user.email, address=client_address())
        ).status_code == 200
        await window_ends(kassa, "address", address)
        assert (await log_in(http, customer.user.email, address=address)).status_code == 200


async def test_a_made_up_forwarded_for_is_throttled_by_the_real_address(kassa: Kassa) -> None:
    """`kassa api` as production runs it, trusting no proxy (the default): a client on loopback
    that sends a new X-Forwarded-For with each guess is counted by its own address."""
    settings = kassa.settings.model_copy(
        update={"api_port": free_port(), "login_attempts_per_address": 3, "trusted_proxies": []}
    )
    assert Settings().trusted_proxies == []
    customer = await kassa.customer()
    await window_ends(kassa, "address", "127.0.0.1")  # a window of its own for loopback
    api = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "api",
        env=settings_environment(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}") as http:
            await answers(http, api)
            forged = [client_address() for _ in range(4)]
            for n, address in enumerate(forged[:3]):
                guess = await log_in(http, f"victim-{n}@example.com", "wrong password", address)
                assert_problem(guess, 401, "invalid_credentials")
            assert_problem(
                await log_in(http, customer.user.email, address=forged[3]), 429, "too_many_attempts"
            )
        async with session_scope(kassa.engine) as session:
            counted = set(
                await session.exec(
                    select(LoginAttempts.subject).where(col(LoginAttempts.scope) == "address")
                )
            )
        assert "127.0.0.1" in counted and not set(forged) & counted
    finally:
        api.terminate()
        await asyncio.wait_for(api.wait(), timeout=30)
        await window_ends(kassa, "address", "127.0.0.1")


def test_trusted_proxies_are_addresses_or_networks() -> None:
    taken = Settings(trusted_proxies="10.0.0.7, 192.168.0.0/16,::1")  # type: ignore[arg-type]
    assert taken.trusted_proxies == ["10.0.0.7", "192.168.0.0/16", "::1"]
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="proxy.internal")  # type: ignore[arg-type]


async def answers(http: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        assert process.returncode is None, "kassa api stopped"
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("kassa api did not answer in 60 s")


async def _wrong_passwords(kassa: Kassa, http: httpx.AsyncClient, email: str, count: int) -> None:
    """`count` wrong passwords, the throttling windows skipped: the lockout counts across them."""
    for n in range(count):
        if n and n % kassa.settings.login_attempts_per_account == 0:
            await window_ends(kassa, "account", email)
        assert_problem(
            await log_in(http, email, "wrong password", client_address()),
            401,
            "invalid_credentials",
        )
    await window_ends(kassa, "account", email)


async def test_lockout_holds_until_an_admin_lifts_it_or_it_ends(kassa: Kassa) -> None:
    customer, admin = await kassa.customer(), await kassa.account("admin")
    email, failures = customer.user.email, kassa.settings.lockout_failures
    async with kassa.http() as http:
        await _wrong_passwords(kassa, http, email, failures - 1)
        assert (await account_of(kassa, customer.user.id)).locked_until is None
        with captured_logs() as output:
            await _wrong_passwords(kassa, http, email, 1)
            # Locked: the right password, a wrong one, and an e-mail with no account are answered
            # alike, so the answer does not tell an attacker that the account exists.
            unknown = await log_in(
                http, f"nobody-{uuid.uuid4().hex}@example.com", "wrong password", client_address()
            )
            for password in (PASSWORD, "wrong password"):
                locked = await log_in(http, email, password, client_address())
                assert same_answer(locked, unknown), (locked.text, unknown.text)
        assert_problem(unknown, 401, "invalid_credentials")
        # The owner learns of it from the log and from their profile (a login still open).
        lines = [json.loads(line) for line in output.getvalue().splitlines()]
        user_id = str(customer.user.id)
        assert [line["msg"] for line in lines if line.get("user_id") == user_id] == [
            "account locked",
            "login refused: account locked",
            "login refused: account locked",
        ]
        async with customer.http() as as_owner:
            assert (await as_owner.get("/me")).json()["locked_until"] is not None

        async with admin.http() as as_admin:
            listed = (await as_admin.get("/admin/users", params={"email": email})).json()
            assert [account["email"] for account in listed] == [email] and listed[0][
                "locked_until"
            ] is not None
            lifted = await as_admin.patch(f"/admin/users/{customer.user.id}", json={"unlock": True})
        assert lifted.status_code == 200, lifted.text
        assert (lifted.json()["failed_logins"], lifted.json()["locked_until"]) == (0, None)
        assert (await log_in(http, email, address=client_address())).status_code == 200

        await _wrong_passwords(kassa, http, email, failures)
        assert_problem(
            await log_in(http, email, address=client_address()), 401, "invalid_credentials"
        )
        async with session_scope(kassa.engine) as session:  # as if LOCKOUT_SECONDS had passed
            lockout = timedelta(seconds=kassa.settings.lockout_seconds)
            await session.exec(
                update(User)
                .where(col(User.id) == customer.user.id)
                .values(locked_until=col(User.locked_until) - lockout)
            )
        assert (await log_in(http, email, address=client_address())).status_code == 200


def same_answer(one: httpx.Response, other: httpx.Response) -> bool:
    """The same status, body and headers (but the request's own id and the date)."""
    own = {"x-request-id", "date"}
    return (
        one.status_code == other.status_code
        and one.content == other.content
        and {k: v for k, v in one.headers.items() if k not in own}
        == {k: v for k, v in other.headers.items() if k not in own}
    )


async def test_login_rehashes_a_password_made_with_other_costs(kassa: Kassa) -> None:
    customer = await kassa.customer()
    async with session_scope(kassa.engine) as session:
        old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash(PASSWORD)
        await session.exec(
            update(User).where(col(User.id) == customer.user.id).values(password_hash=old)
        )
    await logged_in(kassa, customer.user.email)
    rehashed = (await account_of(kassa, customer.user.id)).password_hash
    assert (
        rehashed != old
        and f"m={kassa.settings.password_memory_cost},t={kassa.settings.password_time_cost}"
        in rehashed
    )


async def test_password_policy(kassa: Kassa) -> None:
    async with kassa.http() as http:
        for email, password, status, code in [
            ("marina.k@example.com", "Marina.K-1990", 422, "weak_password"),
            ("marina.k@example.com", "short", 422, "weak_password"),
            ("marina.k@example.com", "p" * 257, 422, "invalid_request"),
        ]:
            assert_problem(
                await http.post("/auth/register", json={"email": email, "password": password}),
                status,
                code,
            )
        made = await http.post(
            "/auth/register", json={"email": "al@example.com", "password": "always-1-password"}
        )
        assert made.status_code == 201, (
            made.text
        )  # a local part of two letters is not a password's business


# --- roles and blocking ---------------------------------------------------------------------


async def test_blocking_ends_every_login_and_refuses_the_next(kassa: Kassa) -> None:
    customer, admin = await kassa.customer(), await kassa.account("admin")
    pair = await logged_in(kassa, customer.user.email)
    async with admin.http() as as_admin:
        blocked = await as_admin.patch(
            f"/admin/users/{customer.user.id}", json={"status": "blocked"}
        )
        assert blocked.status_code == 200 and blocked.json()["status"] == "blocked", blocked.text
        for access_token in (customer.token, pair["access_token"]):
            async with kassa.http(access_token) as http:
                assert_problem(await http.get("/cart"), 401, "token_revoked")
        assert_problem(await refreshed(kassa, pair["refresh_token"]), 401, "invalid_refresh_token")
        async with kassa.http() as http:
            assert_problem(
                await log_in(http, customer.user.email, address=client_address()),
                403,
                "account_blocked",
            )
        assert (
            await as_admin.patch(f"/admin/users/{customer.user.id}", json={"status": "active"})
        ).status_code == 200
        for change, status, code in [
            ({"status": "blocked"}, 409, "own_account"),
            ({"role": "customer"}, 409, "own_account"),
        ]:
            assert_problem(
                await as_admin.patch(f"/admin/users/{admin.user.id}", json=change), status, code
            )
        for change, status, code in [
            ({"role": "root"}, 422, "invalid_role"),
            ({"status": "gone"}, 422, "invalid_request"),
            ({"unlock": "yes"}, 422, "invalid_request"),
        ]:
            assert_problem(
                await as_admin.patch(f"/admin/users/{customer.user.id}", json=change), status, code
            )
        assert_problem(
            await as_admin.patch(f"/admin/users/{uuid.uuid4()}", json={"unlock": True}),
            404,
            "user_not_found",
        )
    await logged_in(kassa, customer.user.email)


async def test_a_role_change_applies_to_the_tokens_already_out(kassa: Kassa) -> None:
    employee, admin = await kassa.customer(), await kassa.account("admin")
    async with employee.http() as http:
        assert_problem(await http.get("/admin/orders"), 403, "not_permitted")
        async with admin.http() as as_admin:
            assert (
                await as_admin.patch(f"/admin/users/{employee.user.id}", json={"role": "support"})
            ).status_code == 200
        assert (await http.get("/admin/orders")).status_code == 200
        assert_problem(
            await http.get("/cart"), 403, "not_permitted"
        )  # staff do not shop with a staff account


async def test_account_blocked_during_pay_now_is_refused_by_the_placement(kassa: Kassa) -> None:
    """Blocked after the gateway let the request in, before `verify_customer` ran: the placement's
    own check refuses it, and its transaction leaves nothing behind (no order, nothing held)."""
    sku = await kassa.product(on_hand=3)
    customer, admin = await kassa.customer(), await kassa.account("admin")
    cart = await customer.cart_with((sku, 2))
    async with kassa.engine.connect() as holder:
        # Hold the cart's row: the placement waits on it, with the request already past the auth
        # check.
        await holder.execute(
            text("SELECT 1 FROM carts WHERE id = :id FOR UPDATE"), {"id": cart["id"]}
        )
        async with customer.http() as http:
            paying = asyncio.create_task(pay_now(http, cart, CARD))
            await until_a_lock_is_awaited(kassa, "UPDATE carts")
            async with admin.http() as as_admin:
                assert (
                    await as_admin.patch(
                        f"/admin/users/{customer.user.id}", json={"status": "blocked"}
                    )
                ).status_code == 200
            await holder.rollback()
            assert_problem(await paying, 403, "customer_not_allowed")
    async with session_scope(kassa.engine) as session:
        assert (
            await session.exec(select(Order).where(Order.user_id == customer.user.id))
        ).all() == []
        assert (await session.get_one(Cart, uuid.UUID(cart["id"]))).status == "open"
    stock = await kassa.stock(sku)
    assert (stock.on_hand, stock.reserved) == (3, 0)


async def test_support_reads_any_order_and_cancels_an_unpaid_one(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer, support = await kassa.customer(), await kassa.account("support")
    async with customer.http() as http:
        unpaid = (await pay_now(http, await customer.cart_with((sku, 2)), CARD_3DS)).json()
    paid_by = await kassa.customer()
    async with paid_by.http() as http:
        paid = (await pay_now(http, await paid_by.cart_with((sku, 1)), CARD)).json()
    assert (unpaid["status"], paid["status"]) == ("PENDING_PAYMENT", "PAID")

    async with support.http() as http:
        pending = (
            await http.get("/admin/orders", params={"status": "PENDING_PAYMENT", "limit": 100})
        ).json()["items"]
        assert unpaid["order_id"] in [order["id"] for order in pending]
        assert all(order["status"] == "PENDING_PAYMENT" for order in pending)
        assert_problem(
            await http.get("/admin/orders", params={"status": "LOST"}), 422, "unknown_status"
        )
        assert (await http.get(f"/admin/orders/{paid['order_id']}")).json()["status"] == "PAID"
        assert_problem(await http.get(f"/admin/orders/{uuid.uuid4()}"), 404, "order_not_found")

        cancelled = await http.post(f"/admin/orders/{unpaid['order_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED", (
            cancelled.text
        )
        refused = await http.post(f"/admin/orders/{paid['order_id']}/cancel")
        assert refused.status_code == 409, refused.text
        order = (await http.get(f"/admin/orders/{unpaid['order_id']}")).json()
    assert order["reason"] == "cancelled_by_staff"
    assert (await kassa.stock(sku)).reserved == 0


# --- profile and addresses ------------------------------------------------------------------


async def test_profile(kassa: Kassa) -> None:
    customer = await kassa.customer()
    async with customer.http() as http:
        me = (await http.get("/me")).json()
        user = customer.user
        assert me == {
            "id": str(user.id),
            "email": user.email,
            "role": "customer",
            "display_name": None,
            "phone": None,
            "locked_until": None,
        }
        changed = await http.patch("/me", json={"display_name": "  Ann  ", "phone": "+79161234567"})
        assert changed.json() == me | {"display_name": "Ann", "phone": "+79161234567"}, changed.text
        assert (await http.patch("/me", json={"phone": None})).json()[
            "display_name"
        ] == "Ann"  # only what is sent changes
        for bad in (
            {"phone": "8 916 123-45-67"},
            {"display_name": ""},
            {"display_name": "x" * 101},
            {"display_name": "A\u0000"},
        ):
            assert_problem(await http.patch("/me", json=bad), 422, "invalid_request")
        assert (await http.get("/me")).json() == me | {"display_name": "Ann"}


async def test_addresses_have_one_default_and_belong_to_one_customer(kassa: Kassa) -> None:
    customer, stranger = await kassa.customer(), await kassa.customer()
    async with customer.http() as http:
        first = (await http.post("/me/addresses", json=ADDRESS)).json()
        assert first["is_default"] is True  # the first one is
        second = (
            await http.post(
                "/me/addresses", json=ADDRESS | {"line1": "Arbat 2", "is_default": True}
            )
        ).json()
        listed = (await http.get("/me/addresses")).json()
        assert [(a["id"], a["is_default"]) for a in listed] == [
            (second["id"], True),
            (first["id"], False),
        ]
        # Many at once, each asking to be the default: one is.
        racing = await asyncio.gather(
            *(http.post("/me/addresses", json=ADDRESS | {"is_default": True}) for _ in range(5))
        )
        assert {answer.status_code for answer in racing} == {201}
        assert sum(a["is_default"] for a in (await http.get("/me/addresses")).json()) == 1
        for bad in (
            {**ADDRESS, "country": "ru"},
            {**ADDRESS, "postal_code": "?"},
            {**ADDRESS, "line1": " "},
            {"city": "Moscow"},
        ):
            assert_problem(await http.post("/me/addresses", json=bad), 422, "invalid_request")

    async with stranger.http() as http:
        assert (await http.get("/me/addresses")).json() == []
        assert_problem(await http.delete(f"/me/addresses/{first['id']}"), 404, "address_not_found")
    async with customer.http() as http:
        assert (await http.delete(f"/me/addresses/{first['id']}")).status_code == 204
        assert_problem(await http.delete(f"/me/addresses/{first['id']}"), 404, "address_not_found")
        assert first["id"] not in [a["id"] for a in (await http.get("/me/addresses")).json()]


async def test_pay_now_takes_only_the_customers_own_address(kassa: Kassa) -> None:
    sku = await kassa.product(on_hand=5)
    customer, stranger = await kassa.customer(), await kassa.customer()
    async with stranger.http() as http:
        theirs = (await http.post("/me/addresses", json=ADDRESS)).json()
    async with customer.http() as http:
        mine = (await http.post("/me/addresses", json=ADDRESS)).json()
        gone = (await http.post("/me/addresses", json=ADDRESS)).json()
        assert (await http.delete(f"/me/addresses/{gone['id']}")).status_code == 204
        cart = await customer.cart_with((sku, 1))
        for address_id in (theirs["id"], gone["id"], str(uuid.uuid4())):
            refused = await http.post(
                "/checkout",
                json={"cart_id": cart["id"], "payment_method": CARD, "address_id": address_id},
            )
            assert_problem(refused, 404, "address_not_found")
        assert (await kassa.stock(sku)).reserved == 0 and (await http.get("/orders")).json() == []

        paid = await http.post(
            "/checkout",
            json={"cart_id": cart["id"], "payment_method": CARD, "address_id": mine["id"]},
        )
        assert paid.status_code == 201, paid.text
        assert (await http.get(f"/orders/{paid.json()['order_id']}")).json()["address_id"] == mine[
            "id"
        ]
    async with session_scope(kassa.engine) as session:
        kept = await session.get_one(Address, uuid.UUID(gone["id"]))
    assert kept.deleted_at is not None  # a deleted address stays for the orders that name it


async def test_an_admin_is_made_with_a_password_never_on_the_command_line(kassa: Kassa) -> None:
    """`kassa users create-admin` takes the password from KASSA_ADMIN_PASSWORD or standard input
    (asked for on a terminal), never as an argument, where `ps` and shell history would show it."""
    root = Path(__file__).parent.parent
    environment = {
        "PATH": "/usr/bin:/bin",
        "KASSA_ENV": "test",
        "KASSA_DATA_DIR": str(kassa.settings.data_dir),
        "KASSA_DATABASE_URL": kassa.settings.database_url or "",
    }

    def create_admin(email: str, *extra: str, **given: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "users", "create-admin", email, *extra],
            input="correct-horse-42\n",
            capture_output=True,
            text=True,
            timeout=60,
            env=environment | given,
            cwd=root,
        )

    refused = await asyncio.to_thread(
        create_admin, "ops@example.com", "--password", "correct-horse-42"
    )
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    for email, given in (
        (f"ops-{uuid.uuid4().hex[:8]}@example.com", {}),  # from standard input
        (f"ops-{uuid.uuid4().hex[:8]}@example.com", {"KASSA_ADMIN_PASSWORD": "other-horse-42"}),
    ):
        made = await asyncio.to_thread(create_admin, email, **given)
        assert made.returncode == 0 and f"admin {email} ready" in made.stdout, made.stderr
        password = given.get("KASSA_ADMIN_PASSWORD", "correct-horse-42")
        async with kassa.http() as http:
            login = await http.post("/auth/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
        async with kassa.http(token) as admin:
            assert (await admin.get("/admin/orders")).status_code == 200


async def test_a_command_that_reuses_the_running_postgres_says_so(kassa: Kassa) -> None:
    """`kassa users create-admin` (and `kassa seed`) beside a running `kassa dev`: the embedded
    server is the one already running, not started again."""
    root = Path(__file__).parent.parent
    email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "users", "create-admin", email],
        input="correct-horse-42\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "KASSA_ENV": "test",
            "KASSA_DATA_DIR": str(kassa.settings.data_dir),
        },
        cwd=root,
    )
    assert made.returncode == 0, made.stderr
    pgdata = kassa.settings.data_dir.resolve() / "pg"
    first_line = made.stdout.splitlines()[0]
    assert first_line == f"postgres: reusing the server already running in {pgdata}", made.stdout
    assert f"admin {email} ready" in made.stdout
