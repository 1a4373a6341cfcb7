"""Reply routing for NDR cases, and the log of inbound customer messages.

`reply_routes`: one row per (case, channel address) while the case waits for an answer. An
inbound SMS from +9198... finds its case by phone, an email by the per-case reply-to key in the
To address (r+<key>@<inbound domain>) or else by the sender, a web submission by its signed token
(which names the case itself). Each case gets a short reference code (domain.case_ref) that is
unique among the customer's *open* cases (a partial unique index), so a customer with two failed
parcels can say which one they mean.

`inbound_replies`: every inbound message once (the provider's message id is UNIQUE, so a
webhook the provider retries is recorded and routed once), with what we did with it.

Functions take a Session and commit: exactly-once is enforced by unique constraints, and a losing
insert is rolled back and answered with the row that won.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from domain.case_ref import candidate_refs
from store.models import utcnow

KIND_PHONE = "phone"
KIND_EMAIL = "email"
KIND_REPLY_TO = "reply_to"

_OPEN = sa.text("closed_at IS NULL")


class ReplyRoute(SQLModel, table=True):
    __tablename__ = "reply_routes"
    __table_args__ = (
        # Opening a case twice (a retried activity) finds the first rows.
        UniqueConstraint("shipment_id", "attempt", "kind", name="uq_reply_routes_case_kind"),
        # A reference code means one open case per customer address.
        Index("uq_reply_routes_open_ref", "kind", "address", "ref", unique=True, sqlite_where=_OPEN, postgresql_where=_OPEN),
        # Reply-to keys are global: the To address alone must find the case.
        Index(
            "uq_reply_routes_reply_key", "address", unique=True,
            sqlite_where=sa.text("kind = 'reply_to'"), postgresql_where=sa.text("kind = 'reply_to'"),
        ),
        Index("ix_reply_routes_lookup", "kind", "address", "closed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: str = Field(max_length=40, index=True)
    attempt: int
    kind: str = Field(max_length=8)  # phone | email | reply_to
    address: str = Field(max_length=254)  # E.164, lower-cased email, or reply-to key
    ref: str = Field(max_length=8)
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class InboundReply(SQLModel, table=True):
    __tablename__ = "inbound_replies"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)  # sms | whatsapp | email | web
    # Twilio MessageSid, the email's Message-ID, or the page submission id: UNIQUE for dedupe.
    provider_message_id: str = Field(max_length=200, unique=True)
    from_address: str = Field(default="", max_length=254)
    to_address: str = Field(default="", max_length=254)
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow, index=True)
    shipment_id: str | None = Field(default=None, max_length=40, index=True)
    attempt: int | None = None
    # received | routed | ask_which | no_open_case | refused | opt_out | failed
    outcome: str = Field(default="received", max_length=32)
    detail: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class OpenCaseRoute:
    shipment_id: str
    attempt: int
    ref: str
    opened_at: datetime
    reply_key: str | None = None
    closed_at: datetime | None = None


# ---- addresses ------------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    return email.strip().lower()


def reply_key_for(shipment_id: str, attempt: int, secret: str = "") -> str:
    """Global key for the per-case reply-to address. Shipment ids are a hash of (merchant,
    carrier, tracking number), all semi-public, so the key is an HMAC under the deployment's
    secret (NDRFLOW_SECRET_KEY): whoever knows a tracking number still cannot write to its case.
    Deterministic so a retried activity gets the same key."""
    msg = f"reply-to\x1f{shipment_id}\x1f{attempt}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest() if secret else hashlib.sha256(msg).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def reply_to_address(reply_key: str, domain: str) -> str:
    return f"r+{reply_key}@{domain}"


def parse_reply_to(address: str, domain: str | None = None) -> str | None:
    """The reply key in an address like "r+abc@in.example.com" (or a display form "Shop <r+...>")."""
    addr = address.strip()
    if "<" in addr and ">" in addr:
        addr = addr[addr.rindex("<") + 1 : addr.rindex(">")]
    local, _, dom = addr.lower().partition("@")
    if domain and dom != domain.lower():
        return None
    if not local.startswith("r+") or len(local) < 4:
        return None
    key = local[2:]
    return key if key.isalnum() else None


# ---- routes --------------------------------------------------------------------------------


def open_route(
    session: Session,
    *,
    shipment_id: str,
    attempt: int,
    phone: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
    key_secret: str = "",
) -> OpenCaseRoute:
    """Open (or find) the routes of an NDR case; returns its reference code and reply-to key.

    Idempotent per (shipment_id, attempt). Earlier attempts of the same shipment are closed
    (one open case per shipment). The code is the first deterministic candidate not used by
    the customer's other open cases; a concurrent open that takes it first makes us try the next.
    """
    now = now or utcnow()
    existing = _case_rows(session, shipment_id, attempt)
    if existing:
        _add_missing(session, existing, phone=phone, email=email, now=now)
        return _as_route(existing)

    _close_earlier_attempts(session, shipment_id, attempt, now)
    addresses = _addresses(phone, email)
    key = reply_key_for(shipment_id, attempt, key_secret)
    for ref in _free_refs(session, shipment_id, attempt, addresses):
        rows = [ReplyRoute(shipment_id=shipment_id, attempt=attempt, kind=k, address=a, ref=ref, opened_at=now) for k, a in addresses]
        rows.append(ReplyRoute(shipment_id=shipment_id, attempt=attempt, kind=KIND_REPLY_TO, address=key, ref=ref, opened_at=now))
        session.add_all(rows)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            existing = _case_rows(session, shipment_id, attempt)
            if existing:  # the same case opened concurrently: theirs wins
                return _as_route(existing)
            continue  # the code was taken by another of the customer's cases meanwhile
        return _as_route(rows)
    raise RuntimeError(f"no free reference code for {shipment_id} attempt {attempt}")


def close_route(session: Session, *, shipment_id: str, attempt: int | None = None, now: datetime | None = None) -> int:
    """Close a case's routes (all the shipment's when attempt is None). Returns rows closed."""
    stmt = sa.update(ReplyRoute).where(ReplyRoute.shipment_id == shipment_id, ReplyRoute.closed_at.is_(None))
    if attempt is not None:
        stmt = stmt.where(ReplyRoute.attempt == attempt)
    result = session.execute(stmt.values(closed_at=now or utcnow()))
    session.commit()
    return result.rowcount or 0


def find_open_cases(session: Session, *, phone: str | None = None, email: str | None = None) -> list[OpenCaseRoute]:
    """The customer's open cases (by phone and/or email), oldest first."""
    addresses = _addresses(phone, email)
    if not addresses:
        return []
    cond = sa.or_(*[sa.and_(ReplyRoute.kind == k, ReplyRoute.address == a) for k, a in addresses])
    rows = session.exec(select(ReplyRoute).where(cond, ReplyRoute.closed_at.is_(None))).all()
    seen: dict[tuple[str, int], OpenCaseRoute] = {}
    for r in sorted(rows, key=lambda r: (r.opened_at, r.id or 0)):
        seen.setdefault((r.shipment_id, r.attempt), OpenCaseRoute(r.shipment_id, r.attempt, r.ref, r.opened_at))
    return list(seen.values())


def resolve_case_ref(session: Session, *, ref: str, phone: str | None = None, email: str | None = None) -> OpenCaseRoute | None:
    """The customer's open case with this reference code (codes are only unique per customer)."""
    ref = ref.strip().upper()
    for case in find_open_cases(session, phone=phone, email=email):
        if case.ref == ref:
            return case
    return None


def find_by_reply_key(session: Session, reply_key: str) -> OpenCaseRoute | None:
    """The case behind a reply-to key, open or closed (closed_at tells which)."""
    row = session.exec(
        select(ReplyRoute).where(ReplyRoute.kind == KIND_REPLY_TO, ReplyRoute.address == reply_key.lower())
    ).first()
    if row is None:
        return None
    return OpenCaseRoute(row.shipment_id, row.attempt, row.ref, row.opened_at, row.address, row.closed_at)


def case_route(session: Session, *, shipment_id: str, attempt: int) -> OpenCaseRoute | None:
    rows = _case_rows(session, shipment_id, attempt)
    return _as_route(rows) if rows else None


def _case_rows(session: Session, shipment_id: str, attempt: int) -> list[ReplyRoute]:
    return list(session.exec(select(ReplyRoute).where(ReplyRoute.shipment_id == shipment_id, ReplyRoute.attempt == attempt)).all())


def _as_route(rows: list[ReplyRoute]) -> OpenCaseRoute:
    first = rows[0]
    key = next((r.address for r in rows if r.kind == KIND_REPLY_TO), None)
    closed = None if any(r.closed_at is None for r in rows) else max(r.closed_at for r in rows if r.closed_at)
    return OpenCaseRoute(first.shipment_id, first.attempt, first.ref, min(r.opened_at for r in rows), key, closed)


def _addresses(phone: str | None, email: str | None) -> list[tuple[str, str]]:
    out = []
    if phone:
        out.append((KIND_PHONE, phone.strip()))
    if email:
        out.append((KIND_EMAIL, normalise_email(email)))
    return out


def _free_refs(session: Session, shipment_id: str, attempt: int, addresses: list[tuple[str, str]]) -> list[str]:
    taken = {c.ref for c in find_open_cases(session, **_contact_kwargs(addresses))} if addresses else set()
    return [r for r in candidate_refs(f"{shipment_id}:{attempt}") if r not in taken]


def _contact_kwargs(addresses: list[tuple[str, str]]) -> dict[str, str]:
    return {k: a for k, a in addresses}


def _add_missing(session: Session, rows: list[ReplyRoute], *, phone: str | None, email: str | None, now: datetime) -> None:
    """A case reopened with a contact it did not have (e.g. email added later): route it too."""
    have = {r.kind for r in rows}
    if all(r.closed_at is not None for r in rows):
        return
    first = rows[0]
    for kind, addr in _addresses(phone, email):
        if kind in have:
            continue
        session.add(ReplyRoute(shipment_id=first.shipment_id, attempt=first.attempt, kind=kind, address=addr, ref=first.ref, opened_at=now))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # concurrent add, or the code is taken on that address: phone/token still route


def _close_earlier_attempts(session: Session, shipment_id: str, attempt: int, now: datetime) -> None:
    session.execute(
        sa.update(ReplyRoute)
        .where(ReplyRoute.shipment_id == shipment_id, ReplyRoute.attempt < attempt, ReplyRoute.closed_at.is_(None))
        .values(closed_at=now)
    )
    session.commit()


# ---- inbound log -------------------------------------------------------------------------------


def record_inbound(
    session: Session,
    *,
    channel: str,
    provider_message_id: str,
    from_address: str,
    body: str,
    to_address: str = "",
    received_at: datetime | None = None,
) -> tuple[InboundReply, bool]:
    """(row, created). created=False: the provider retried a message we already have."""
    if not provider_message_id:
        raise ValueError("provider_message_id is required (it is what makes a retried webhook count once)")
    row = InboundReply(
        channel=channel,
        provider_message_id=provider_message_id[:200],
        from_address=from_address[:254],
        to_address=to_address[:254],
        body=body,
        received_at=received_at or utcnow(),
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = session.exec(select(InboundReply).where(InboundReply.provider_message_id == provider_message_id[:200])).one()
        return existing, False
    session.refresh(row)
    return row, True


def set_inbound_outcome(
    session: Session,
    inbound_id: int,
    *,
    outcome: str,
    shipment_id: str | None = None,
    attempt: int | None = None,
    detail: str = "",
) -> None:
    session.execute(
        sa.update(InboundReply)
        .where(InboundReply.id == inbound_id)
        .values(outcome=outcome, shipment_id=shipment_id, attempt=attempt, detail=detail[:500])
    )
    session.commit()


def last_inbound(
    session: Session, *, from_address: str, outcome: str | None = None, since: timedelta = timedelta(hours=24), before_id: int | None = None
) -> InboundReply | None:
    """The sender's latest earlier message (optionally with a given outcome) within `since`."""
    stmt = select(InboundReply).where(InboundReply.from_address == from_address, InboundReply.received_at >= utcnow() - since)
    if outcome is not None:
        stmt = stmt.where(InboundReply.outcome == outcome)
    if before_id is not None:
        stmt = stmt.where(InboundReply.id < before_id)
    return session.exec(stmt.order_by(InboundReply.id.desc())).first()
