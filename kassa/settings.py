"""One settings class for every process (environment prefix `KASSA_`)."""

import ipaddress
import json
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Generated in dev and test when unset (kept in the data folder); required in production.
SECRET_NAMES = ("jwt_secret", "acquirer_api_key", "acquirer_webhook_secret")
# A real provider's own, never generated: what each needs to start in production.
PSP_SECRETS = {
    "sandbox": (),
    "stripe": ("psp_secret_key", "psp_webhook_secret"),
    "yookassa": ("psp_account_id", "psp_secret_key"),
}
# HS256 keys shorter than the hash's output make forging a token easier than it should be
# (RFC 7518 §3.2).
MIN_JWT_SECRET_BYTES = 32


class MissingSecret(SystemExit):
    pass


class WeakSecret(SystemExit):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KASSA_")

    env: Literal["dev", "test", "production"] = "dev"
    data_dir: Path = Path(".kassa")
    host: str = "127.0.0.1"
    api_port: int = 8000
    # `kassa api`'s processes on api_port (uvicorn's workers): one Python process serves on one
    # core at a time. Each has its own /metrics (README, "Settings").
    api_processes: int = Field(default=1, ge=1, le=64)
    acquirer_port: int = 8100
    # Unset: the embedded dev server on temporal_port; set: a real cluster.
    temporal_address: str | None = None
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_namespace: str = "default"
    # Temporal UI as operators' browsers reach it, for the admin API's links to runs; unset: the
    # embedded dev server's UI, or no links with a real cluster.
    temporal_ui_url: str | None = None
    task_queue: str = "kassa-checkout"
    # Unset: the embedded PostgreSQL under data_dir.
    database_url: str | None = None
    hold_seconds: int = 900
    # Once per order, for a customer still in 3-D Secure when the hold ends.
    hold_grace_seconds: int = 120
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 24 * 3600
    # Signs new access tokens. After a rotation the old key goes to jwt_previous_secrets
    # (comma-separated), so the tokens it signed keep working until they expire.
    jwt_secret: str | None = None
    jwt_previous_secrets: Annotated[list[str], NoDecode] = []
    # argon2id cost of a password hash; a login with a hash of other costs rehashes it.
    password_time_cost: int = 3
    password_memory_cost: int = 65536  # KiB
    password_parallelism: int = 4
    # Failed logins counted per account (e-mail) and per client address, in fixed windows.
    login_window_seconds: int = 900
    login_attempts_per_account: int = 5
    login_attempts_per_address: int = 50
    # Consecutive wrong passwords that lock an account, and for how long (an admin may lift it
    # sooner).
    lockout_failures: int = 10
    lockout_seconds: int = 3600
    # The proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client:
    # the login throttle and YooKassa's network check go by it. Empty: no one's, not even
    # loopback's (any local client could make up an address).
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # The payment service provider (README, "Payment providers"): the sandbox bank (acquirer/,
    # whose secrets are the acquirer_* ones), Stripe or YooKassa.
    psp: Literal["sandbox", "stripe", "yookassa"] = "sandbox"
    # The provider's API; unset: the sandbox's address, or the real provider's own.
    psp_url: str | None = None
    psp_secret_key: str | None = None  # Stripe's secret key, YooKassa's secret key
    psp_account_id: str | None = None  # YooKassa's shopId
    psp_webhook_secret: str | None = None  # Stripe's endpoint signing secret (whsec_…)
    # Where YooKassa's notifications may come from (comma-separated CIDRs); unset: the ranges
    # YooKassa publishes. Behind a proxy, the proxy's address as the gateway sees it.
    psp_trusted_networks: Annotated[list[str], NoDecode] = []
    acquirer_api_key: str | None = None
    acquirer_webhook_secret: str | None = None
    # Each address twice where a browser and a server may see different ones (compose: a
    # service name inside, localhost or a domain outside). Unset: derived from host and ports.
    # The acquirer's API as the worker reaches it; its 3-D Secure pages as the shopper's browser
    # does.
    acquirer_url: str | None = None
    acquirer_public_url: str | None = None
    # The gateway as the shopper's browser reaches it (the return from 3-D Secure); as the acquirer
    # reaches it to deliver webhooks (default: the public one).
    public_url: str | None = None
    api_internal_url: str | None = None
    # In production the api's /metrics answers only `Authorization: Bearer <metrics_token>` (unset:
    # no one); in dev and test anyone.
    metrics_token: str | None = None
    # Metrics of the worker process (Kassa's, and the Temporal SDK's) on these ports; 0: not served.
    worker_metrics_port: int = 9100
    temporal_metrics_port: int = 9101
    # OpenTelemetry collector (OTLP over HTTP, e.g. http://otel-collector:4318); unset: no tracing.
    otlp_endpoint: str | None = None
    # The hold sweeper (a schedule): every this often, release holds of orders whose workflow is
    # gone, or whose deadline passed more than hold_sweep_grace_seconds ago.
    hold_sweep_interval_seconds: int = 300
    hold_sweep_grace_seconds: int = 900
    # Retention (a schedule, hourly): processed webhook events older than this are deleted; login
    # attempt counts this long after their window ended.
    webhook_event_retention_days: int = Field(default=30, ge=1)
    login_attempt_retention_days: int = Field(default=7, ge=0)

    @field_validator(
        "jwt_previous_secrets", "psp_trusted_networks", "trusted_proxies", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for proxy in value:
            ipaddress.ip_network(proxy)  # ValueError: not an address or network
        return value

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_ui_base_url(self) -> str | None:
        if self.temporal_ui_url or self.temporal_address:
            return self.temporal_ui_url
        return f"http://127.0.0.1:{self.temporal_ui_port}"

    @property
    def acquirer_base_url(self) -> str:
        return self.acquirer_url or f"http://{self.host}:{self.acquirer_port}"

    @property
    def acquirer_pages_url(self) -> str:
        return self.acquirer_public_url or self.acquirer_base_url

    @property
    def api_base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.api_port}"

    @property
    def return_url(self) -> str:
        return f"{self.api_base_url}/checkout/return"

    @property
    def webhook_url(self) -> str:
        return f"{self.api_internal_url or self.api_base_url}/webhooks/{self.psp}"

    def with_secrets(self) -> "Settings":
        """Fill missing secrets: generated once and kept in the data folder in dev and test,
        a clear stop in production."""
        missing = [name for name in SECRET_NAMES if not getattr(self, name)]
        if self.env == "production":
            if self.psp != "sandbox":
                # The sandbox bank's secrets matter only with the sandbox bank.
                missing = [name for name in missing if not name.startswith("acquirer_")]
            missing += [name for name in PSP_SECRETS[self.psp] if not getattr(self, name)]
            if missing:
                names = ", ".join(f"KASSA_{name.upper()}" for name in missing)
                raise MissingSecret(f"kassa: {names} must be set in production; refusing to start.")
            self._refuse_weak_jwt_secrets()
        if not missing:
            return self
        path = self.data_dir / "secrets.json"
        kept = json.loads(path.read_text()) if path.exists() else {}
        generated = {name: secrets.token_urlsafe(32) for name in missing if name not in kept}
        if generated:
            kept |= generated
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(kept))
            path.chmod(0o600)
        return self.model_copy(update={name: kept[name] for name in missing})

    def _refuse_weak_jwt_secrets(self) -> None:
        assert self.jwt_secret
        if any(
            len(key.encode()) < MIN_JWT_SECRET_BYTES
            for key in [self.jwt_secret, *self.jwt_previous_secrets]
        ):
            raise WeakSecret(
                "kassa: KASSA_JWT_SECRET and KASSA_JWT_PREVIOUS_SECRETS need at least"
                f" {MIN_JWT_SECRET_BYTES} bytes each in production; refusing to start."
            )


@lru_cache
def get_settings() -> Settings:
    return Settings().with_secrets()
