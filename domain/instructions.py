"""NDR instructions to carriers: what the workflow decides and what the carrier said (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEND_CARRIER_INSTRUCTION = "send_carrier_instruction"
EMAIL_CARRIER_OPS = "email_carrier_ops"
POLL_CARRIER_TRACKING = "poll_carrier_tracking"

# ApplicationError types the workflow can match on (activities/instruct.py raises them).
CARRIER_UNAVAILABLE = "CarrierUnavailable"  # timeout / 5xx / 429: retried with backoff


@dataclass
class Instruction:
    action: str  # domain.taxonomy.NdrAction value
    requested_date: str | None = None  # YYYY-MM-DD, for reschedule
    phone: str | None = None  # E.164, for update_phone
    address: dict[str, Any] | None = None  # {"line1","line2","city","postal_code","landmark"}, for update_address
    comments: str = ""
    source: str = "customer"  # customer | merchant_rule | agent


@dataclass
class SendInstructionInput:
    shipment_id: str
    carrier: str
    tracking_number: str
    attempt: int  # the NDR attempt this answers
    idempotency_key: str  # f"{shipment_id}:ndr{attempt}:{seq}": never re-sent once acknowledged
    instruction: Instruction
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InstructionResult:
    # "accepted" | "rejected" | "unsupported", or "emailed" from the operations-email fallback
    # (sent to the carrier's desk, not yet acknowledged by anyone).
    status: str
    carrier_reference: str | None = None  # e.g. Delhivery UPL id
    detail: str = ""
    http_status: int | None = None


@dataclass
class PollTrackingInput:
    """Ask the carrier's tracking API for a shipment that has been quiet too long."""

    shipment_id: str
    carrier: str
    tracking_number: str


@dataclass
class EmailCarrierOpsInput:
    """Email the instruction report to the carrier's operations desk (fallback after a rejection,
    an unsupported action, or a carrier that stayed down). Sent once per instruction key."""

    instruction: SendInstructionInput
    why: str = ""
