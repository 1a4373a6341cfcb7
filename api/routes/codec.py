"""Codec server: lets the Temporal Web UI (and `temporal` CLI) show encrypted payloads in clear
to someone allowed to see them. Implements Temporal's remote codec protocol: POST `.../encode`
and `.../decode` with `{"payloads": [Payload as protobuf JSON]}` (metadata values and data are
base64), answering the same shape.

Who may call it:
- an agent key as `Authorization: Bearer <key>` (also what the UI forwards when configured with
  "pass access token", and what `temporal workflow show --codec-endpoint URL/codec
  --codec-auth 'Bearer <key>'` sends);
- the embedded dev UI, which cannot send credentials: `ndrflow up` gives it a capability URL
  `/codec/ui/<token>` whose token is derived from the home's secret key (`codec_ui_endpoint`).
  Anyone who can open that UI can read the payloads, which is who runs `ndrflow up`. In
  production, give your authenticated UI that URL, or have it pass an agent key.

Browsers call it cross-origin from the UI, so CORS allows exactly the UI's origin
(`settings.temporal_ui_url`, with 127.0.0.1/localhost treated as the same machine).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payloads

from api.deps import SessionDep, SettingsDep
from ndrflow.codec import CodecError, EncryptionCodec, codec_for
from ndrflow.config import Settings

router = APIRouter(prefix="/codec", tags=["codec"])

Operation = Literal["encode", "decode"]


class CodecPayload(BaseModel):
    model_config = ConfigDict(extra="allow")  # protobuf JSON may carry newer Payload fields
    metadata: dict[str, str] = Field(default_factory=dict, description="values are base64")
    data: str = Field("", description="base64")


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload] = Field(default_factory=list, max_length=1000)


# ---- who may call ------------------------------------------------------------------------------
def ui_token(settings: Settings) -> str:
    """The dev UI's capability token: stable per secret key, useless for anything else."""
    if not settings.secret_key:
        # An empty key would make the token public knowledge.
        raise ValueError("NDRFLOW_SECRET_KEY is empty: no codec capability URL without it")
    digest = hmac.new(settings.secret_key.encode(), b"ndrflow codec ui v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def codec_ui_endpoint(settings: Settings, api_url: str) -> str:
    """What to give the Temporal UI as its codec endpoint (`--ui-codec-endpoint`)."""
    return f"{api_url.rstrip('/')}/codec/ui/{ui_token(settings)}"


def allowed_origins(settings: Settings) -> set[str]:
    parts = urlsplit(settings.temporal_ui_url)
    if not parts.scheme or not parts.hostname:
        return set()
    port = f":{parts.port}" if parts.port else ""
    hosts = {parts.hostname}
    if parts.hostname in ("127.0.0.1", "localhost"):
        hosts |= {"127.0.0.1", "localhost"}  # the same machine, however the browser spells it
    return {f"{parts.scheme}://{host}{port}" for host in hosts}


def cors_headers(request: Request, settings: Settings) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin or origin not in allowed_origins(settings):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Namespace",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def require_agent(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    headers = {**cors_headers(request, settings), "WWW-Authenticate": "Bearer"}
    scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise HTTPException(
            401, "the codec server needs an agent key: send `Authorization: Bearer <key>`", headers=headers
        )
    from store.keys import authenticate

    key = authenticate(session, credentials.strip())
    if key is None:
        raise HTTPException(401, "invalid or revoked API key", headers=headers)
    if key.scope != "agent":
        raise HTTPException(
            403, f"a {key.scope} key cannot use the codec server (needs agent)", headers=headers
        )


def require_ui_token(token: str, request: Request, settings: SettingsDep) -> None:
    if not settings.secret_key or not hmac.compare_digest(token.encode(), ui_token(settings).encode()):
        raise HTTPException(404, "unknown codec endpoint", headers=cors_headers(request, settings))


# ---- the protocol --------------------------------------------------------------------------------
async def _convert(
    op: Operation, body: CodecPayloads, codec: EncryptionCodec, request: Request, settings: Settings
) -> Response:
    headers = cors_headers(request, settings)
    try:
        message = json_format.ParseDict(body.model_dump(), Payloads(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise HTTPException(400, f"payloads are not valid protobuf JSON: {exc}", headers=headers) from None
    try:
        converted = await (codec.encode if op == "encode" else codec.decode)(list(message.payloads))
    except CodecError as exc:
        raise HTTPException(422, f"cannot {op}: {exc}", headers=headers) from None
    out = json_format.MessageToJson(Payloads(payloads=converted), indent=None)
    return Response(out, media_type="application/json", headers=headers)


def _codec(request: Request, settings: Settings) -> EncryptionCodec:
    codec = getattr(request.app.state, "payload_codec", None)
    if codec is None:
        codec = request.app.state.payload_codec = codec_for(settings)
    return codec


ERRORS: dict[int | str, dict[str, Any]] = {400: {}, 401: {}, 403: {}, 422: {}}


@router.post(
    "/{op}",
    response_model=CodecPayloads,
    responses=ERRORS,
    summary="Temporal remote codec (agent key)",
    dependencies=[Depends(require_agent)],
)
async def convert(op: Operation, body: CodecPayloads, request: Request, settings: SettingsDep) -> Response:
    return await _convert(op, body, _codec(request, settings), request, settings)


@router.post(
    "/ui/{token}/{op}",
    include_in_schema=False,
    dependencies=[Depends(require_ui_token)],
)
async def convert_for_ui(
    op: Operation, body: CodecPayloads, request: Request, settings: SettingsDep
) -> Response:
    return await _convert(op, body, _codec(request, settings), request, settings)


@router.options("/{path:path}", include_in_schema=False)
async def preflight(path: str, request: Request, settings: SettingsDep) -> Response:
    headers = cors_headers(request, settings)
    # An origin we do not know gets no CORS headers: the browser then refuses the real request.
    return Response(status_code=204 if headers else 403, headers=headers)
