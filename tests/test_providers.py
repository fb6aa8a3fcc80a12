"""The provider interface as Kassa uses it: settings that pick a provider and refuse to start a
real one without its secrets, the webhook route per provider, and the sandbox bank behind the
interface (the real providers' adapters: tests/test_provider_stripe.py, _yookassa.py)."""

import json
import time
import uuid
from pathlib import Path
from typing import Literal

import pytest

from activities.providers import make_provider
from activities.providers.protocol import (
    NewPayment,
    PaymentMethodRejected,
    RefundRefused,
    WebhookRefused,
    WebhookRequest,
    payment_key,
)
from activities.providers.stripe import StripeProvider
from activities.providers.yookassa import YooKassaProvider
from kassa.errors import Conflict, NotFound
from kassa.settings import MissingSecret, Settings
from kassa.statuses import PaymentStatus
from kassa.webhook_signatures import sign
from tests.conftest import Kassa


def _production(
    tmp_path: Path,
    psp: Literal["sandbox", "stripe", "yookassa"] = "sandbox",
    secret_key: str | None = None,
    webhook_secret: str | None = None,
) -> Settings:
    return Settings(
        env="production",
        data_dir=tmp_path,
        jwt_secret="j" * 32,
        psp=psp,
        psp_secret_key=secret_key,
        psp_webhook_secret=webhook_secret,
    )


def test_a_real_provider_starts_only_with_its_own_secrets(tmp_path: Path) -> None:
    with pytest.raises(MissingSecret, match="KASSA_PSP_SECRET_KEY, KASSA_PSP_WEBHOOK_SECRET"):
        _production(tmp_path, "stripe").with_secrets()
    with pytest.raises(MissingSecret, match="KASSA_PSP_ACCOUNT_ID"):
        _production(tmp_path, "yookassa", secret_key="sk").with_secrets()
    # The sandbox bank's secrets are not asked for when it is not the provider.
    stripe = _production(tmp_path, "stripe", secret_key="sk", webhook_secret="wh")
    assert stripe.with_secrets().webhook_url.endswith("/webhooks/stripe")
    with pytest.raises(MissingSecret, match="KASSA_ACQUIRER_API_KEY"):
        _production(tmp_path).with_secrets()


async def test_events_are_taken_only_at_the_configured_providers_address(kassa: Kassa) -> None:
    async with kassa.http() as http:
        other = await http.post("/webhooks/stripe", content=b"{}")
        assert other.status_code == 404 and other.json()["code"] == "unknown_provider"
        unsigned = await http.post("/webhooks/sandbox", content=b"{}")
        assert unsigned.status_code == 400 and unsigned.json()["code"] == "signature_missing"


def _payment(method: str, order_id: uuid.UUID, kassa: Kassa, amount: int = 50_000) -> NewPayment:
    return NewPayment(
        order_id=order_id,
        amount=amount,
        currency="RUB",
        idempotency_key=payment_key(order_id, 1, "create"),
        return_url=kassa.settings.return_url,
        capture=True,
        payment_method=method,
        description="a test payment",
    )


async def test_the_sandbox_bank_behind_the_interface(kassa: Kassa) -> None:
    bank = make_provider(kassa.settings)
    try:
        order_id = uuid.uuid4()
        paid = await bank.create_payment(_payment("tok_success", order_id, kassa))
        assert (paid.status, paid.amount, paid.currency) == (PaymentStatus.SUCCEEDED, 50_000, "RUB")
        again = await bank.create_payment(_payment("tok_success", order_id, kassa))
        assert again.payment_id == paid.payment_id  # the same key: the same payment
        # One-stage: a success is captured already, and stays so after a cancel.
        assert (await bank.capture(paid.payment_id, None, "c-1")).status == PaymentStatus.SUCCEEDED
        with pytest.raises(Conflict, match="captures when it charges"):
            await bank.capture(paid.payment_id, 1_000, "c-2")
        assert (await bank.cancel(paid.payment_id, "x-1")).status == PaymentStatus.SUCCEEDED

        part = await bank.refund(paid.payment_id, 20_000, f"{order_id}:refund:1")
        assert await bank.get_refund(part.refund_id) == part
        assert (part.payment_id, part.amount) == (paid.payment_id, 20_000)
        with pytest.raises(RefundRefused):
            await bank.refund(paid.payment_id, 40_000, f"{order_id}:refund:2")

        waiting = await bank.create_payment(_payment("tok_3ds", uuid.uuid4(), kassa))
        assert waiting.status == PaymentStatus.REQUIRES_ACTION and waiting.redirect_url
        assert (await bank.cancel(waiting.payment_id, "x-2")).status == PaymentStatus.CANCELED

        with pytest.raises(PaymentMethodRejected):
            await bank.create_payment(_payment("tok_nope", uuid.uuid4(), kassa))
        with pytest.raises(NotFound):
            await bank.get_payment("pi_nobody_made")
    finally:
        await bank.aclose()


async def test_the_sandbox_banks_events_are_verified_then_read(kassa: Kassa) -> None:
    bank = make_provider(kassa.settings)
    secret = kassa.settings.acquirer_webhook_secret
    assert secret
    order_id = uuid.uuid4()
    event = {
        "id": "evt_1",
        "type": "payment_intent.payment_failed",
        "data": {
            "object": {"id": "pi_1", "merchant_reference": str(order_id), "decline_code": "nsf"}
        },
    }
    body = json.dumps(event).encode()

    def delivered(signature: str) -> WebhookRequest:
        return WebhookRequest(body, {"acquirer-signature": signature}, "127.0.0.1")

    try:
        read = await bank.parse_webhook(delivered(sign(secret, body, int(time.time()))))
        assert (read.id, read.intent_id, read.status, read.decline_code, read.order_id) == (
            "evt_1",
            "pi_1",
            PaymentStatus.FAILED,
            "nsf",
            order_id,
        )
        for signature, code in (
            (sign("not-the-secret", body, int(time.time())), "signature_mismatch"),
            (sign(secret, body, int(time.time()) - 301), "signature_expired"),
        ):
            with pytest.raises(WebhookRefused) as refused:
                await bank.parse_webhook(delivered(signature))
            assert refused.value.code == code and not refused.value.retry
    finally:
        await bank.aclose()


async def test_the_setting_picks_the_provider_and_names_a_missing_secret(tmp_path: Path) -> None:
    stripe = Settings(data_dir=tmp_path, psp="stripe", psp_secret_key="sk_test_1")
    with pytest.raises(SystemExit, match="KASSA_PSP_WEBHOOK_SECRET"):
        make_provider(stripe)
    built = make_provider(stripe.model_copy(update={"psp_webhook_secret": "whsec_1"}))
    assert isinstance(built, StripeProvider) and built.name == "stripe"
    await built.aclose()
    yookassa = Settings(
        data_dir=tmp_path,
        psp="yookassa",
        psp_account_id="123456",
        psp_secret_key="test_1",
        psp_trusted_networks=["10.0.0.0/8"],
    )
    built = make_provider(yookassa)
    assert isinstance(built, YooKassaProvider) and not built.capabilities.payment_method_required
    refused = WebhookRequest(b"{}", {}, "185.71.76.1")  # YooKassa's own range, not the proxy's
    with pytest.raises(WebhookRefused) as untrusted:
        await built.parse_webhook(refused)
    assert untrusted.value.code == "untrusted_source"
    await built.aclose()
