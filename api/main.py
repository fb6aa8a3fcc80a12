"""The gateway app: `create_app()` for uvicorn (factory), or with settings for tests."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from activities.providers import make_provider
from api import problems
from api.contract import document_problems
from api.observability import RequestContext
from api.routers import (
    admin,
    admin_orders,
    admin_products,
    admin_promos,
    admin_users,
    auth,
    cart,
    catalog,
    health,
    me,
    orders,
    pay_now,
    webhooks,
)
from kassa.db import make_engine
from kassa.logs import configure_logging
from kassa.settings import Settings, get_settings
from kassa.temporal import connect
from kassa.tracing import configure_tracing
from storefront import routes as storefront

log = logging.getLogger("kassa.api")
DOCS_ASSETS_URL = "/docs-assets"
API_DATABASE_NAME = "kassa-api"  # its connections' application_name in pg_stat_activity


def operation_id(route: APIRoute) -> str:
    """`orders_get_order`, `admin_get_order`: the names a client generated from /openapi.json
    gives its calls."""
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def serve() -> FastAPI:
    """`kassa api`'s factory: in each of its processes, our log lines, then the app."""
    configure_logging()
    app = create_app()
    # The modules and the app, made once, are left out of the garbage collector's passes, and a
    # pass comes after 20,000 new objects, not 700: a request makes thousands (the ORM, pydantic),
    # and each full pass walked every object of the process. Measured in a flash sale of 1,000
    # buyers (README, "What each change bought"): the api's collections took 2.0 CPU s, now 0.26.
    # The objects a request makes die with it (reference counts), not at a pass.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.database_url:
            raise SystemExit(
                "kassa api: set KASSA_DATABASE_URL (or start everything with `kassa dev`)."
            )
        app.state.settings = settings
        # 40 connections for the api in all, shared by its processes, but at least 10 each: past
        # four processes, mind PostgreSQL's max_connections (100 by default).
        app.state.engine = make_engine(
            settings.database_url,
            pool_size=max(10, 40 // settings.api_processes),
            max_overflow=0,
            application_name=API_DATABASE_NAME,
        )
        # Lazy: the api starts (and /readyz says why it is not ready) while Temporal is still
        # coming up.
        app.state.temporal = await connect(
            settings, lazy=True, interceptors=configure_tracing(settings, "api")
        )
        # The gateway reads the provider's webhooks (verified, and for YooKassa re-fetched).
        app.state.provider = make_provider(settings)
        log.info("api started", extra={"temporal": settings.temporal_target, "psp": settings.psp})
        if settings.env == "production" and not settings.metrics_token:
            log.warning("KASSA_METRICS_TOKEN is not set: /metrics refuses every scrape")
        yield
        await app.state.provider.aclose()
        await app.state.engine.dispose()

    # /docs and /redoc with their scripts served by the app (from the fastapi-offline package), not
    # from a CDN: they work on a machine without internet.
    app = FastAPIOffline(
        title="Kassa",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        generate_unique_id_function=operation_id,
    )
    problems.install(app)
    app.add_middleware(RequestContext)
    # Outermost: every part of the app sees the client as the trusted proxies name it. The server
    # must not do it too (`kassa api` runs uvicorn with proxy_headers=False): uvicorn trusts
    # loopback by default, where any local client could make up an address.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    for router in (
        health.router,
        auth.router,
        me.router,
        catalog.router,
        cart.router,
        pay_now.router,
        orders.router,
        webhooks.router,
        admin.router,
        admin_orders.router,
        admin_products.router,
        admin_promos.router,
        admin_users.router,
    ):
        app.include_router(router)
    storefront.install(app)
    document_problems(app)
    return app
