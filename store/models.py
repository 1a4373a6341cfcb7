"""Foundation tables: API keys, the shipments read model, carrier events waiting for a
registration, and the log of refused requests. Feature areas add their tables in their own
modules (store/<area>.py) and import them in store/all_models.py so Alembic sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: object) -> datetime | None:
    """A datetime or ISO-8601 string as an aware datetime; naive ones are UTC (SQLite hands
    stored datetimes back naive). None for an empty or unparsable value."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    # The first characters of the key, shown in listings and used to find the row; the key
    # itself is only stored as a SHA-256 hash (keys are 256-bit random, so no slow hash needed).
    prefix: str = Field(index=True, max_length=16)
    key_hash: str = Field(unique=True, max_length=64)
    scope: str = Field(max_length=16)  # merchant | carrier | agent
    merchant_id: str | None = Field(default=None, max_length=64)
    carrier: str | None = Field(default=None, max_length=32)
    name: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class Shipment(SQLModel, table=True):
    """Read model and customer contact details. Personal data lives here, never in workflow ids,
    search attributes or (unencrypted) history: activities look it up by shipment_id."""

    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("carrier", "tracking_number", name="uq_shipments_carrier_tracking"),)

    shipment_id: str = Field(primary_key=True, max_length=40)
    workflow_id: str = Field(max_length=64)
    merchant_id: str = Field(index=True, max_length=64)
    carrier: str = Field(max_length=32)
    tracking_number: str = Field(max_length=64)
    order_id: str = Field(default="", max_length=64)
    status: str = Field(default="created", max_length=32)
    ndr_state: str | None = Field(default=None, max_length=32)
    needs_attention: bool = False
    attention_reason: str | None = Field(default=None, max_length=48)
    customer_name: str = Field(default="", max_length=200)
    customer_phone: str | None = Field(default=None, max_length=20)  # E.164
    customer_email: str | None = Field(default=None, max_length=254)
    customer_locale: str = Field(default="en", max_length=16)
    customer_timezone: str = Field(default="UTC", max_length=64)
    whatsapp_opt_in: bool = False
    address: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    payment_mode: str = Field(default="prepaid", max_length=16)
    payment_amount: str = Field(default="0", max_length=24)
    payment_currency: str = Field(default="INR", max_length=3)
    promised_delivery_date: str | None = Field(default=None, max_length=10)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_event_at: datetime | None = None
    closed: bool = False


class CarrierEventLog(SQLModel, table=True):
    """Every carrier event we accepted, keyed by its dedupe key (carrier event id, or code+time).

    Doubles as the waiting room for events whose (carrier, tracking number) nobody has registered
    yet (shipment_id empty): they are delivered when the registration arrives. `delivered_at` is
    set only after the workflow got the signal, so a carrier retry after a failed signal is
    delivered again rather than dropped as a duplicate (the workflow dedupes too)."""

    __tablename__ = "carrier_events"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_carrier_events_dedupe_key"),
        Index("ix_carrier_events_carrier_tracking", "carrier", "tracking_number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200)
    carrier: str = Field(max_length=32)
    tracking_number: str = Field(max_length=64)
    shipment_id: str | None = Field(default=None, max_length=40, index=True)
    event: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None


class RefusedRequest(SQLModel, table=True):
    """Every 4xx we answer is recorded: what was refused, why, and from where (no bodies: PII)."""

    __tablename__ = "refused_requests"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    method: str = Field(max_length=8)
    path: str = Field(max_length=300)
    status_code: int
    reason: str = Field(max_length=1000)
    client: str = Field(default="", max_length=64)
