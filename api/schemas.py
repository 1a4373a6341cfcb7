"""Request and response bodies of the public API (the OpenAPI contract)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"


class Payment(BaseModel):
    mode: Literal["cod", "prepaid"] = "prepaid"
    amount: str = Field("0", description="Order value as a decimal string, e.g. \"1299.00\"")
    currency: str = Field("INR", min_length=3, max_length=3)

    @field_validator("amount")
    @classmethod
    def _decimal(cls, v: str) -> str:
        try:
            d = Decimal(v)
        except (InvalidOperation, TypeError):
            raise ValueError("amount must be a decimal number such as 1299.00") from None
        if d < 0 or not d.is_finite():
            raise ValueError("amount must be a non-negative number")
        return str(d)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError("currency must be an ISO-4217 code such as INR")
        return v.upper()


class Address(BaseModel):
    model_config = ConfigDict(extra="allow")
    line1: str = Field(min_length=1, max_length=300)
    line2: str | None = Field(None, max_length=300)
    landmark: str | None = Field(None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str | None = Field(None, max_length=100)
    postal_code: str = Field(min_length=3, max_length=12)
    country: str = Field("IN", min_length=2, max_length=2, description="ISO-3166 alpha-2")

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError("country must be an ISO-3166 alpha-2 code such as IN")
        return v.upper()


class Customer(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(None, max_length=32, description="Any common format; stored as E.164")
    email: EmailStr | None = None
    locale: str = Field("en", max_length=16, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    whatsapp_opt_in: bool = False


class ShipmentCreate(BaseModel):
    merchant_id: str = Field(pattern=ID_PATTERN)
    # Printable only: it appears in SMS bodies, email HTML and tracking URLs.
    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    carrier: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    tracking_number: str = Field(pattern=ID_PATTERN)
    payment: Payment = Payment()
    customer: Customer
    address: Address
    promised_delivery_date: date | None = None

    @model_validator(mode="after")
    def _contact(self) -> ShipmentCreate:
        # The phone is normalised to E.164 in the route, with the merchant's default region.
        if self.customer.phone is None and self.customer.email is None:
            raise ValueError("customer needs a phone or an email to be notified")
        return self


class ShipmentCreated(BaseModel):
    shipment_id: str
    workflow_id: str
    status: str


class CarrierEventIn(BaseModel):
    tracking_number: str = Field(pattern=ID_PATTERN)
    event_id: str | None = Field(None, max_length=128)
    status: str = Field(max_length=32, description="one of our milestones; anything else is kept as `unknown`")
    ndr_reason: str | None = Field(None, max_length=48)
    occurred_at: str = Field(description="ISO-8601 with offset, e.g. 2026-11-28T09:10:00+05:30")
    location: str | None = Field(None, max_length=200)
    raw_code: str | None = Field(None, max_length=64)
    raw_status: str | None = Field(None, max_length=300)
    attempt: int | None = Field(None, ge=1, le=20)

    @field_validator("occurred_at")
    @classmethod
    def _iso(cls, v: str) -> str:
        from datetime import datetime

        if not re.match(r"^\d{4}-\d{2}-\d{2}T", v):
            raise ValueError("occurred_at must be ISO-8601 date and time, e.g. 2026-11-28T09:10:00+05:30")
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("occurred_at is not a valid ISO-8601 time") from None
        return v


class CarrierEventsIn(BaseModel):
    events: list[CarrierEventIn] = Field(min_length=1, max_length=1000)


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int
    pending_registration: int = 0
    unknown_codes: int = 0


class ShipmentView(BaseModel):
    shipment_id: str
    workflow_id: str
    merchant_id: str
    order_id: str
    carrier: str
    tracking_number: str
    status: str
    last_event_at: str | None = None
    needs_attention: bool = False
    attention_reason: str | None = None
    timeline: list[dict[str, Any]] = []
    search_attributes: dict[str, Any] = {}
    notifications: list[dict[str, Any]] = []
    ndr_cases: list[dict[str, Any]] = []
    closed: bool = False
