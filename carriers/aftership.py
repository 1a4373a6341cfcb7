"""AfterShip tracking webhooks (tracking only: AfterShip has no NDR or re-attempt API).

Webhook payload (reference section 4)::

    {"event": "tracking_update", "event_id": "9f1c...-uuid", "is_tracking_first_tag": false,
     "ts": 1796023212,
     "msg": {"tracking_number": "...", "slug": "delhivery", "tag": "AttemptFail",
             "subtag": "AttemptFail_002", "subtag_message": "Customer not available",
             "checkpoints": [{"checkpoint_time": "2026-11-28T19:40:12+05:30", "tag": "AttemptFail",
                              "subtag": "AttemptFail_002", "message": "Consignee unavailable",
                              "location": "Bengaluru"}]}}

One event per webhook with AfterShip's `event_id`. The subtag is the code; a subtag we don't
know (AfterShip adds them over time, e.g. Exception_016) is mapped by its tag and reported.
Time: the latest checkpoint's time when it carries an offset; AfterShip sends some checkpoint
times as naive local time of an unknown zone, and then we use the webhook's `ts` rather than guess.
Events other than tracking_update (edd_revise, tracking_pending_time) are ignored.
Authentication: ``aftership-hmac-sha256`` = base64 HMAC-SHA256 of the raw body with the
webhook secret (organisations created before Oct 2022 get ``am-webhook-signature:
hmac-sha256=<base64>``; accepted too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import httpx

from carriers.base import (
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

CODE = "aftership"
SIGNATURE_HEADER = "aftership-hmac-sha256"
LEGACY_HEADER = "am-webhook-signature"
LEGACY_PREFIX = "hmac-sha256="
TRACKING_EVENTS = frozenset({"tracking_update"})


class TrackingStatus(CodeTable):
    """AfterShip subtags (reference 2.1); tags map via TAG_FALLBACK when a subtag is new to us."""

    created = (
        "InfoReceived_001",  # info received, awaiting pickup
        "Pending_001",  # pending: no information from the carrier yet
        "Pending_002",  # pending (AfterShip variant 002; all Pending_* mean "nothing scanned yet")
        "Pending_003",  # pending (variant 003)
        "Pending_004",  # pending (variant 004)
        "Pending_005",  # pending (variant 005)
        "Pending_006",  # pending (variant 006)
    )
    pickup_failed = ("Exception_008",)  # pickup missed
    picked_up = ("InTransit_002",)  # picked up / accepted by the carrier
    in_transit = (
        "InTransit_001",  # in transit
        "InTransit_003",  # arrived at a facility
        "InTransit_004",  # arrived at destination country/region
        "InTransit_005",  # customs clearance completed
        "InTransit_006",  # customs clearance started
        "InTransit_007",  # departed a facility
        "InTransit_008",  # problem resolved, moving again
        "InTransit_009",  # forwarded to a different delivery address
    )
    out_for_delivery = (
        "OutForDelivery_001",  # out for delivery
        "OutForDelivery_003",  # customer contacted before delivery
        "OutForDelivery_004",  # delivery appointment scheduled
    )
    delivery_failed = (
        "AttemptFail_001",  # delivery attempt failed (generic: reason from the text)
        "AttemptFail_002",  # recipient not available
        "AttemptFail_003",  # business closed
        "Exception_001",  # delivery exception, unspecified
        "Exception_002",  # customer moved
        "Exception_003",  # refused by the customer
        "Exception_007",  # incorrect address
    )
    ready_for_pickup = ("AvailableForPickup_001",)  # at a pickup point
    on_hold = (
        "Exception_004",  # held: customs
        "Exception_005",  # delayed: external factors
        "Exception_006",  # held for payment
        "Exception_009",  # rejected by carrier (e.g. out of area), held
    )
    delivered = (
        "Delivered_001",  # delivered
        "Delivered_002",  # picked up by the customer
        "Delivered_003",  # signed by the customer
        "Delivered_004",  # left at the front door / safe place
        "Delivered_005",  # delivered (newer API versions)
    )
    rto_initiated = ("Exception_010",)  # returning to sender
    rto_delivered = ("Exception_011",)  # returned to sender
    damaged = ("Exception_012",)  # shipment damaged
    lost = ("Exception_013",)  # shipment lost
    unknown = ("Expired_001",)  # no updates for too long: tracking expired (explicitly unknown)


# A subtag we don't list yet is mapped by its tag (AfterShip's list grows over time).
TAG_FALLBACK: dict[str, Milestone] = {
    "Pending": Milestone.created,
    "InfoReceived": Milestone.created,
    "InTransit": Milestone.in_transit,
    "OutForDelivery": Milestone.out_for_delivery,
    "AttemptFail": Milestone.delivery_failed,
    "AvailableForPickup": Milestone.ready_for_pickup,
    "Delivered": Milestone.delivered,
    "Exception": Milestone.on_hold,
    "Expired": Milestone.unknown,
}


class IncidentReason(CodeTable):
    """Subtag -> NDR reason (reference 2.2)."""

    customer_unavailable = ("AttemptFail_002",)  # recipient not available
    premises_closed = ("AttemptFail_003",)  # business closed
    address_issue = (
        "Exception_002",  # customer moved
        "Exception_007",  # incorrect address
    )
    customer_refused = ("Exception_003",)  # refused (AfterShip folds "cancelled at the door" in here)
    other = ("Exception_001",)  # unspecified exception
    unknown = ()  # AttemptFail_001 has no reason of its own: the checkpoint text decides


supported_actions: frozenset[str] = frozenset()  # tracking only: no NDR API


def sign(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_webhook(req: WebhookRequest, secret: str) -> None:
    require_secret(secret, CODE)
    got = req.header(SIGNATURE_HEADER)
    if not got:
        legacy = req.header(LEGACY_HEADER)
        if legacy and legacy.strip().lower().startswith(LEGACY_PREFIX):
            got = legacy.strip()[len(LEGACY_PREFIX) :]
    if not got:
        raise WebhookAuthError("missing aftership-hmac-sha256 header")
    if not same(got.strip(), sign(req.body, secret)):
        raise WebhookAuthError("aftership-hmac-sha256 does not match the body")


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    doc = require_obj(load_json(req.body), "body")
    kind = require_str(doc, "event", "body")
    if kind not in TRACKING_EVENTS:
        return [], [Problem("ignored_event", f"AfterShip event {kind!r} carries no status", kind)]
    event_id = require_str(doc, "event_id", "body")
    msg = require_obj(doc.get("msg"), "body.msg")
    tracking_number = require_str(msg, "tracking_number", "body.msg")
    tag = require_str(msg, "tag", "body.msg")
    subtag = opt_str(msg, "subtag")
    checkpoints = msg.get("checkpoints") if isinstance(msg.get("checkpoints"), list) else []
    latest: dict[str, Any] = next((c for c in reversed(checkpoints) if isinstance(c, dict)), {})
    occurred = _occurred(latest.get("checkpoint_time"), doc.get("ts"))
    problems: list[Problem] = []
    member = TrackingStatus.find(subtag) if subtag else None
    if member is not None:
        milestone = Milestone(member.name)
    elif tag in TAG_FALLBACK:
        milestone = TAG_FALLBACK[tag]
        problems.append(
            Problem(
                "unmapped_subtag", f"AfterShip subtag {subtag!r} mapped by its tag {tag!r}", subtag or tag
            )
        )
    else:
        milestone = Milestone.unknown
        problems.append(
            Problem(UNKNOWN_STATUS, f"unknown AfterShip tag {tag!r} / subtag {subtag!r}", subtag or tag)
        )
    text = opt_str(latest, "message") or opt_str(msg, "subtag_message")
    reason = None
    if milestone is Milestone.delivery_failed:
        found = IncidentReason.find(subtag) if subtag else None
        if found is not None and found is not IncidentReason.unknown:
            reason = found.name
        else:
            reason = (reason_from_text(text) or NdrReason.unknown).value
    return [
        CarrierEvent(
            carrier=CODE,
            tracking_number=tracking_number,
            milestone=milestone.value,
            occurred_at=occurred,
            event_id=event_id,
            ndr_reason=reason,
            raw_code=subtag or tag,
            raw_status=text,
            location=opt_str(latest, "location"),
        )
    ], problems


def _occurred(checkpoint_time: Any, ts: Any) -> str:
    if isinstance(checkpoint_time, str) and checkpoint_time.strip():
        try:
            dt = datetime.fromisoformat(checkpoint_time.strip().replace("Z", "+00:00"))
        except ValueError:
            dt = None
        if dt is not None and dt.tzinfo is not None:
            return to_utc(checkpoint_time, local=UTC, where="body.msg.checkpoints[-1].checkpoint_time")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return to_utc(ts, local=UTC, where="body.ts")
    if isinstance(checkpoint_time, str) and checkpoint_time.strip():
        # Naive checkpoint time and no ts: the best we have, read as UTC.
        return to_utc(checkpoint_time, local=UTC, where="body.msg.checkpoints[-1].checkpoint_time")
    return to_utc(None, local=UTC, where="body.ts")  # raises WebhookFormatError naming the field


async def send_instruction(
    inp: SendInstructionInput, cfg: CarrierSettings, http: httpx.AsyncClient
) -> InstructionResult:
    return unsupported(
        CODE, inp.instruction.action, "AfterShip is tracking only (no NDR API); use the email fallback"
    )


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    return []
