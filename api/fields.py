"""Request field types that more than one router takes."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
)

from activities.auth import EMAIL_LENGTH
from activities.carts import MAX_LINE_QUANTITY
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


Storable = AfterValidator(_storable)
Text = Annotated[str, Storable]
# A line a person typed, trimmed, then 1 to N characters: a name or a city, a street address.
# Constraints come before the check: after an AfterValidator, pydantic trims but does not count,
# and applies a pattern but leaves it out of the OpenAPI document.
NameLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Storable,
]
AddressLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Storable,
]

SkuPath = Annotated[Text, Path(min_length=1, max_length=64)]
# Quantities, stock counts and points are JSON integers: "3", true or 3.0 are refused, not coerced.
Count = Annotated[int, Field(strict=True)]
# A cart line's quantity. The cart checks the bounds (`invalid_quantity`, also for a sum over
# them); the schema states them, so that a client knows before it asks.
Quantity = Annotated[Count, Field(json_schema_extra={"minimum": 1, "maximum": MAX_LINE_QUANTITY})]
# The account checks the form (`invalid_email`); the schema states it.
Email = Annotated[Text, Field(max_length=EMAIL_LENGTH, json_schema_extra={"format": "email"})]

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _spelled_as_date_time(value: Any) -> Any:
    # pydantic takes a number (or a string of digits) as Unix time: 0.5 would be 1970.
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME.match(value)):
        return value
    raise ValueError("must be a date-time in ISO 8601 with a zone, like 2026-11-25T10:00:00Z")


# A moment in time, with its zone, spelled as ISO 8601 (RFC 3339): never a Unix time.
Moment = Annotated[AwareDatetime, BeforeValidator(_spelled_as_date_time)]


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
