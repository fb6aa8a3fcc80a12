"""The storefront's own routes: the page at `/`, its files under `/static`, and what the page
needs to know of this deployment (`/storefront/settings`)."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.deps import SettingsDep

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(tags=["storefront"])


@dataclass(frozen=True)
class PaymentChoice:
    token: str | None  # None: the customer pays on the provider's own page
    kind: str  # approved | three_ds | declined | provider_page: the page words it


# The providers' documented test cards, offered outside production, and the provider's own page
# where it has one: the storefront never takes a card number.
CHOICES: dict[str, list[PaymentChoice]] = {
    "sandbox": [
        PaymentChoice("tok_success", "approved"),
        PaymentChoice("tok_3ds", "three_ds"),
        PaymentChoice("tok_decline", "declined"),
    ],
    "stripe": [
        PaymentChoice("pm_card_visa", "approved"),
        PaymentChoice("pm_card_authenticationRequired", "three_ds"),
        PaymentChoice("pm_card_chargeDeclined", "declined"),
    ],
    "yookassa": [PaymentChoice(None, "provider_page")],
}


@dataclass(frozen=True)
class StorefrontSettings:
    psp: str
    choices: list[PaymentChoice]


# The page runs only its own scripts and talks only to this api; product images may live
# anywhere. No inline script or style: nothing an injected string could run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' https: http: data:; object-src 'none';"
    " base-uri 'none'; frame-ancestors 'none'"
)


@router.get("/", include_in_schema=False)
async def storefront_page() -> FileResponse:
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    return FileResponse(STATIC / "index.html", headers=headers)


@router.get("/storefront/settings")
async def storefront_settings(settings: SettingsDep) -> StorefrontSettings:
    """The payment provider and how the page may pay there: its test cards only outside
    production."""
    choices = CHOICES[settings.psp]
    if settings.env == "production":
        choices = [choice for choice in choices if choice.kind == "provider_page"]
    return StorefrontSettings(settings.psp, choices)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="storefront")
