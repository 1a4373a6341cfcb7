"""Liveness for load balancers and `ndrflow up`: names the part that is down."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    body = {"status": "ok", "temporal": "ok", "database": "ok"}
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        body["database"] = f"down: {type(exc).__name__}"
    try:
        client = request.app.state.temporal
        if client is None:
            raise RuntimeError("not connected")
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
    except Exception as exc:  # noqa: BLE001
        body["temporal"] = f"down: {type(exc).__name__}"
    if body["database"] != "ok" or body["temporal"] != "ok":
        body["status"] = "degraded"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
