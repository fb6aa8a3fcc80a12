import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import EngineDep, TemporalDep

router = APIRouter(tags=["infra"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
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
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503)
