"""A carrier tracking event after an adapter has normalised it (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass
class CarrierEvent:
    carrier: str
    tracking_number: str
    milestone: str  # a domain.taxonomy.Milestone value ("unknown" when unmapped)
    occurred_at: str  # ISO-8601 in UTC, see normalise_time()
    event_id: str | None = None
    ndr_reason: str | None = None  # a domain.taxonomy.NdrReason value when milestone is delivery_failed
    raw_code: str | None = None
    raw_status: str | None = None
    location: str | None = None
    attempt: int | None = None  # the carrier's attempt count, when it sends one


def normalise_time(value: str | datetime) -> str:
    """ISO-8601 in UTC with a fixed shape, so string order is time order.

    Naive times are taken as UTC; adapters whose carriers send local time convert first.
    """
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
