"""Notification tables and their functions: the exactly-once log, opt-outs, the local outbox,
inbound messages (WhatsApp's 24-hour window) and SendGrid event ids already processed.

Exactly once is enforced by unique constraints and compare-and-set updates, never by
read-then-write: two workers racing on the same key cannot both win.

Send lifecycle of a notification_log row (`status`):
    pending  claimed; no provider call in flight (fresh, or the last try surely did not send)
    sending  a provider call is in flight (or its worker died: the lease has run out)
    unknown  the call ended without an answer we can trust (timeout, 5xx): maybe sent
    sent     the provider accepted it (provider_message_id set)      -- final
    skipped  not sent on purpose (opted out, landline, no contact)    -- final
    failed   the provider refused it permanently (error_code set)     -- final
`delivery_status` is what the provider said afterwards (callbacks, events): queued, sent,
delivered, read, undelivered, failed, bounce, dropped, ... It never moves backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from store.models import utcnow

FINAL_SEND_STATUSES = frozenset({"sent", "skipped", "failed"})
DELIVERY_FAILURES = frozenset({"failed", "undelivered", "bounce", "dropped"})
_DELIVERY_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "processed": 1,
    "deferred": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "open": 4,
    "click": 4,
}


class NotificationLog(SQLModel, table=True):
    __tablename__ = "notification_log"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)  # shipment:purpose:occurrence:channel
    shipment_id: str = Field(index=True, max_length=40)
    channel: str = Field(max_length=16)
    purpose: str = Field(max_length=32)
    occurrence: str = Field(default="", max_length=200)
    provider: str = Field(default="", max_length=32)
    recipient: str | None = Field(default=None, max_length=254)  # E.164 or email, as sent
    status: str = Field(default="pending", max_length=16)
    delivery_status: str | None = Field(default=None, max_length=24)
    provider_message_id: str | None = Field(default=None, index=True, max_length=100)
    error_code: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    # Bumped by every provider attempt; updates compare-and-set on it.
    attempt: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    attempt_started_at: datetime | None = None
    sent_at: datetime | None = None
    delivery_updated_at: datetime | None = None
    # A failure callback is forwarded to the workflow once; set after the signal went through.
    failure_signalled_at: datetime | None = None


class NotificationOptOut(SQLModel, table=True):
    __tablename__ = "notification_optouts"
    __table_args__ = (
        sa.UniqueConstraint("channel", "address", name="uq_notification_optouts_channel_address"),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=254)  # E.164 for sms/whatsapp, lower-cased email
    opted_out: bool = True
    source: str = Field(default="", max_length=32)  # keyword | twilio_21610 | sendgrid_unsubscribe | ...
    keyword: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class OutboxMessage(SQLModel, table=True):
    """The local channel: what would have been sent, for the /dev/outbox page and tests."""

    __tablename__ = "outbox_messages"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    message_id: str = Field(unique=True, max_length=40)  # our "provider message id" (OB...)
    shipment_id: str = Field(index=True, max_length=40)
    channel: str = Field(max_length=16)
    to_address: str = Field(index=True, max_length=254)
    purpose: str = Field(max_length=32)
    locale: str = Field(max_length=16)
    template_locale: str = Field(default="", max_length=16)
    subject: str | None = Field(default=None, max_length=500)
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    html: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class InboundMessage(SQLModel, table=True):
    """Messages customers sent us. The last one per number opens WhatsApp's 24-hour window."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        sa.Index("ix_inbound_messages_channel_from_received", "channel", "from_address", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    provider_message_id: str = Field(unique=True, max_length=64)  # Twilio MessageSid: dedupes retries
    channel: str = Field(max_length=16)
    from_address: str = Field(max_length=254)
    to_address: str = Field(default="", max_length=254)
    body: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class SendgridEventSeen(SQLModel, table=True):
    __tablename__ = "sendgrid_events_seen"

    id: int | None = Field(default=None, primary_key=True)
    sg_event_id: str = Field(unique=True, max_length=100)
    event: str = Field(max_length=32)
    notification_key: str | None = Field(default=None, max_length=300)
    received_at: datetime = Field(default_factory=utcnow)


# ---- notification log --------------------------------------------------------------------
@dataclass
class Claim:
    row: NotificationLog
    fresh: bool  # True: this call created the row


def get_notification(engine: Engine, key: str) -> NotificationLog | None:
    with Session(engine) as s:
        return s.exec(select(NotificationLog).where(NotificationLog.key == key)).first()


def claim_notification(
    engine: Engine,
    *,
    key: str,
    shipment_id: str,
    channel: str,
    purpose: str,
    occurrence: str = "",
    provider: str = "",
    recipient: str | None = None,
    status: str = "pending",
    reason: str | None = None,
    error_code: str | None = None,
) -> Claim:
    """Insert the row for `key`, or return the one that exists (the unique key decides)."""
    row = NotificationLog(
        key=key,
        shipment_id=shipment_id,
        channel=channel,
        purpose=purpose,
        occurrence=occurrence,
        provider=provider,
        recipient=recipient,
        status=status,
        reason=reason,
        error_code=error_code,
    )
    with Session(engine, expire_on_commit=False) as s:
        s.add(row)
        try:
            s.commit()
            return Claim(row, True)
        except IntegrityError:
            s.rollback()
    existing = get_notification(engine, key)
    if existing is None:  # pragma: no cover - the conflicting row cannot vanish (no deletes)
        raise RuntimeError(f"notification {key} conflicted but is not there")
    return Claim(existing, False)


def _cas(
    engine: Engine, key: str, expect_attempt: int, expect_status: tuple[str, ...], **values: Any
) -> NotificationLog | None:
    """Compare-and-set on (attempt, status): None when another attempt got there first."""
    values["updated_at"] = utcnow()
    with Session(engine) as s:
        res = s.exec(  # type: ignore[call-overload]
            sa.update(NotificationLog)
            .where(
                col(NotificationLog.key) == key,
                col(NotificationLog.attempt) == expect_attempt,
                col(NotificationLog.status).in_(expect_status),
            )
            .values(**values)
        )
        s.commit()
        if res.rowcount != 1:
            return None
    return get_notification(engine, key)


def begin_attempt(
    engine: Engine, row: NotificationLog, *, provider: str, recipient: str | None
) -> NotificationLog | None:
    """pending/sending/unknown -> sending with attempt+1. None when someone else changed the row."""
    return _cas(
        engine,
        row.key,
        row.attempt,
        ("pending", "sending", "unknown"),
        status="sending",
        attempt=row.attempt + 1,
        attempt_started_at=utcnow(),
        provider=provider,
        recipient=recipient,
    )


def mark_sent(
    engine: Engine, row: NotificationLog, *, provider_message_id: str | None, reason: str | None = None
) -> NotificationLog:
    done = _cas(
        engine,
        row.key,
        row.attempt,
        ("sending", "unknown"),
        status="sent",
        provider_message_id=provider_message_id,
        sent_at=utcnow(),
        error_code=None,
        reason=reason,
    )
    return done or get_notification(engine, row.key) or row


def mark_failed(
    engine: Engine,
    row: NotificationLog,
    *,
    error_code: str | None,
    reason: str | None,
    status: str = "failed",
) -> NotificationLog:
    """pending/sending -> failed (or skipped): final."""
    done = _cas(
        engine,
        row.key,
        row.attempt,
        ("sending", "pending", "unknown"),
        status=status,
        error_code=error_code,
        reason=_clip(reason),
    )
    return done or get_notification(engine, row.key) or row


def release_attempt(
    engine: Engine, row: NotificationLog, *, error_code: str | None, reason: str | None
) -> NotificationLog | None:
    """sending -> pending: the provider surely did not take it (429, refused connection), so the
    next attempt may send without reconciling first."""
    return _cas(
        engine,
        row.key,
        row.attempt,
        ("sending",),
        status="pending",
        error_code=error_code,
        reason=_clip(reason),
    )


def mark_unknown(
    engine: Engine, row: NotificationLog, *, error_code: str | None, reason: str | None
) -> NotificationLog | None:
    """sending -> unknown: the attempt is over but may have reached the provider; the next
    attempt reconciles at once instead of waiting for the lease to run out."""
    return _cas(
        engine,
        row.key,
        row.attempt,
        ("sending",),
        status="unknown",
        error_code=error_code,
        reason=_clip(reason),
    )


def _clip(text: str | None, n: int = 500) -> str | None:
    return None if text is None else text[:n]


def delivery_status_applies(current: str | None, new: str) -> bool:
    if new in DELIVERY_FAILURES:
        return current not in DELIVERY_FAILURES
    if current in DELIVERY_FAILURES:
        return False  # a late "sent" never hides a failure
    if current is None:
        return True
    return _DELIVERY_RANK.get(new, -1) > _DELIVERY_RANK.get(current, -1)


def apply_delivery_status(
    engine: Engine,
    *,
    status: str,
    key: str | None = None,
    provider_message_id: str | None = None,
    error_code: str | None = None,
) -> tuple[NotificationLog | None, bool]:
    """Record a provider callback on the row found by key (preferred) or provider message id.
    Returns (row, changed). Out-of-order callbacks never move the status backwards."""
    with Session(engine, expire_on_commit=False) as s:
        row = None
        if key:
            row = s.exec(select(NotificationLog).where(NotificationLog.key == key).with_for_update()).first()
        if row is None and provider_message_id:
            row = s.exec(
                select(NotificationLog)
                .where(NotificationLog.provider_message_id == provider_message_id)
                .with_for_update()
            ).first()
        if row is None:
            return None, False
        changed = False
        if provider_message_id and not row.provider_message_id:
            row.provider_message_id = provider_message_id  # callback raced our own write
            changed = True
        if delivery_status_applies(row.delivery_status, status):
            row.delivery_status = status
            row.delivery_updated_at = utcnow()
            if status in DELIVERY_FAILURES and error_code:
                row.error_code = error_code
            changed = True
        if changed:
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
        return row, changed


def message_ids_for_recipient(engine: Engine, *, channel: str, recipient: str, except_key: str) -> set[str]:
    """Provider message ids already recorded for other notifications to this recipient
    (reconciliation must not claim one of them as the lost message)."""
    with Session(engine) as s:
        rows = s.exec(
            select(NotificationLog.provider_message_id).where(
                NotificationLog.channel == channel,
                NotificationLog.recipient == recipient,
                NotificationLog.key != except_key,
                col(NotificationLog.provider_message_id).is_not(None),
            )
        ).all()
    return {r for r in rows if r}


def key_for_message_id(engine: Engine, provider_message_id: str | None) -> str | None:
    if not provider_message_id:
        return None
    with Session(engine) as s:
        return s.exec(
            select(NotificationLog.key).where(NotificationLog.provider_message_id == provider_message_id)
        ).first()


def unsignalled_failures(engine: Engine, keys: list[str]) -> list[NotificationLog]:
    """Rows among `keys` whose delivery failed and whose workflow has not been told yet."""
    if not keys:
        return []
    with Session(engine) as s:
        return list(
            s.exec(
                select(NotificationLog).where(
                    col(NotificationLog.key).in_(keys),
                    col(NotificationLog.delivery_status).in_(DELIVERY_FAILURES),
                    col(NotificationLog.failure_signalled_at).is_(None),
                )
            ).all()
        )


def mark_failure_signalled(engine: Engine, key: str) -> None:
    with Session(engine) as s:
        s.exec(  # type: ignore[call-overload]
            sa.update(NotificationLog)
            .where(col(NotificationLog.key) == key, col(NotificationLog.failure_signalled_at).is_(None))
            .values(failure_signalled_at=utcnow())
        )
        s.commit()


def notifications_for_shipment(engine: Engine, shipment_id: str) -> list[dict[str, Any]]:
    """For GET /v1/shipments/{id}: one dict per notification, oldest first, no contact data."""
    with Session(engine) as s:
        rows = s.exec(
            select(NotificationLog)
            .where(NotificationLog.shipment_id == shipment_id)
            .order_by(col(NotificationLog.id))
        ).all()
    return [
        {
            "key": r.key,
            "channel": r.channel,
            "purpose": r.purpose,
            # the provider's latest word when there is one, otherwise our send outcome
            "status": r.delivery_status or r.status,
            "send_status": r.status,
            "delivery_status": r.delivery_status,
            "provider": r.provider,
            "provider_message_id": r.provider_message_id,
            "error_code": r.error_code,
            "reason": r.reason,
            "created_at": r.created_at.isoformat(),
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r in rows
    ]


# ---- opt-outs ----------------------------------------------------------------------------
def normalize_address(channel: str, address: str) -> str:
    address = address.strip()
    if address.lower().startswith("whatsapp:"):
        address = address[len("whatsapp:") :]
    return address.lower() if channel == "email" else address


def set_opt_out(
    engine: Engine, *, channel: str, address: str, opted_out: bool, source: str, keyword: str | None = None
) -> None:
    """Record an opt-out (or an opt back in) for one address on one channel. Idempotent."""
    address = normalize_address(channel, address)
    for _ in range(2):  # insert, or update the row a concurrent insert created
        with Session(engine) as s:
            row = s.exec(
                select(NotificationOptOut).where(
                    NotificationOptOut.channel == channel, NotificationOptOut.address == address
                )
            ).first()
            if row is None:
                s.add(
                    NotificationOptOut(
                        channel=channel, address=address, opted_out=opted_out, source=source, keyword=keyword
                    )
                )
            else:
                row.opted_out, row.source, row.keyword, row.updated_at = opted_out, source, keyword, utcnow()
                s.add(row)
            try:
                s.commit()
                return
            except IntegrityError:
                s.rollback()
    raise RuntimeError("could not record the opt-out")  # pragma: no cover


def is_opted_out(engine: Engine, *, channel: str, address: str) -> bool:
    address = normalize_address(channel, address)
    with Session(engine) as s:
        row = s.exec(
            select(NotificationOptOut).where(
                NotificationOptOut.channel == channel, NotificationOptOut.address == address
            )
        ).first()
    return bool(row and row.opted_out)


# ---- outbox ------------------------------------------------------------------------------
def store_outbox_message(engine: Engine, msg: OutboxMessage) -> OutboxMessage:
    """Idempotent by key: a second store of the same key returns the first message."""
    with Session(engine, expire_on_commit=False) as s:
        s.add(msg)
        try:
            s.commit()
            return msg
        except IntegrityError:
            s.rollback()
    found = outbox_by_key(engine, msg.key)
    if found is None:  # pragma: no cover
        raise RuntimeError(f"outbox message {msg.key} conflicted but is not there")
    return found


def outbox_by_key(engine: Engine, key: str) -> OutboxMessage | None:
    with Session(engine) as s:
        return s.exec(select(OutboxMessage).where(OutboxMessage.key == key)).first()


def list_outbox(engine: Engine, *, to: str | None = None, limit: int = 500) -> list[OutboxMessage]:
    """Oldest first (a conversation reads top to bottom); the newest `limit` messages."""
    with Session(engine) as s:
        stmt = select(OutboxMessage)
        if to:
            stmt = stmt.where(
                OutboxMessage.to_address == normalize_address("email" if "@" in to else "sms", to)
            )
        rows = s.exec(stmt.order_by(col(OutboxMessage.id).desc()).limit(limit)).all()
    return list(reversed(rows))


# ---- inbound -----------------------------------------------------------------------------
def record_inbound(
    engine: Engine,
    *,
    provider: str,
    provider_message_id: str,
    channel: str,
    from_address: str,
    to_address: str = "",
    body: str = "",
    received_at: datetime | None = None,
) -> bool:
    """Store a customer's message; False when this provider message id was seen before."""
    row = InboundMessage(
        provider=provider,
        provider_message_id=provider_message_id,
        channel=channel,
        from_address=normalize_address(channel, from_address),
        to_address=to_address,
        body=body,
        received_at=received_at or utcnow(),
    )
    with Session(engine) as s:
        s.add(row)
        try:
            s.commit()
            return True
        except IntegrityError:
            s.rollback()
            return False


def last_inbound_at(engine: Engine, *, channel: str, from_address: str) -> datetime | None:
    with Session(engine) as s:
        return s.exec(
            select(sa.func.max(InboundMessage.received_at)).where(
                InboundMessage.channel == channel,
                InboundMessage.from_address == normalize_address(channel, from_address),
            )
        ).first()


# ---- SendGrid events ---------------------------------------------------------------------
def apply_sendgrid_event(
    engine: Engine,
    *,
    sg_event_id: str,
    event: str,
    status: str | None,
    key: str | None,
    provider_message_id: str | None,
    error_code: str | None = None,
) -> bool:
    """Mark the event seen and apply its status in one transaction. False for a duplicate."""
    with Session(engine) as s:
        s.add(SendgridEventSeen(sg_event_id=sg_event_id, event=event, notification_key=key))
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            return False
        row = None
        if key or provider_message_id:
            stmt = select(NotificationLog).with_for_update()
            if key:
                stmt = stmt.where(NotificationLog.key == key)
            else:
                # SendGrid's sg_message_id is our X-Message-Id plus ".filter..." suffixes.
                stmt = stmt.where(
                    NotificationLog.provider_message_id == (provider_message_id or "").split(".")[0]
                )
            row = s.exec(stmt).first()
        if row is not None and status and delivery_status_applies(row.delivery_status, status):
            row.delivery_status = status
            row.delivery_updated_at = row.updated_at = utcnow()
            if status in DELIVERY_FAILURES and error_code:
                row.error_code = error_code
            s.add(row)
        try:
            s.commit()
        except IntegrityError:  # a concurrent request recorded the same event first
            s.rollback()
            return False
        return True
