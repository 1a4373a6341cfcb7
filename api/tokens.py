"""Signed tokens for the customer self-service page `/r/{token}` and its form.

Case link: the shipment id, NDR attempt and case reference, signed with `Settings.secret_key`
(itsdangerous, a salt per purpose, HMAC-SHA256 cut to 128 bits so the link stays short enough
for an SMS). Holding the link is the customer's only credential, so it carries no personal data
and is only ever valid for one case. It expires after `max_age`, and the page refuses it as soon as
the case is decided or closed (it asks the workflow), so "expires when the case closes" holds
without a revocation list.

CSRF: the form carries a signed value bound to this case link and a random nonce; the same nonce is
set as a SameSite=Lax, HttpOnly cookie. A POST needs both to agree, the signature to verify, and
the value to be younger than its max age. A cross-site form can neither read the cookie nor forge
the signature, and a form value taken from one case's page does not work on another's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadData, BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.signer import HMACAlgorithm

CASE_LINK_SALT = "ndrflow.case-link.v1"
CSRF_SALT = "ndrflow.case-page.csrf.v1"
CSRF_COOKIE = "ndr_csrf"
_SEP = "~"


class TokenError(Exception):
    """Base class; `reason` is a short machine word for logs and page choice."""

    reason = "invalid"


class TokenInvalid(TokenError):
    """Tampered, truncated, signed with another key or for another purpose."""

    reason = "invalid"


class TokenExpired(TokenError):
    """Authentic but older than its max age."""

    reason = "expired"


class CsrfError(TokenError):
    reason = "csrf"


@dataclass(frozen=True)
class CaseToken:
    shipment_id: str
    attempt: int
    case_ref: str
    issued_at: datetime


class _HMACSHA256_128(HMACAlgorithm):
    """HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows truncation to >= 80 bits)."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[:16]


Keys = str | bytes | Sequence[str | bytes]


def _keys(secret_key: Keys) -> list[str | bytes]:
    """One key, or several for rotation (the last signs, all verify)."""
    keys = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    if not keys or any(not k for k in keys):
        raise ValueError("a secret key is required to sign customer links (NDRFLOW_SECRET_KEY)")
    return keys


def _signer(secret_key: Keys) -> TimestampSigner:
    return TimestampSigner(_keys(secret_key), salt=CASE_LINK_SALT, algorithm=_HMACSHA256_128())


def make_case_token(shipment_id: str, attempt: int, case_ref: str, *, secret_key: Keys) -> str:
    """`<shipment_id>~<attempt>~<ref>.<timestamp>.<signature>`, URL-safe, about 66 characters."""
    for part in (shipment_id, case_ref):
        if not part or _SEP in part or "." in part:
            raise ValueError(f"cannot put {part!r} in a case link")
    return _signer(secret_key).sign(f"{shipment_id}{_SEP}{int(attempt)}{_SEP}{case_ref}").decode()


def case_url(public_base_url: str, token: str) -> str:
    """The self-service link customers get: <public base URL>/r/<token>."""
    return f"{public_base_url.rstrip('/')}/r/{token}"


def read_case_token(token: str, *, secret_key: Keys, max_age: float) -> CaseToken:
    """The case a link is for. Raises TokenInvalid (tampered, malformed) or TokenExpired."""
    if not token or len(token) > 200:
        raise TokenInvalid("this link is not valid")
    try:
        raw, ts = _signer(secret_key).unsign(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenExpired("this link has expired") from exc
    except (BadSignature, BadData, UnicodeError, ValueError) as exc:
        raise TokenInvalid("this link is not valid") from exc
    # Base64 lets a few different strings decode to the same signature bytes (unused low bits of
    # the last character); accept only the one canonical spelling, so a link has exactly one form.
    head, _, sig = token.rpartition(".")
    canonical = (
        TimestampSigner(k, salt=CASE_LINK_SALT, algorithm=_HMACSHA256_128()).get_signature(head.encode())
        for k in _keys(secret_key)
    )
    if not any(hmac.compare_digest(sig.encode(), c) for c in canonical):
        raise TokenInvalid("this link is not valid")
    try:
        shipment_id, attempt_s, ref = raw.decode().split(_SEP)
        attempt = int(attempt_s)
    except ValueError as exc:  # signed by us, so only reachable if the format changes
        raise TokenInvalid("this link is not valid") from exc
    return CaseToken(shipment_id, attempt, ref, ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC))


def token_fingerprint(token: str) -> str:
    """A stable, non-secret id of a link for logs and dedupe (never log the link itself)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ---- CSRF ---------------------------------------------------------------------------------


def _csrf_serializer(secret_key: Keys) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_keys(secret_key), salt=CSRF_SALT)


def make_csrf(case_token: str, *, secret_key: Keys) -> tuple[str, str]:
    """(form field value, cookie value) for the page showing `case_token`."""
    nonce = secrets.token_urlsafe(16)
    form = _csrf_serializer(secret_key).dumps([token_fingerprint(case_token), nonce])
    return form, nonce


def check_csrf(form_value: str | None, cookie_value: str | None, case_token: str, *, secret_key: Keys, max_age: float) -> None:
    """Raises CsrfError unless the form value is ours, fresh, for this case, and matches the cookie."""
    if not form_value or not cookie_value:
        raise CsrfError("the form could not be verified (missing security token); open the link again")
    try:
        fp, nonce = _csrf_serializer(secret_key).loads(form_value, max_age=max_age)
    except SignatureExpired as exc:
        raise CsrfError("the form has expired; open the link again") from exc
    except (BadData, ValueError, TypeError) as exc:
        raise CsrfError("the form could not be verified; open the link again") from exc
    if not (isinstance(fp, str) and isinstance(nonce, str)):
        raise CsrfError("the form could not be verified; open the link again")
    if not hmac.compare_digest(fp, token_fingerprint(case_token)):
        raise CsrfError("the form belongs to another link; open the link again")
    if not hmac.compare_digest(nonce, cookie_value):
        raise CsrfError("the form could not be verified (cookie mismatch); open the link again")
