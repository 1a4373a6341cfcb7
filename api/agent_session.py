"""The dashboard's sign-in session and CSRF tokens.

After an agent key is checked once, the browser holds a session cookie: an itsdangerous-signed
(HMAC, `settings.secret_key`), timestamped payload with the key's id and a random nonce; never
the key itself. It is HttpOnly, SameSite=Strict, Path=/agent, Secure when served over HTTPS, and
expires after SESSION_MAX_AGE. Every request re-reads the key row, so revoking the key ends the
session.

CSRF: each form carries HMAC(secret, purpose + session nonce) (synchronizer token bound to the
session; compared in constant time). The sign-in form, which has no session yet, uses the same
scheme with a random nonce in a short-lived pre-session cookie. SameSite=Strict alone would
already keep cross-site posts cookieless; the token also covers same-site attackers (other apps
on sibling subdomains) and old browsers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session

from store.models import ApiKey

SESSION_COOKIE = "ndr_agent"
PRE_SESSION_COOKIE = "ndr_agent_signin"
COOKIE_PATH = "/agent"
SESSION_MAX_AGE = 12 * 3600
PRE_SESSION_MAX_AGE = 30 * 60
_SALT = "ndrflow.agent-session.v1"


class DashboardNotConfigured(RuntimeError):
    pass


@dataclass(frozen=True)
class AgentSession:
    key_id: int
    nonce: str
    name: str

    @property
    def agent(self) -> str:
        return f"{self.name or 'agent'}#{self.key_id}"


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    if not secret_key:
        raise DashboardNotConfigured(
            "the agent dashboard needs NDRFLOW_SECRET_KEY (generated per home by `ndrflow up`)"
        )
    return URLSafeTimedSerializer(secret_key, salt=_SALT)


def _secure(request: Request, public_base_url: str) -> bool:
    return request.url.scheme == "https" or public_base_url.startswith("https://")


def start_session(
    response: Response, request: Request, *, key_id: int, secret_key: str, public_base_url: str
) -> None:
    value = _serializer(secret_key).dumps({"k": key_id, "n": secrets.token_urlsafe(16)})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request, public_base_url),
    )
    response.delete_cookie(PRE_SESSION_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def current_session(request: Request, session: Session, *, secret_key: str) -> AgentSession | None:
    """The signed-in agent, or None (no cookie, bad signature, expired, key revoked or not agent)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(secret_key).loads(raw, max_age=SESSION_MAX_AGE)
        key_id, nonce = int(data["k"]), str(data["n"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or key.scope != "agent":
        return None
    return AgentSession(key_id=key_id, nonce=nonce, name=key.name)


def csrf_token(secret_key: str, nonce: str, purpose: str = "action") -> str:
    if not secret_key:
        raise DashboardNotConfigured("the agent dashboard needs NDRFLOW_SECRET_KEY")
    return hmac.new(secret_key.encode(), f"agent-csrf:{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret_key: str, nonce: str | None, presented: str | None, purpose: str = "action") -> bool:
    if not nonce or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret_key, nonce, purpose), presented)


def pre_session_nonce(request: Request) -> str:
    """The sign-in form's nonce: the cookie's (several tabs share it) or a new one."""
    nonce = request.cookies.get(PRE_SESSION_COOKIE)
    if not nonce or len(nonce) > 64:
        nonce = secrets.token_urlsafe(16)
    return nonce


def set_pre_session(response: Response, request: Request, nonce: str, *, public_base_url: str) -> None:
    response.set_cookie(
        PRE_SESSION_COOKIE,
        nonce,
        max_age=PRE_SESSION_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request, public_base_url),
    )
