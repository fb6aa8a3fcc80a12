"""Money is an integer number of kopecks with a currency; never a float."""

CURRENCY = "RUB"


def vat_included(amount: int, rate_percent: int) -> int:
    """The VAT inside a VAT-inclusive amount, rounded half up to the kopeck."""
    return (amount * rate_percent * 2 + (100 + rate_percent)) // (2 * (100 + rate_percent))


def format_rub(amount: int) -> str:
    rubles, kopecks = divmod(amount, 100)
    return f"{rubles:,}".replace(",", " ") + f",{kopecks:02d} ₽"
