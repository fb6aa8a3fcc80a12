"""The sandbox acquirer: a stand-in bank modelled on Stripe's PaymentIntents, with 3-D Secure
pages and signed webhooks. `acquirer.signing` is the only part the gateway imports."""
