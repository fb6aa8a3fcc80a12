"""Payment service providers behind one interface (`protocol.PaymentProvider`): the sandbox bank,
Stripe, YooKassa. `KASSA_PSP` picks one; `make_provider` builds it from the settings."""

from activities.providers.protocol import PaymentProvider
from activities.providers.sandbox import SandboxProvider
from activities.providers.stripe import StripeProvider
from activities.providers.yookassa import YooKassaProvider
from kassa.settings import Settings


def make_provider(settings: Settings) -> PaymentProvider:
    """The configured provider. In production its secrets were checked when the settings were
    loaded (`Settings.with_secrets`); elsewhere a missing one stops here, saying which."""
    match settings.psp:
        case "stripe":
            return StripeProvider(
                base_url=settings.psp_url or "https://api.stripe.com",
                secret_key=_required(settings.psp_secret_key, "PSP_SECRET_KEY"),
                webhook_secret=_required(settings.psp_webhook_secret, "PSP_WEBHOOK_SECRET"),
            )
        case "yookassa":
            return YooKassaProvider(
                _required(settings.psp_account_id, "PSP_ACCOUNT_ID"),
                _required(settings.psp_secret_key, "PSP_SECRET_KEY"),
                base_url=settings.psp_url or "https://api.yookassa.ru",
                trusted_networks=settings.psp_trusted_networks or None,
            )
        case "sandbox":
            return SandboxProvider(
                settings.psp_url or settings.acquirer_base_url,
                _required(settings.acquirer_api_key, "ACQUIRER_API_KEY"),
                _required(settings.acquirer_webhook_secret, "ACQUIRER_WEBHOOK_SECRET"),
            )


def _required(value: str | None, name: str) -> str:
    if not value:
        raise SystemExit(f"kassa: KASSA_{name} must be set for this payment provider.")
    return value
