"""Generic carrier: our own JSON contract, for any carrier without an adapter.

Inbound (POST /v1/carriers/generic/events)::

    {"events": [{"tracking_number": "TRK1001", "event_id": "e1", "status": "out_for_delivery",
                 "ndr_reason": null, "occurred_at": "2026-11-28T09:10:00+05:30",
                 "location": "Bengaluru", "raw_code": "OFD", "raw_status": "Out for delivery",
                 "attempt": 1}]}

`status` is one of our milestones, `ndr_reason` one of our NDR reasons (domain/taxonomy.py).
`tracking_number`, `status` and `occurred_at` are required; `occurred_at` should carry an offset
(a naive time is taken as UTC). Without `event_id` the event id is a hash of
(tracking_number, status, occurred_at).

Authentication: header ``X-Ndrflow-Signature: sha256=<hex>``, the lower-case hex HMAC-SHA256 of
the raw request body under the shared secret (NDRFLOW_GENERIC_WEBHOOK_SECRET). Example::

    sig=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    curl -H "X-Ndrflow-Signature: sha256=$sig" -d "$BODY" .../v1/carriers/generic/events

(The API also accepts a carrier-scoped API key instead; that check lives in api/.)

Outbound: we POST the instruction as JSON to NDRFLOW_GENERIC_INSTRUCTION_URL, signed the same
way, with an ``Idempotency-Key`` header that stays the same across retries; any 2xx is accepted
(`reference` or `id` in the answer becomes the carrier reference). Polling:
``GET {NDRFLOW_GENERIC_BASE_URL}/tracking/{tracking_number}`` answering the inbound shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC
from typing import Any
from urllib.parse import quote

import httpx

from carriers.base import (
    UNKNOWN_REASON,
    UNKNOWN_STATUS,
    CodeTable,
    Problem,
    WebhookAuthError,
    WebhookFormatError,
    WebhookRequest,
    call,
    hashed_event_id,
    load_json,
    opt_str,
    reason_from_text,
    rejected,
    require_obj,
    require_secret,
    require_str,
    response_json,
    same,
    to_utc,
    unsupported,
)
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import Milestone, NdrAction, NdrReason

log = logging.getLogger(__name__)

CODE = "generic"
SIGNATURE_HEADER = "x-ndrflow-signature"
SIGNATURE_PREFIX = "sha256="


class TrackingStatus(CodeTable):
    # Our contract sends our own milestone names, so each member lists exactly itself.
    created = ("created",)  # label exists, carrier hasn't the parcel
    pickup_failed = ("pickup_failed",)  # carrier could not collect
    picked_up = ("picked_up",)  # carrier has the parcel
    in_transit = ("in_transit",)  # moving through the network
    out_for_delivery = ("out_for_delivery",)  # with the last-mile agent
    delivery_failed = ("delivery_failed",)  # failed attempt (NDR), see IncidentReason
    ready_for_pickup = ("ready_for_pickup",)  # at a counter or locker
    on_hold = ("on_hold",)  # held or delayed without an attempt
    delivered = ("delivered",)  # handed over
    rto_initiated = ("rto_initiated",)  # return to origin decided
    rto_in_transit = ("rto_in_transit",)  # travelling back
    rto_delivered = ("rto_delivered",)  # back at the seller
    cancelled = ("cancelled",)  # cancelled before handover
    lost = ("lost",)  # declared lost
    damaged = ("damaged",)  # declared damaged
    unknown = ()  # explicit: anything else


class IncidentReason(CodeTable):
    customer_unavailable = ("customer_unavailable",)
    customer_unreachable = ("customer_unreachable",)
    address_issue = ("address_issue",)
    reschedule_requested = ("reschedule_requested",)
    payment_issue = ("payment_issue",)
    premises_closed = ("premises_closed",)
    access_restricted = ("access_restricted",)
    verification_failed = ("verification_failed",)
    self_collect_requested = ("self_collect_requested",)
    open_delivery_requested = ("open_delivery_requested",)
    customer_refused = ("customer_refused",)
    order_cancelled_by_customer = ("order_cancelled_by_customer",)
    out_of_delivery_area = ("out_of_delivery_area",)
    not_attempted = ("not_attempted",)
    other = ("other",)
    unknown = ()


# Our contract: the receiver gets our canonical action and decides; nothing is unsupported.
supported_actions: frozenset[str] = frozenset(a.value for a in NdrAction)


def sign(body: bytes, secret: str) -> str:
    """The header value for `body`: ``sha256=<hex>``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook(req: WebhookRequest, secret: str) -> None:
    key = require_secret(secret, CODE)
    got = req.header(SIGNATURE_HEADER)
    if not got:
        raise WebhookAuthError("missing X-Ndrflow-Signature header")
    got = got.strip()
    if not got.lower().startswith(SIGNATURE_PREFIX):
        raise WebhookAuthError("X-Ndrflow-Signature must look like sha256=<hex>")
    expected = hmac.new(key, req.body, hashlib.sha256).hexdigest()
    if not same(got[len(SIGNATURE_PREFIX) :].lower(), expected):
        raise WebhookAuthError("X-Ndrflow-Signature does not match the body")


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    return parse_events(load_json(req.body))


def parse_events(doc: Any) -> tuple[list[CarrierEvent], list[Problem]]:
    root = require_obj(doc, "body")
    items = root.get("events")
    if not isinstance(items, list) or not items:
        raise WebhookFormatError("events must be a non-empty list")
    events: list[CarrierEvent] = []
    problems: list[Problem] = []
    for i, raw in enumerate(items):
        where = f"events[{i}]"
        item = require_obj(raw, where)
        tracking = require_str(item, "tracking_number", where)
        status = require_str(item, "status", where)
        occurred = to_utc(item.get("occurred_at"), local=UTC, where=f"{where}.occurred_at")
        raw_status = opt_str(item, "raw_status")
        member = TrackingStatus.find(status)
        if member is None or member is TrackingStatus.unknown:
            problems.append(Problem(UNKNOWN_STATUS, f"{where}: unknown status {status!r}", status))
            milestone = Milestone.unknown
        else:
            milestone = Milestone(member.name)
        reason: str | None = None
        if milestone is Milestone.delivery_failed:
            raw_reason = opt_str(item, "ndr_reason")
            found = IncidentReason.find(raw_reason) if raw_reason else None
            if raw_reason and found is None:
                problems.append(
                    Problem(UNKNOWN_REASON, f"{where}: unknown ndr_reason {raw_reason!r}", raw_reason)
                )
            if found is not None:
                reason = found.name
            else:
                reason = (reason_from_text(raw_status) or NdrReason.unknown).value
        attempt = item.get("attempt")
        events.append(
            CarrierEvent(
                carrier=CODE,
                tracking_number=tracking,
                milestone=milestone.value,
                occurred_at=occurred,
                event_id=opt_str(item, "event_id") or hashed_event_id(CODE, tracking, status, occurred),
                ndr_reason=reason,
                raw_code=opt_str(item, "raw_code") or status,
                raw_status=raw_status,
                location=opt_str(item, "location"),
                attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
            )
        )
    return events, problems


def instruction_body(inp: SendInstructionInput) -> dict[str, Any]:
    ins = inp.instruction
    return {
        "idempotency_key": inp.idempotency_key,
        "shipment_id": inp.shipment_id,
        "carrier": inp.carrier,
        "tracking_number": inp.tracking_number,
        "attempt": inp.attempt,
        "action": ins.action,
        "requested_date": ins.requested_date,
        "phone": ins.phone,
        "address": ins.address,
        "comments": ins.comments,
        "source": ins.source,
    }


async def send_instruction(
    inp: SendInstructionInput, cfg: CarrierSettings, http: httpx.AsyncClient
) -> InstructionResult:
    if inp.instruction.action not in supported_actions:
        return unsupported(CODE, inp.instruction.action, "not a canonical action")
    url = cfg.generic_instruction_target
    if not url:
        return unsupported(CODE, inp.instruction.action, "no NDRFLOW_GENERIC_INSTRUCTION_URL configured")
    secret = cfg.generic_signing_secret
    if not secret:
        return unsupported(CODE, inp.instruction.action, "no generic signing secret configured")
    # Serialise once: the signature covers exactly the bytes we send.
    body = json.dumps(instruction_body(inp), separators=(",", ":"), sort_keys=True).encode()
    resp = await call(
        http,
        "POST",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Ndrflow-Signature": sign(body, secret),
            "Idempotency-Key": inp.idempotency_key,
        },
    )
    if resp.status_code >= 400:
        return rejected(resp, CODE)
    data = response_json(resp)
    ref = None
    if isinstance(data, dict):
        ref = data.get("reference") or data.get("id")
    return InstructionResult(
        status="accepted",
        carrier_reference=str(ref) if ref is not None else None,
        detail=f"{CODE} answered {resp.status_code}",
        http_status=resp.status_code,
    )


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    if not cfg.generic_base_url:
        return []
    url = f"{cfg.generic_base_url.rstrip('/')}/tracking/{quote(tracking_number, safe='')}"
    resp = await call(http, "GET", url, carrier=CODE, timeout=cfg.carrier_http_timeout_s)
    if resp.status_code >= 400:  # 404: the carrier doesn't know it (yet); other 4xx: our config
        log.warning("%s tracking for a shipment answered %s", CODE, resp.status_code)
        return []
    data = response_json(resp)
    if isinstance(data, dict) and data.get("events") == []:
        return []
    events, _problems = parse_events(data)
    return events
