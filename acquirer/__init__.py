"""The sandbox acquirer: a stand-in bank modelled on Stripe's PaymentIntents, with 3-D Secure
pages and signed webhooks (signed with `kassa.webhook_signatures`, which the gateway verifies)."""
