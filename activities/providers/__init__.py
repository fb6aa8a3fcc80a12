"""Payment service providers behind one interface (`protocol.PaymentProvider`): the sandbox bank,
Stripe, YooKassa. `KASSA_PSP` picks one."""
