import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from activities.operations import count_active_holds
from api.deps import EngineDep, TemporalDep, require_metrics_reader
from kassa.db import session_scope
from kassa.metrics import HOLDS_ACTIVE

log = logging.getLogger("kassa.api")
router = APIRouter(tags=["infra"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]  # "ok", or "unreachable: <why>"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `checks` says what is not."}},
)
async def readyz(engine: EngineDep, temporal: TemporalDep) -> JSONResponse:
    checks = {"database": "ok", "temporal": "ok"}
    try:
        async with asyncio.timeout(3), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 — any failure means not ready
        checks["database"] = f"unreachable: {type(error).__name__}"
    try:
        async with asyncio.timeout(3):
            await temporal.service_client.check_health()
    except Exception as error:  # noqa: BLE001
        checks["temporal"] = f"unreachable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_metrics_reader)])
async def metrics(engine: EngineDep) -> Response:
    """Prometheus text format: this process's counters, and the holds active read from the database
    (left as last read while the database is down: the counters matter most on that day)."""
    try:
        async with session_scope(engine) as session:
            HOLDS_ACTIVE.set(await count_active_holds(session))
    except (SQLAlchemyError, OSError):
        log.warning("metrics: holds active not read, the database is unreachable")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
