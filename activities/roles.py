"""Roles and what each may do. The gateway checks a route's permission with one dependency
(`api.deps.requires`); the checkout's `verify_customer` asks the same table whether a role may
buy."""

from enum import StrEnum


class Permission(StrEnum):
    SHOP = "shop"  # a cart, Pay Now, one's own orders
    ORDERS_READ_ANY = "orders:read_any"
    ORDERS_CANCEL_ANY = "orders:cancel_any"  # unpaid ones: the workflow refuses the rest
    STOCK_WRITE = "stock:write"
    CATALOG_WRITE = "catalog:write"  # create and change products
    REFUNDS = "refunds"
    LEDGER_READ = "ledger:read"
    USERS_MANAGE = "users:manage"  # roles, blocking, lifting a lockout
    PROMOS_MANAGE = "promos:manage"  # create promo codes, see their uses


_SUPPORT = frozenset({Permission.ORDERS_READ_ANY, Permission.ORDERS_CANCEL_ANY})
PERMISSIONS_OF_ROLE: dict[str, frozenset[Permission]] = {
    "customer": frozenset({Permission.SHOP}),
    "support": _SUPPORT,
    "admin": _SUPPORT
    | {
        Permission.STOCK_WRITE,
        Permission.CATALOG_WRITE,
        Permission.PROMOS_MANAGE,
        Permission.REFUNDS,
        Permission.LEDGER_READ,
        Permission.USERS_MANAGE,
    },
}
ROLES = tuple(PERMISSIONS_OF_ROLE)


def allows(role: str, permission: Permission) -> bool:
    return permission in PERMISSIONS_OF_ROLE.get(role, frozenset())
