"""The storefront gateway: FastAPI, one router per area."""
