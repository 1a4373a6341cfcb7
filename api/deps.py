"""Shared dependencies: settings, store sessions, the Temporal client, and API-key auth per scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from temporalio.client import Client

from ndrflow.config import Settings

bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


def get_temporal(request: Request) -> Client:
    client = request.app.state.temporal
    if client is None:
        raise HTTPException(503, "Temporal is not connected")
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


@dataclass(frozen=True)
class Principal:
    scope: str  # merchant | carrier | agent
    merchant_id: str | None = None
    carrier: str | None = None
    key_id: int | None = None

    @property
    def name(self) -> str:
        return f"{self.scope}:{self.merchant_id or self.carrier or self.key_id}"


def authenticate(
    request: Request, session: SessionDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    if creds is None or creds.scheme.lower() != "bearer":
        return None
    from store.keys import authenticate as check_key

    key = check_key(session, creds.credentials)
    if key is None:
        raise HTTPException(401, "invalid or revoked API key")
    principal = Principal(scope=key.scope, merchant_id=key.merchant_id, carrier=key.carrier, key_id=key.id)
    request.state.principal = principal
    return principal


OptionalPrincipal = Annotated[Principal | None, Depends(authenticate)]


def require_scope(*scopes: str):  # type: ignore[no-untyped-def]
    def dependency(principal: OptionalPrincipal) -> Principal:
        if principal is None:
            raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`", headers={"WWW-Authenticate": "Bearer"})
        if principal.scope not in scopes:
            raise HTTPException(403, f"a {principal.scope} key cannot call this endpoint (needs {' or '.join(scopes)})")
        return principal

    return dependency


MerchantAuth = Annotated[Principal, Depends(require_scope("merchant"))]
MerchantOrAgentAuth = Annotated[Principal, Depends(require_scope("merchant", "agent"))]
AgentAuth = Annotated[Principal, Depends(require_scope("agent"))]
