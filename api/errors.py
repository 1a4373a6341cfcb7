"""Bad input never yields a 500: every refusal gets a 4xx naming the problem and is recorded
(method, path, status, reason, client; never the body, which may hold personal data)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from api.redaction import redact
from store import crud

log = logging.getLogger("ndrflow.api")


class ErrorResponse(BaseModel):
    """Every 4xx (and 503) body: `detail` says what was wrong in words."""

    model_config = ConfigDict(extra="allow")
    detail: str = Field(description="What was wrong, naming the field or header at fault")


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(ErrorResponse):
    """422: `detail` summarises; `errors` lists each problem (absent when the body could be read
    but what it says is refused, e.g. a carrier payload in the wrong format)."""

    errors: list[ValidationErrorItem] | None = None


def record(request: Request, status: int, reason: str) -> None:
    try:
        with Session(request.app.state.engine) as session:
            crud.record_refusal(
                session,
                method=request.method,
                path=redact(request.url.path),
                status_code=status,
                # Reasons quote what the client sent (a phone that did not parse, a key): masked.
                reason=redact(reason),
                client=request.client.host if request.client else "",
            )
    except Exception:  # recording must never turn a 4xx into a 500
        log.exception("could not record refused request")


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _describe_validation(exc)
        record(request, 422, message)
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"detail": message, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if 400 <= exc.status_code < 500:
            record(request, exc.status_code, detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RPCError)
    async def temporal_down(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("temporal call failed: %s", exc)
        return JSONResponse({"detail": f"workflow service unavailable: {exc.status.name}"}, status_code=503)

    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_body_bytes)
    document_errors(app)


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers above really send: every JSON operation
    may answer any 4xx with ErrorResponse, 422 with ValidationErrorResponse (not FastAPI's
    default list-shaped `detail`), and 503 when Temporal is down. Clients and the schema fuzz
    test (tests/api/test_schemathesis.py) rely on it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        _add_error_schemas(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _add_error_schemas(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorResponse, ValidationErrorItem, ValidationErrorResponse):
        defs = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(defs.pop("$defs", {}))
        components[model.__name__] = defs
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for item in schema.get("paths", {}).values():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                continue
            responses = op.setdefault("responses", {})
            html = any("text/html" in (r.get("content") or {}) for code, r in responses.items() if str(code).startswith("2"))
            for code, resp in list(responses.items()):
                if str(code)[0] not in "45":
                    continue
                if html:
                    resp["content"] = {"text/html": {"schema": {"type": "string"}}}
                    continue
                resp.update(_ref("ValidationErrorResponse" if str(code) == "422" else "ErrorResponse"))
                resp.setdefault("description", "Error")
            if html:
                responses.setdefault("4XX", {"description": "Refused (an HTML page)", "content": {"text/html": {"schema": {"type": "string"}}}})
                continue
            responses.setdefault("4XX", {"description": "Refused: `detail` names the problem", **_ref("ErrorResponse")})
            responses.setdefault("422", {"description": "Invalid request", **_ref("ValidationErrorResponse")})
            if "health" in op.get("tags", []):
                responses.setdefault("503", {"description": "A part is down (named in the body)", "content": {"application/json": {"schema": _HEALTH}}})
            else:
                responses.setdefault("503", {"description": "Temporal is unavailable", **_ref("ErrorResponse")})


_HEALTH = {
    "type": "object",
    "required": ["status", "temporal", "database"],
    "properties": {"status": {"type": "string"}, "temporal": {"type": "string"}, "database": {"type": "string"}},
}


class BodySizeLimit:
    """413 for bodies over the limit, by Content-Length or while streaming (chunked uploads)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.limit_for(scope.get("path", ""))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(scope, send)
            return
        seen = 0
        too_big = False

        async def limited_receive() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_big = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)

    def limit_for(self, path: str) -> int:
        # SendGrid posts event batches and inbound mail (with attachments) larger than our own
        # API's bodies ever are; its routes check their own limits.
        for prefix, limit in LARGER_BODIES.items():
            if path.startswith(prefix):
                return max(limit, self.max_bytes)
        return self.max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        reason = f"request body over {self.limit_for(scope.get('path', ''))} bytes"
        request = Request(scope)
        record(request, 413, reason)
        response = JSONResponse({"detail": reason}, status_code=413)
        await response(scope, _noop_receive, send)


LARGER_BODIES = {"/v1/webhooks/sendgrid/": 30 * 1024 * 1024}


class _TooLarge(Exception):
    pass


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}
