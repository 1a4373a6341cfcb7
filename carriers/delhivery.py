"""Delhivery: tracking push (StatusType and Status read together, NSL code for NDR reasons),
NDR API (asynchronous: POST /api/p/update, then follow the UPL id), tracking pull as a backstop.

Push payload (reference section 4)::

    {"Shipment": {"AWB": "...", "ReferenceNo": "...", "NSLCode": "EOD-11",
                  "Status": {"Status": "Pending", "StatusType": "UD",
                             "StatusDateTime": "2026-11-28T19:40:12.000", "StatusLocation": "...",
                             "Instructions": "Consignee unavailable"},
                  "PickUpDate": "...", "Sortcode": "..."}}

Delhivery sends Indian local time without an offset: it is converted as IST, never read as UTC.
Authentication: Delhivery has no signature; a static shared secret you name in their
requirement doc, which we ask them to send in the ``X-Delhivery-Token`` header (configurable).
A failed push is retried once and then dropped, hence `poll_tracking` (GET /api/v1/packages/json/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from carriers.base import (
    IST,
    UNKNOWN_REASON,
    UNKNOWN_STATUS,
    CarrierUnavailable,
    CodeTable,
    Problem,
    WebhookFormatError,
    WebhookRequest,
    call,
    check_shared_secret,
    hashed_event_id,
    load_json,
    national_in,
    opt_str,
    reason_from_text,
    rejected,
    require_obj,
    require_str,
    response_json,
    short,
    to_utc,
    unsupported,
)
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import Milestone, NdrAction, NdrReason

log = logging.getLogger(__name__)

CODE = "delhivery"
DEFAULT_WEBHOOK_HEADER = "x-delhivery-token"
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f")


class TrackingStatus(CodeTable):
    """Keyed on "StatusType/Status": `In Transit` is forward under UD but a return under RT."""

    created = (
        "UD/Manifested",  # label/manifest created, not handed over
        "UD/Not Picked",  # not picked up yet (with an NSL code: a failed pickup, see parse)
        "PP/Open",  # reverse pickup requested
        "PP/Scheduled",  # reverse pickup scheduled
        "PP/Dispatched",  # reverse pickup: agent out for pickup
    )
    in_transit = (
        "UD/In Transit",  # forward, moving through the network (first one = picked up)
        "UD/Pending",  # forward, at a hub (with an EOD-* NSL: a failed attempt, see parse)
        "PU/In Transit",  # reverse pickup collected, moving
        "PU/Pending",  # reverse pickup at a hub
    )
    out_for_delivery = (
        "UD/Dispatched",  # forward, out for delivery
        "PU/Dispatched",  # reverse, out for delivery to the seller
    )
    delivered = (
        "DL/Delivered",  # forward delivered to the consignee
        "DL/DTO",  # reverse pickup delivered to origin
    )
    rto_initiated = ("RT/In Transit",)  # return to origin started / moving back
    rto_in_transit = (
        "RT/Pending",  # return at a hub
        "RT/Dispatched",  # return out for delivery to the seller
    )
    rto_delivered = ("DL/RTO",)  # returned to the seller
    cancelled = (
        "CN/Canceled",  # cancelled before handover (Delhivery's spelling)
        "CN/Cancelled",  # same, other spelling
    )
    unknown = ()


class IncidentReason(CodeTable):
    """NSL codes. Delhivery publishes only which NSLs allow RE-ATTEMPT; meanings below come from
    third-party code and disagree in places (reference 2.2 caveat). The `Instructions` text is
    the second key when the NSL is not here."""

    customer_unavailable = ("EOD-11",)  # consignee unavailable
    customer_unreachable = ("EOD-43",)  # consignee not reachable on phone [code]
    address_issue = ("EOD-74",)  # bad / incomplete address
    reschedule_requested = ("EOD-3",)  # consignee asked for future delivery [code]
    payment_issue = (
        "EOD-40",  # COD cash not ready [code]
        "EOD-53",  # COD amount dispute [code]
    )
    access_restricted = ("EOD-104",)  # entry restricted [code]
    open_delivery_requested = ("EOD-69",)  # consignee wants open delivery [code]
    customer_refused = (
        "EOD-6",  # refused / cancelled at the door [code]
        "EOD-111",  # refused [code]
    )
    not_attempted = ("EOD-86",)  # not attempted by the agent [code]
    unknown = ()


# Canonical action -> Delhivery `act`. RE-ATTEMPT is on the current portal; DEFER_DLV and
# EDIT_DETAILS are from the older docs only (Delhivery may reject them: that is recorded as a
# rejection and escalated). There is no RTO in Delhivery's NDR API.
ACTS: dict[str, str] = {
    NdrAction.reattempt: "RE-ATTEMPT",
    NdrAction.reschedule: "DEFER_DLV",
    NdrAction.update_address: "EDIT_DETAILS",
    NdrAction.update_phone: "EDIT_DETAILS",
}
supported_actions: frozenset[str] = frozenset(ACTS)
UNSUPPORTED_WHY = {
    NdrAction.rto: "Delhivery's NDR API has no return-to-origin; RTO happens when attempts run out",
    NdrAction.hold_for_pickup: "Delhivery's NDR API has no hold-for-pickup",
}


def verify_webhook(req: WebhookRequest, secret: str, header: str = DEFAULT_WEBHOOK_HEADER) -> None:
    check_shared_secret(req, header, secret, CODE)


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    doc = load_json(req.body)
    # One shipment per push is documented; a list of them is accepted too.
    items = doc if isinstance(doc, list) else [doc]
    events: list[CarrierEvent] = []
    problems: list[Problem] = []
    for i, raw in enumerate(items):
        where = "body" if len(items) == 1 and not isinstance(doc, list) else f"body[{i}]"
        shipment = require_obj(require_obj(raw, where).get("Shipment"), f"{where}.Shipment")
        awb = require_str(shipment, "AWB", f"{where}.Shipment")
        status = require_obj(shipment.get("Status"), f"{where}.Shipment.Status")
        ev, probs = _event(
            awb,
            status_type=require_str(status, "StatusType", f"{where}.Shipment.Status"),
            status=require_str(status, "Status", f"{where}.Shipment.Status"),
            when=status.get("StatusDateTime"),
            location=opt_str(status, "StatusLocation"),
            instructions=opt_str(status, "Instructions"),
            nsl=opt_str(shipment, "NSLCode") or opt_str(status, "StatusCode"),
            where=f"{where}.Shipment.Status.StatusDateTime",
        )
        events.append(ev)
        problems.extend(probs)
    return events, problems


def _event(
    awb: str,
    *,
    status_type: str,
    status: str,
    when: Any,
    location: str | None,
    instructions: str | None,
    nsl: str | None,
    where: str,
) -> tuple[CarrierEvent, list[Problem]]:
    code = f"{status_type.strip().upper()}/{status.strip()}"
    occurred = to_utc(when, local=IST, formats=TIME_FORMATS, where=where)
    problems: list[Problem] = []
    member = TrackingStatus.find(code)
    reason: str | None = None
    if member is None or member is TrackingStatus.unknown:
        problems.append(Problem(UNKNOWN_STATUS, f"unknown Delhivery status {code!r}", code))
        milestone = Milestone.unknown
    else:
        milestone = Milestone(member.name)
        is_ndr_nsl = bool(nsl and nsl.upper().startswith("EOD-"))
        if code.upper() == "UD/PENDING" and is_ndr_nsl:
            # A forward package back "Pending" with an end-of-day NSL is a failed attempt.
            milestone = Milestone.delivery_failed
        elif code.upper() == "UD/NOT PICKED" and nsl:
            milestone = Milestone.pickup_failed
    if milestone is Milestone.delivery_failed:
        found = IncidentReason.find(nsl)
        if found is not None:
            reason = found.name
        else:
            problems.append(Problem(UNKNOWN_REASON, f"unknown Delhivery NSL {nsl!r}", nsl))
            reason = (reason_from_text(instructions) or NdrReason.unknown).value
    event = CarrierEvent(
        carrier=CODE,
        tracking_number=awb,
        milestone=milestone.value,
        occurred_at=occurred,
        event_id=hashed_event_id(CODE, awb, f"{code}|{nsl or ''}", occurred),
        ndr_reason=reason,
        raw_code=f"{code}|{nsl}" if nsl else code,
        raw_status=instructions or status,
        location=location,
    )
    return event, problems


# --- NDR API ------------------------------------------------------------------------------------


def _headers(cfg: CarrierSettings) -> dict[str, str]:
    return {"Authorization": f"Token {cfg.delhivery_api_token}", "Content-Type": "application/json"}


def update_body(inp: SendInstructionInput) -> dict[str, Any]:
    ins = inp.instruction
    item: dict[str, Any] = {"waybill": inp.tracking_number, "act": ACTS[ins.action]}
    data: dict[str, Any] = {}
    if ins.action == NdrAction.reschedule:
        data["deferred_date"] = ins.requested_date
    elif ins.action in (NdrAction.update_address, NdrAction.update_phone):
        if ins.phone:
            data["phone"] = national_in(ins.phone)
        if ins.address:
            data["add"] = ", ".join(
                str(ins.address[k])
                for k in ("line1", "line2", "landmark", "city", "postal_code")
                if ins.address.get(k)
            )
        if inp.extra.get("name"):
            data["name"] = inp.extra["name"]
    if data:
        item["action_data"] = data
    return {"data": [item]}


async def send_instruction(
    inp: SendInstructionInput,
    cfg: CarrierSettings,
    http: httpx.AsyncClient,
    on_reference: Callable[[str], Awaitable[None]] | None = None,
) -> InstructionResult:
    """Submit, then follow the UPL until Delhivery accepts or rejects it.

    `on_reference` is awaited with the UPL id as soon as Delhivery returns it, so a retried
    activity resumes with `follow_up` instead of submitting the same action twice.
    """
    action = inp.instruction.action
    if action not in ACTS:
        return unsupported(CODE, action, UNSUPPORTED_WHY.get(action, "not in Delhivery's NDR API"))
    if action == NdrAction.reschedule and not inp.instruction.requested_date:
        return InstructionResult(
            status="rejected", detail="reschedule needs requested_date (DEFER_DLV deferred_date)"
        )
    if not cfg.delhivery_api_token:
        return unsupported(CODE, action, "no NDRFLOW_DELHIVERY_API_TOKEN configured")
    url = f"{cfg.delhivery_base_url.rstrip('/')}/api/p/update"
    resp = await call(
        http,
        "POST",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        json=update_body(inp),
        headers=_headers(cfg),
    )
    if resp.status_code >= 400:
        return rejected(resp, CODE)
    data = response_json(resp)
    upl = _find_upl(data)
    if not upl:
        # 2xx without a request id: Delhivery refused the batch synchronously (or changed shape).
        if isinstance(data, dict) and data.get("status") in (False, "false", "Failure", "failure"):
            return InstructionResult(
                status="rejected", detail=f"Delhivery: {short(resp.text)}", http_status=resp.status_code
            )
        return InstructionResult(
            status="accepted",
            detail=f"Delhivery answered {resp.status_code} without a UPL id",
            http_status=resp.status_code,
        )
    if on_reference is not None:
        await on_reference(upl)
    return await follow_up(upl, inp, cfg, http)


async def follow_up(
    upl: str, inp: SendInstructionInput, cfg: CarrierSettings, http: httpx.AsyncClient
) -> InstructionResult:
    """GET /api/cmu/get_bulk_upl/{UPL}?verbose=true until our waybill is accepted or rejected.

    Bounded: after `delhivery_upl_poll_attempts` polls still pending raises CarrierUnavailable, so
    Temporal retries the activity later (which resumes here, never re-submits).
    """
    url = f"{cfg.delhivery_base_url.rstrip('/')}/api/cmu/get_bulk_upl/{upl}"
    attempts = max(1, cfg.delhivery_upl_poll_attempts)
    for n in range(attempts):
        resp = await call(
            http,
            "GET",
            url,
            carrier=CODE,
            timeout=cfg.carrier_http_timeout_s,
            params={"verbose": "true"},
            headers=_headers(cfg),
        )
        if resp.status_code >= 400:
            return rejected(
                resp, CODE, f"Delhivery status for {upl} answered {resp.status_code}: {short(resp.text)}"
            )
        outcome, detail = upl_outcome(response_json(resp), inp.tracking_number)
        if outcome == "accepted":
            return InstructionResult(
                status="accepted", carrier_reference=upl, detail=detail, http_status=resp.status_code
            )
        if outcome == "rejected":
            return InstructionResult(
                status="rejected", carrier_reference=upl, detail=detail, http_status=resp.status_code
            )
        if n + 1 < attempts:
            await asyncio.sleep(cfg.delhivery_upl_poll_interval_s)
    raise CarrierUnavailable(f"Delhivery UPL {upl} still pending after {attempts} checks")


_UPL_KEYS = ("request_id", "upl", "UPL", "upl_id", "uplId", "requestId")
_OK = {"success", "successful", "processed", "accepted", "done", "true", "complete", "completed"}
_FAIL = {"failure", "failed", "fail", "rejected", "error", "false", "invalid"}


def _find_upl(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in _UPL_KEYS:
            if data.get(key):
                return str(data[key])
        for value in data.values():
            if isinstance(value, dict):
                found = _find_upl(value)
                if found:
                    return found
    return None


def upl_outcome(data: Any, waybill: str) -> tuple[str, str]:
    """("accepted"|"rejected"|"pending", detail) for our waybill in a get_bulk_upl answer.

    The documented answer lists per-waybill results; we look for our waybill's entry and read its
    status (or result) and remarks, tolerating the field-name variants seen in integrations.
    """
    if not isinstance(data, dict):
        return "pending", "no JSON answer yet"
    rows: list[dict[str, Any]] = []
    for key in ("results", "result", "data", "waybills", "packages"):
        value = data.get(key)
        if isinstance(value, list):
            rows.extend(r for r in value if isinstance(r, dict))
        elif isinstance(value, dict):
            rows.append(value)
    for row in rows:
        if str(row.get("waybill") or row.get("wbn") or row.get("awb") or "") != waybill:
            continue
        state = str(row.get("status", row.get("result", ""))).strip().lower()
        remarks = str(row.get("remarks") or row.get("remark") or row.get("message") or "").strip()
        if state in _OK:
            return "accepted", remarks or "accepted by Delhivery"
        if state in _FAIL:
            return "rejected", remarks or "rejected by Delhivery"
        return "pending", remarks or state
    overall = str(data.get("status", "")).strip().lower()
    if overall in _FAIL and rows == []:
        return "rejected", str(data.get("remarks") or data.get("message") or "rejected by Delhivery")
    return "pending", overall or "pending"


# --- tracking pull ------------------------------------------------------------------------------


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    """GET /api/v1/packages/json/?waybill=... : every scan of the package, mapped like pushes."""
    if not cfg.delhivery_api_token:
        return []
    url = f"{cfg.delhivery_base_url.rstrip('/')}/api/v1/packages/json/"
    resp = await call(
        http,
        "GET",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        params={"waybill": tracking_number},
        headers=_headers(cfg),
    )
    if resp.status_code >= 400:
        log.warning("Delhivery tracking answered %s", resp.status_code)
        return []
    events, _ = parse_tracking_response(response_json(resp))
    return events


def parse_tracking_response(data: Any) -> tuple[list[CarrierEvent], list[Problem]]:
    """`{"ShipmentData": [{"Shipment": {"AWB", "Status": {...}, "Scans": [{"ScanDetail": {...}}]}}]}`"""
    root = require_obj(data, "tracking answer")
    rows = root.get("ShipmentData")
    if not isinstance(rows, list):
        raise WebhookFormatError("tracking answer has no ShipmentData list")
    events: list[CarrierEvent] = []
    problems: list[Problem] = []
    for i, row in enumerate(rows):
        shipment = require_obj(
            require_obj(row, f"ShipmentData[{i}]").get("Shipment"), f"ShipmentData[{i}].Shipment"
        )
        awb = require_str(shipment, "AWB", f"ShipmentData[{i}].Shipment")
        scans = shipment.get("Scans") or []
        for j, scan in enumerate(scans if isinstance(scans, list) else []):
            detail = require_obj(require_obj(scan, "scan").get("ScanDetail"), f"Scans[{j}].ScanDetail")
            ev, probs = _event(
                awb,
                status_type=require_str(detail, "ScanType", f"Scans[{j}].ScanDetail"),
                status=require_str(detail, "Scan", f"Scans[{j}].ScanDetail"),
                when=detail.get("StatusDateTime") or detail.get("ScanDateTime"),
                location=opt_str(detail, "ScannedLocation"),
                instructions=opt_str(detail, "Instructions"),
                nsl=opt_str(detail, "StatusCode"),
                where=f"Scans[{j}].ScanDetail.StatusDateTime",
            )
            events.append(ev)
            problems.extend(probs)
        status = shipment.get("Status")
        if isinstance(status, dict) and status.get("StatusType") and status.get("Status"):
            ev, probs = _event(
                awb,
                status_type=str(status["StatusType"]),
                status=str(status["Status"]),
                when=status.get("StatusDateTime"),
                location=opt_str(status, "StatusLocation"),
                instructions=opt_str(status, "Instructions"),
                nsl=opt_str(shipment, "NSLCode") or opt_str(status, "StatusCode"),
                where="Shipment.Status.StatusDateTime",
            )
            if ev.event_id not in {e.event_id for e in events}:
                events.append(ev)
                problems.extend(probs)
    return events, problems
