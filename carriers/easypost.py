"""EasyPost tracker events (tracking only: EasyPost has no NDR or re-attempt API).

Webhook payload: an Event object (reference section 4)::

    {"id": "evt_...", "object": "Event", "description": "tracker.updated", "mode": "production",
     "result": {"object": "Tracker", "tracking_code": "9400...", "status": "failure",
                "status_detail": "delivery_exception", "carrier": "USPS",
                "tracking_details": [{"status": "failure", "status_detail": "delivery_exception",
                                      "message": "Notice left", "datetime": "2026-11-28T14:10:00Z",
                                      "tracking_location": {"city": "...", "state": "..."}}]},
     "previous_attributes": {"status": "out_for_delivery"}}

One event per webhook with EasyPost's event `id` (deliveries are at-least-once: the workflow
dedupes on it), for the tracker's current status, timed by its latest tracking detail.
Events other than tracker.created / tracker.updated are acknowledged and ignored.
Authentication: ``X-Hmac-Signature: hmac-sha256-hex=<hex>``, HMAC-SHA256 of the raw body with the
webhook secret, NFKD-normalised first as EasyPost's client libraries do.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from datetime import UTC
from typing import Any

import httpx

from carriers.base import (
    UNKNOWN_REASON,
    UNKNOWN_STATUS,
    CodeTable,
    Problem,
    WebhookAuthError,
    WebhookRequest,
    load_json,
    opt_str,
    reason_from_text,
    require_obj,
    require_secret,
    require_str,
    same,
    to_utc,
    unsupported,
)
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import Milestone, NdrReason

CODE = "easypost"
SIGNATURE_HEADER = "x-hmac-signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="
TRACKER_EVENTS = frozenset({"tracker.created", "tracker.updated"})


class TrackingStatus(CodeTable):
    """Tracker `status`."""

    created = ("pre_transit",)  # label created, not yet scanned
    in_transit = ("in_transit",)  # moving (see DetailStatus for held/delayed/exceptions)
    out_for_delivery = ("out_for_delivery",)  # on the vehicle today
    delivery_failed = ("failure",)  # failed (lost/damaged via DetailStatus)
    ready_for_pickup = ("available_for_pickup",)  # at a counter or locker
    delivered = ("delivered",)  # handed over
    rto_initiated = ("return_to_sender",)  # on its way back to the sender
    cancelled = ("cancelled",)  # label cancelled
    unknown = (
        "unknown",  # EasyPost could not tell
        "error",  # EasyPost's tracking failed
    )


class DetailStatus(CodeTable):
    """`status_detail` refinements, applied when the status is in_transit or failure."""

    delivery_failed = (
        "delivery_exception",  # attempt failed (in_transit + delivery_exception is an NDR)
        "address_correction",  # address needs correcting before delivery
        "refused",  # consignee refused
    )
    on_hold = (
        "held",  # held by the carrier
        "delayed",  # delayed
        "weather_delay",  # delayed by weather
    )
    ready_for_pickup = ("arrived_at_pickup_location",)  # waiting at a pickup point
    lost = ("lost",)  # declared lost
    damaged = ("damaged",)  # declared damaged
    unknown = ()


class IncidentReason(CodeTable):
    """`status_detail` -> NDR reason (reference 2.2)."""

    customer_unavailable = ("delivery_exception",)  # generic failed attempt, most often nobody home
    address_issue = ("address_correction",)  # address problem
    customer_refused = ("refused",)  # refused at the door
    order_cancelled_by_customer = ("cancelled",)  # cancelled
    other = ("unknown", "status_update")  # nothing more specific
    unknown = ()


supported_actions: frozenset[str] = frozenset()  # tracking only: no NDR API


def sign(body: bytes, secret: str) -> str:
    key = unicodedata.normalize("NFKD", secret).encode()
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_webhook(req: WebhookRequest, secret: str) -> None:
    require_secret(secret, CODE)
    got = req.header(SIGNATURE_HEADER)
    if not got:
        raise WebhookAuthError("missing X-Hmac-Signature header")
    got = got.strip()
    if not got.lower().startswith(SIGNATURE_PREFIX):
        raise WebhookAuthError("X-Hmac-Signature must look like hmac-sha256-hex=<hex>")
    if not same(got.lower(), sign(req.body, secret)):
        raise WebhookAuthError("X-Hmac-Signature does not match the body")


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    event = require_obj(load_json(req.body), "body")
    event_id = require_str(event, "id", "body")
    description = require_str(event, "description", "body")
    if description not in TRACKER_EVENTS:
        return [], [
            Problem("ignored_event", f"EasyPost event {description!r} is not a tracker event", description)
        ]
    tracker = require_obj(event.get("result"), "body.result")
    tracking_code = require_str(tracker, "tracking_code", "body.result")
    status = require_str(tracker, "status", "body.result")
    detail = opt_str(tracker, "status_detail")
    details = tracker.get("tracking_details") if isinstance(tracker.get("tracking_details"), list) else []
    latest: dict[str, Any] = next(
        (d for d in reversed(details) if isinstance(d, dict) and d.get("datetime")), {}
    )
    when = (
        latest.get("datetime")
        or tracker.get("updated_at")
        or event.get("updated_at")
        or event.get("created_at")
    )
    occurred = to_utc(when, local=UTC, where="body.result.tracking_details[-1].datetime")
    problems: list[Problem] = []
    member = TrackingStatus.find(status)
    if member is None:
        problems.append(Problem(UNKNOWN_STATUS, f"unknown EasyPost status {status!r}", status))
        milestone = Milestone.unknown
    else:
        milestone = Milestone(member.name)
        if status in ("in_transit", "failure") and detail:
            refined = DetailStatus.find(detail)
            if refined is not None and refined is not DetailStatus.unknown:
                milestone = Milestone(refined.name)
    message = opt_str(latest, "message") or opt_str(latest, "description")
    reason = None
    if milestone is Milestone.delivery_failed:
        found = IncidentReason.find(detail) if detail else None
        if detail and found is None:
            problems.append(
                Problem(UNKNOWN_REASON, f"unmapped EasyPost status_detail {detail!r} on a failure", detail)
            )
        if found is not None and found is not IncidentReason.unknown:
            reason = found.name
            if found is IncidentReason.customer_unavailable:
                # delivery_exception is generic; the carrier's message is often more precise.
                reason = (reason_from_text(message) or NdrReason.customer_unavailable).value
        else:
            reason = (reason_from_text(message) or NdrReason.unknown).value
    loc = latest.get("tracking_location") if isinstance(latest.get("tracking_location"), dict) else {}
    location = ", ".join(str(loc[k]) for k in ("city", "state", "country") if loc.get(k)) or None
    return [
        CarrierEvent(
            carrier=CODE,
            tracking_number=tracking_code,
            milestone=milestone.value,
            occurred_at=occurred,
            event_id=event_id,
            ndr_reason=reason,
            raw_code=f"{status}/{detail}" if detail else status,
            raw_status=message,
            location=location,
        )
    ], problems


async def send_instruction(
    inp: SendInstructionInput, cfg: CarrierSettings, http: httpx.AsyncClient
) -> InstructionResult:
    return unsupported(
        CODE, inp.instruction.action, "EasyPost is tracking only (no NDR API); use the email fallback"
    )


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    return []
