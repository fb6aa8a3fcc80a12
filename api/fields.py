"""Request field types that more than one router takes."""

from typing import Annotated, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from activities.providers.protocol import Capabilities
from kassa.errors import Invalid
from workflows.checkout import PaymentMethod


def _storable(text: str) -> str:
    # JSON and URLs can carry NUL and lone surrogates, which PostgreSQL text cannot hold: refused
    # here as bad input (422), instead of failing in the database (500).
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


Text = Annotated[str, AfterValidator(_storable)]
# A line a person typed, trimmed, then 1 to N characters: a name or a city, a street address.
# The length comes before the check: after an AfterValidator, pydantic trims but does not count.
NameLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_storable),
]
AddressLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_storable),
]

SkuPath = Annotated[Text, Path(min_length=1, max_length=64)]
# Quantities, stock counts and points are JSON integers: "3", true or 3.0 are refused, not coerced.
Count = Annotated[int, Field(strict=True)]


class PaymentMethodIn(BaseModel):
    type: Literal["card"]
    # The provider's token for the card: tok_… at the sandbox bank, a PaymentMethod id (pm_…) at
    # Stripe; left out where the customer pays on the provider's own page (YooKassa). Never a card
    # number: a token has a letters-and-underscore prefix.
    token: Annotated[str, Field(pattern=r"^[A-Za-z]{2,8}_[A-Za-z0-9_]{1,92}$")] | None = None

    def for_provider(self, capabilities: Capabilities) -> PaymentMethod:
        """The method as the workflow carries it; refused before anything is held when the
        provider needs a token and none came."""
        if self.token is None and capabilities.payment_method_required:
            raise Invalid(
                "invalid_request",
                "payment_method.token is required: the card's token from the payment provider.",
            )
        return PaymentMethod(self.type, self.token)
