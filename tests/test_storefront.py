"""The storefront in Debian's Chromium against the real stack: a person registers, searches, fills
the cart and pays, through the bank's 3-D Secure page and back, and watches the order page follow
the status; a declined card, another card, a hold that runs out, a promo code and points, a phone.
The pages' own script errors fail the test that met them."""

import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from kassa.db import session_scope
from kassa.settings import Settings
from kassa.tables import Product
from storefront.routes import storefront_settings
from tests.conftest import PASSWORD, TEMPORAL_UI_URL, Customer, Kassa, kassa_stack
from tests.test_loyalty import earn
from tests.test_promos import new_promo

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's pictures are refreshed on purpose (KASSA_SCREENSHOTS=docs/screenshots make test);
# otherwise a run takes them into a folder of its own and leaves the clone as it found it.
SCREENSHOTS = Path(
    os.environ.get("KASSA_SCREENSHOTS") or tempfile.mkdtemp(prefix="kassa-screenshots-")
)
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
WAIT_MS = 20_000  # a payment's outcome, or a page, on a loaded machine
SHORT_HOLD_SECONDS = 10


@pytest.fixture(scope="module")
def chromium() -> str:
    assert Path(CHROMIUM).exists(), "Chromium is missing: `make test` installs it (apt-get)"
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def short_hold(
    data_dir: Path, database_url: str, dev_server: WorkflowEnvironment
) -> AsyncIterator[Kassa]:
    """Kassa whose holds last seconds, to watch one run out on the order page."""
    async with kassa_stack(
        data_dir, database_url, dev_server, hold_seconds=SHORT_HOLD_SECONDS, hold_grace_seconds=0
    ) as running:
        yield running


class Browsing:
    """The browser contexts a test opens (each a person on a device), closed after it; the pages'
    script errors, which fail it."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def page(self, kassa: Kassa, **device: Any) -> Page:
        context = await self.browser.new_context(base_url=kassa.api_url, locale="en-US", **device)
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    async def signed_in(self, customer: Customer, **device: Any) -> Page:
        """A page of `customer`, logged in through the form."""
        page = await self.page(customer.kassa, **device)
        await page.goto("/#/login")
        await page.get_by_label("Email").fill(customer.user.email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#nav")).to_contain_text(customer.user.email)
        return page


@pytest.fixture
async def browsing(browser: Browser) -> AsyncIterator[Browsing]:
    opened = Browsing(browser)
    yield opened
    for context in opened.contexts:
        await context.close()
    assert opened.errors == [], "the pages threw"


async def findable_product(kassa: Kassa, on_hand: int, price: int) -> str:
    """A product whose title has a word of its own, to find it by typing that word; returns the
    word. Letters only: PostgreSQL's parser splits a SKU such as SKU-804187E4B9 (a number with an
    exponent inside) so that typing it does not always find it."""
    sku = await kassa.product(on_hand, price)
    word = "walkman" + uuid.uuid4().hex[:10].translate(str.maketrans("0123456789", "ghijklmnop"))
    async with session_scope(kassa.engine) as session:
        (await session.get_one(Product, sku)).title = f"Player {word}"
    return word


async def pay_from_cart(page: Page, card: str) -> None:
    await page.goto("/#/cart")
    await page.get_by_label(card).check()
    await page.get_by_role("button", name="Pay Now").click()


async def order_shows(page: Page, status: str) -> None:
    await expect(page.locator("#order-status [data-status]")).to_have_attribute(
        "data-status", status
    )


async def every_field_labelled(page: Page) -> None:
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('input, select')]"
        ".filter((field) => field.labels.length === 0).map((field) => field.outerHTML)"
    )
    assert unlabelled == []


def rubles(text: str) -> str:
    """Money as the page shows it, its narrow and no-break spaces as plain ones."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


async def test_a_newcomer_registers_finds_a_product_and_buys_it(
    browsing: Browsing, kassa: Kassa
) -> None:
    word = await findable_product(kassa, on_hand=5, price=4_598_000)
    page = await browsing.page(kassa)
    await page.goto("/")
    await page.get_by_role("link", name="Log in").click()
    await page.get_by_label("Email").fill(f"new-{word}@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Catalog")).to_be_visible()

    await page.get_by_label("Search").fill(word)
    await page.get_by_role("button", name="Find").click()
    card = page.locator(".card", has_text=word)
    await expect(card.locator(".price")).to_have_text("45\u00a0980,00\u00a0₽")
    await card.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=f"Player {word}")).to_be_visible()
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.get_by_text("Added to the cart.")).to_be_visible()

    await pay_from_cart(page, "approved")
    await order_shows(page, "PAID")
    assert rubles(await page.locator("#order-total").inner_text()) == "91 960,00 ₽"
    await page.get_by_role("link", name="Orders").click()
    await expect(page.locator(".orders [data-status=PAID]")).to_have_count(1)


async def test_3ds_approved_on_the_bank_page_comes_back_paid_and_the_operator_reads_its_story(
    browsing: Browsing, kassa: Kassa
) -> None:
    customer = await kassa.customer()
    await customer.cart_with((await kassa.product(on_hand=3, price=129_900), 1))
    page = await browsing.signed_in(customer)
    await pay_from_cart(page, "3-D Secure")
    await expect(page.get_by_text("Sandbox Bank · 3-D Secure")).to_be_visible()
    await page.get_by_role("button", name="Approve").click()
    await order_shows(page, "PAID")
    order_id = page.url.rsplit("/", 1)[-1]

    operator = await browsing.signed_in(await kassa.account("support"))
    await operator.goto(f"/#/operator/orders/{order_id}")
    await expect(operator.locator(".timeline [data-status=PAID]")).to_be_visible()
    link = operator.get_by_role("link", name="Its run in Temporal UI")
    assert (await link.get_attribute("href") or "").startswith(TEMPORAL_UI_URL)
    await expect(operator.get_by_role("cell", name="succeeded")).to_be_visible()


async def test_a_declined_card_then_another_within_the_hold(
    browsing: Browsing, kassa: Kassa
) -> None:
    customer = await kassa.customer()
    await customer.cart_with((await kassa.product(on_hand=3, price=250_000), 2))
    page = await browsing.signed_in(customer)
    await pay_from_cart(page, "declined")
    await expect(page.get_by_role("alert")).to_contain_text("declined")
    await expect(page.get_by_role("timer")).to_contain_text("held for you for 1")
    await order_shows(page, "PENDING_PAYMENT")
    await every_field_labelled(page)
    await page.get_by_label("approved").check()
    await page.get_by_role("button", name="Pay", exact=True).click()
    await order_shows(page, "PAID")
    await expect(page.get_by_role("timer")).to_be_empty()


async def test_the_hold_runs_out_while_the_order_page_waits(
    browsing: Browsing, short_hold: Kassa
) -> None:
    customer = await short_hold.customer()
    sku = await short_hold.product(on_hand=1)
    await customer.cart_with((sku, 1))
    page = await browsing.signed_in(customer)
    await pay_from_cart(page, "declined")
    await expect(page.get_by_role("timer")).to_contain_text(re.compile(r"held for you for 0:\d\d"))
    await page.screenshot(path=SCREENSHOTS / "order-waiting.png", full_page=True)
    await order_shows(page, "EXPIRED")
    await expect(page.get_by_role("button", name="Pay", exact=True)).to_have_count(0)
    assert (await short_hold.stock(sku)).reserved == 0


async def test_a_promo_code_and_points_lower_the_total_and_the_points_page_shows_them(
    browsing: Browsing, kassa: Kassa
) -> None:
    customer = await kassa.customer()
    await earn(kassa, customer, 1_000_000)  # 30 000 points at the base rate (3 %)
    code = await new_promo(kassa, value=10)
    await customer.cart_with((await kassa.product(on_hand=3, price=100_000), 1))
    page = await browsing.signed_in(customer)
    await page.goto("/#/cart")
    await page.get_by_label("Promo code").fill(code)
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#promo-status")).to_contain_text(f"Code {code} applied")
    assert rubles(await page.locator("#discount").inner_text()) == "−100,00 ₽"
    await page.get_by_label("Points to spend").fill("5000")
    await page.get_by_role("button", name="Use points").click()
    await expect(page.locator("#points-used")).to_have_text("−50,00\u00a0₽")
    assert rubles(await page.locator("#total").inner_text()) == "850,00 ₽"
    await every_field_labelled(page)
    await page.screenshot(path=SCREENSHOTS / "cart.png", full_page=True)
    await page.get_by_label("approved").check()
    await page.get_by_role("button", name="Pay Now").click()
    await order_shows(page, "PAID")
    assert rubles(await page.locator("#order-total").inner_text()) == "850,00 ₽"

    await page.get_by_role("link", name="Points").click()
    await expect(page.locator("#tier")).to_have_text("Base")
    # 30 000 earned, 5 000 spent, 3 % of the 850 ₽ paid earned again.
    await expect(page.locator("#points-balance")).to_have_text("27,550")


async def test_on_a_phone_by_keyboard_in_russian_a_customer_searches_and_cancels(
    browsing: Browsing, kassa: Kassa
) -> None:
    customer = await kassa.customer()
    word = await findable_product(kassa, on_hand=2, price=4_598_000)
    page = await browsing.signed_in(customer, **PHONE)
    await page.get_by_label("Language").select_option("ru")
    await expect(page.get_by_role("heading", name="Каталог")).to_be_visible()
    await page.get_by_label("Поиск").focus()
    await page.keyboard.type(word)
    await page.keyboard.press("Enter")
    card = page.locator(".card", has_text=word)
    await expect(card.locator(".price")).to_have_text("45\u00a0980,00\u00a0₽")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await every_field_labelled(page)
    await page.screenshot(path=SCREENSHOTS / "phone-catalog.png")
    await card.get_by_role("button", name="В корзину").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Добавлено в корзину.")).to_be_visible()

    await page.goto("/#/cart")
    await page.get_by_label("отказ").check()
    await page.get_by_role("button", name="Оплатить").press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("Банк отклонил оплату")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.get_by_role("button", name="Отменить заказ").press("Enter")
    await order_shows(page, "CANCELLED")
    await expect(page.get_by_text("Заказ закрыт")).to_be_visible()


@pytest.mark.parametrize(
    ("env", "psp", "kinds"),
    [
        ("dev", "sandbox", ["approved", "three_ds", "declined"]),
        ("dev", "stripe", ["approved", "three_ds", "declined"]),
        ("dev", "yookassa", ["provider_page"]),
        ("production", "stripe", []),
        ("production", "yookassa", ["provider_page"]),
    ],
)
async def test_test_cards_are_offered_outside_production_only(
    env: Literal["dev", "production"],
    psp: Literal["sandbox", "stripe", "yookassa"],
    kinds: list[str],
) -> None:
    offered = await storefront_settings(Settings(env=env, psp=psp))
    assert [choice.kind for choice in offered.choices] == kinds
