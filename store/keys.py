"""API keys: creation, authentication, revocation.

A key is `ndr_<scope letter>_<43 url-safe chars>` (256 random bits). Only its SHA-256 hash is stored;
a slow hash buys nothing for keys with that much entropy. The first 14 characters are kept in
clear as a lookup prefix (shown in listings, used to find the row) so authentication compares a
handful of hashes in constant time instead of looking a hash up through an index that leaks
timing about how much of it matched.

Scopes: `merchant` (bound to one merchant id), `carrier` (bound to one carrier code), `agent`
(support agents, no binding). Requests send the key as `Authorization: Bearer <key>`.

Every function commits its own change so the CLI and the API can call it directly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from store.models import ApiKey, utcnow

SCOPES = ("merchant", "carrier", "agent")
SCOPE_LETTER = {"merchant": "m", "carrier": "c", "agent": "a"}
LETTER_SCOPE = {v: k for k, v in SCOPE_LETTER.items()}

KEY_RE = re.compile(r"^ndr_([mca])_([A-Za-z0-9_-]{43})$")
PREFIX_LEN = 14  # "ndr_m_" + 8 random characters: 48 bits, enough to make collisions rare
# Same alphabets the API and workflow ids accept; no spaces, slashes or personal data.
MERCHANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CARRIER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class InvalidKeyRequest(ValueError):
    """The scope or binding asked for is not a valid combination; the message says why."""


@dataclass(frozen=True)
class KeyBinding:
    scope: str
    merchant_id: str | None = None
    carrier: str | None = None


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_prefix(raw_key: str) -> str:
    return raw_key[:PREFIX_LEN]


def generate_raw_key(scope: str) -> str:
    # token_urlsafe(32) is 43 characters of base64url without padding.
    return f"ndr_{SCOPE_LETTER[scope]}_{secrets.token_urlsafe(32)}"


def validate_binding(scope: str, merchant_id: str | None = None, carrier: str | None = None) -> KeyBinding:
    """Check a scope and its binding; raises InvalidKeyRequest naming the problem."""
    if scope not in SCOPES:
        raise InvalidKeyRequest(f"unknown scope {scope!r}: expected one of {', '.join(SCOPES)}")
    merchant_id = merchant_id or None
    carrier = carrier or None
    if scope == "merchant":
        if merchant_id is None:
            raise InvalidKeyRequest("a merchant key needs a merchant id (--merchant)")
        if carrier is not None:
            raise InvalidKeyRequest("a merchant key cannot be bound to a carrier")
        if not MERCHANT_ID_RE.match(merchant_id):
            raise InvalidKeyRequest(
                f"invalid merchant id {merchant_id!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
    elif scope == "carrier":
        if carrier is None:
            raise InvalidKeyRequest("a carrier key needs a carrier code (--carrier)")
        if merchant_id is not None:
            raise InvalidKeyRequest("a carrier key cannot be bound to a merchant")
        if not CARRIER_RE.match(carrier):
            raise InvalidKeyRequest(
                f"invalid carrier code {carrier!r}: 1-32 lowercase letters, digits, '_' or '-'"
            )
    elif merchant_id is not None or carrier is not None:
        raise InvalidKeyRequest("an agent key is not bound to a merchant or a carrier")
    return KeyBinding(scope=scope, merchant_id=merchant_id, carrier=carrier)


def _insert(session: Session, raw_key: str, binding: KeyBinding, name: str) -> ApiKey:
    if len(name) > 128:
        raise InvalidKeyRequest("key name is longer than 128 characters")
    row = ApiKey(
        prefix=key_prefix(raw_key),
        key_hash=hash_key(raw_key),
        scope=binding.scope,
        merchant_id=binding.merchant_id,
        carrier=binding.carrier,
        name=name,
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def create_key(
    session: Session,
    *,
    scope: str,
    merchant_id: str | None = None,
    carrier: str | None = None,
    name: str = "",
) -> str:
    """Create a key and return it raw. This is the only time the raw key exists: show it once."""
    binding = validate_binding(scope, merchant_id, carrier)
    raw = generate_raw_key(scope)
    _insert(session, raw, binding, name)
    return raw


def ensure_key(
    session: Session,
    raw_key: str,
    *,
    scope: str,
    merchant_id: str | None = None,
    carrier: str | None = None,
    name: str = "",
) -> ApiKey | None:
    """Make a key we already hold raw (the local development keys kept in the home) valid in this
    database: inserts its hash if missing. Returns None when the key was revoked or is bound
    differently, so the caller makes a fresh one instead of printing a key that does not work."""
    binding = validate_binding(scope, merchant_id, carrier)
    m = KEY_RE.match(raw_key)
    if not m or LETTER_SCOPE[m.group(1)] != scope:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(raw_key))).first()
    if row is None:
        return _insert(session, raw_key, binding, name)
    if row.revoked_at is not None or (row.scope, row.merchant_id, row.carrier) != (
        binding.scope,
        binding.merchant_id,
        binding.carrier,
    ):
        return None
    return row


def authenticate(session: Session, raw_key: str) -> ApiKey | None:
    """The key's row when `raw_key` is a valid, unrevoked key; otherwise None.

    Malformed keys are refused before touching the database; the hash comparison is constant-time.
    """
    m = KEY_RE.match(raw_key or "")
    presented = hash_key(raw_key or "")
    if not m:
        return None
    candidates = session.exec(select(ApiKey).where(ApiKey.prefix == key_prefix(raw_key))).all()
    found: ApiKey | None = None
    for row in candidates:
        # Compare against every candidate so timing does not depend on which one matched.
        if hmac.compare_digest(row.key_hash, presented):
            found = row
    if found is None or found.revoked_at is not None:
        return None
    if LETTER_SCOPE[m.group(1)] != found.scope:  # never happens unless the table was edited by hand
        return None
    return found


def revoke_key(session: Session, *, key_id: int | None = None, prefix: str | None = None) -> list[ApiKey]:
    """Revoke by id or by the prefix shown in listings; returns the rows revoked (none if already
    revoked or unknown). A prefix that matches more than one live key is refused."""
    if (key_id is None) == (prefix is None):
        raise InvalidKeyRequest("give exactly one of a key id or a key prefix")
    stmt = select(ApiKey).where(col(ApiKey.revoked_at).is_(None))
    if key_id is not None:
        stmt = stmt.where(ApiKey.id == key_id)
    else:
        if not prefix or len(prefix) < 8:
            raise InvalidKeyRequest("a key prefix has at least 8 characters (see `ndrflow keys list`)")
        stmt = stmt.where(col(ApiKey.prefix).startswith(prefix[:PREFIX_LEN], autoescape=True))
    rows = session.exec(stmt).all()
    if len(rows) > 1:
        raise InvalidKeyRequest(f"prefix {prefix!r} matches {len(rows)} keys: revoke by id instead")
    now = utcnow()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    session.commit()
    for row in rows:  # usable after the session closes
        session.refresh(row)
    return list(rows)


def list_keys(
    session: Session,
    *,
    scope: str | None = None,
    merchant_id: str | None = None,
    carrier: str | None = None,
    include_revoked: bool = False,
) -> Sequence[ApiKey]:
    stmt = select(ApiKey)
    if scope is not None:
        stmt = stmt.where(ApiKey.scope == scope)
    if merchant_id is not None:
        stmt = stmt.where(ApiKey.merchant_id == merchant_id)
    if carrier is not None:
        stmt = stmt.where(ApiKey.carrier == carrier)
    if not include_revoked:
        stmt = stmt.where(col(ApiKey.revoked_at).is_(None))
    return session.exec(stmt.order_by(col(ApiKey.id))).all()
