"""ClickPost (aggregator): tracking webhook in, NDR Action Update v2 out.

Webhook payload (reference section 4)::

    {"waybill": "4152912745934", "cp_id": 4, "clickpost_status_code": 9,
     "clickpost_status_description": "FailedDelivery", "status": "Consignee not available",
     "remark": "Customer not available", "location": "Bengaluru", "timestamp": "2026-11-28T19:40:12+05:30",
     "additional": {"latest_status": {"clickpost_status_code": 6, "timestamp": "...", ...},
                    "ndr_status_code": 1, "ndr_status_description": "Customer Unavailable",
                    "notification_event_id": 3}}

ClickPost does not guarantee order, so besides the scan the push is about we also emit
`additional.latest_status` when it differs: the workflow orders by carrier time and never moves
backwards, so a stale push cannot undo a newer status. A naive timestamp is IST (ClickPost
documents IST); one with an offset keeps it. Event ids are a hash of (waybill, code, timestamp).
Authentication: the static ``webhook_key`` header set on ClickPost's dashboard (not a signature).

Outbound: POST {base}{NDRFLOW_CLICKPOST_NDR_PATH}?username=..&key=.. with
``{action, waybill, cp_id, account_code, address, landmark, drop_pincode, phone_number,
preferred_date}``; answer ``{meta: {success, message, status}}``. The v2 path was not in our
stored copy of the docs, so it is a setting (default ``/api/v2/ndr/update/``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from carriers.base import (
    IST,
    UNKNOWN_REASON,
    UNKNOWN_STATUS,
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

CODE = "clickpost"
WEBHOOK_HEADER = "webhook_key"
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S")


class TrackingStatus(CodeTable):
    """`clickpost_status_code` (reference 2.1)."""

    created = (
        "1",  # ORDER_PLACED
        "2",  # PICKUP_PENDING
        "25",  # OUT_FOR_PICKUP
        "28",  # AWB_REGISTERED
    )
    pickup_failed = ("3",)  # PICKUP_FAILED (older docs: PICKUP_CANCELLED)
    picked_up = ("4",)  # PICKED_UP
    in_transit = (
        "5",  # INTRANSIT
        "1004",  # DESTINATION_HUB_IN
        "30",  # EXCHANGE_* on the exchange leg (Delhivery reverse only)
        "31",  # EXCHANGE_* on the exchange leg (Delhivery reverse only)
    )
    out_for_delivery = ("6",)  # OUT_FOR_DELIVERY
    delivery_failed = (
        "9",  # FAILED_DELIVERY (reason in additional.ndr_status_code)
        "7",  # NOT_SERVICEABLE (reason: out_of_delivery_area)
    )
    on_hold = (
        "18",  # SHIPMENT_DELAYED
        "19",  # CONTACT_CUSTOMER_CARE
        "20",  # SHIPMENT_HELD
    )
    delivered = (
        "8",  # DELIVERED
        "32",  # EXCHANGE_* delivered on the exchange leg
    )
    rto_initiated = (
        "11",  # RTO_REQUESTED
        "12",  # RTO (marked for return)
    )
    rto_in_transit = (
        "21",  # RTO_INTRANSIT
        "13",  # RTO_OUT_FOR_DELIVERY
        "15",  # RTO_FAILED(_DELIVERY)
        "26",  # RTO leg (reference 2.1)
        "27",  # RTO leg (reference 2.1)
    )
    rto_delivered = ("14",)  # RTO_DELIVERED
    cancelled = ("10",)  # CANCELLED_ORDER
    lost = ("16",)  # LOST
    damaged = ("17",)  # DAMAGED
    unknown = ("23",)  # EXPIRED: tracking stopped, nothing to map (explicitly unknown)


class IncidentReason(CodeTable):
    """`additional.ndr_status_code` (reference 2.2)."""

    customer_unavailable = ("1",)  # Customer Unavailable
    customer_refused = ("2",)  # Rejected by Customer
    reschedule_requested = ("3",)  # Delivery Rescheduled
    not_attempted = ("4",)  # No Attempt
    customer_unreachable = ("5",)  # Customer Unreachable
    address_issue = ("6",)  # Address Issue
    payment_issue = ("7",)  # Payment Issue
    out_of_delivery_area = ("8",)  # Out Of Delivery Area
    order_cancelled_by_customer = ("9",)  # Order Already Cancelled
    self_collect_requested = ("10",)  # Self Collect
    other = (
        "0",  # Unknown Exception
        "11",  # Shipment Seized By Customer
    )
    unknown = ()


# Canonical action -> ClickPost v2 `action`: everything but RTO is a REATTEMPT carrying the
# (possibly updated) address, phone and preferred date. No hold-for-pickup.
ACTIONS: dict[str, str] = {
    NdrAction.reattempt: "REATTEMPT",
    NdrAction.reschedule: "REATTEMPT",
    NdrAction.update_address: "REATTEMPT",
    NdrAction.update_phone: "REATTEMPT",
    NdrAction.rto: "INITIATE_RTO",
}
supported_actions: frozenset[str] = frozenset(ACTIONS)


def verify_webhook(req: WebhookRequest, secret: str) -> None:
    check_shared_secret(req, WEBHOOK_HEADER, secret, CODE)


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    body = require_obj(load_json(req.body), "body")
    waybill = require_str(body, "waybill", "body")
    additional = body.get("additional") if isinstance(body.get("additional"), dict) else {}
    ndr_code = additional.get("ndr_status_code")
    ndr_text = opt_str(additional, "ndr_status_description")
    events: list[CarrierEvent] = []
    problems: list[Problem] = []
    scans: list[tuple[str, dict[str, Any]]] = [("body", body)]
    latest = additional.get("latest_status")
    if isinstance(latest, dict) and latest.get("clickpost_status_code") is not None:
        scans.append(("body.additional.latest_status", latest))
    seen: set[str] = set()
    for where, scan in scans:
        code = scan.get("clickpost_status_code")
        if code is None or isinstance(code, bool) or str(code).strip() == "":
            raise WebhookFormatError(f"{where}.clickpost_status_code is required")
        code = str(code).strip()
        occurred = to_utc(scan.get("timestamp"), local=IST, formats=TIME_FORMATS, where=f"{where}.timestamp")
        event_id = hashed_event_id(CODE, waybill, code, occurred)
        if event_id in seen:
            continue  # latest_status is the same scan as the push itself
        seen.add(event_id)
        member = TrackingStatus.find(code)
        description = opt_str(scan, "clickpost_status_description")
        if member is None:
            problems.append(
                Problem(UNKNOWN_STATUS, f"unknown ClickPost status code {code} ({description})", code)
            )
            milestone = Milestone.unknown
        else:  # includes the explicit `unknown` member (EXPIRED): known code, nothing to map
            milestone = Milestone(member.name)
        remark = opt_str(scan, "remark") or opt_str(scan, "status")
        reason = None
        if milestone is Milestone.delivery_failed:
            if code == "7":
                reason = NdrReason.out_of_delivery_area.value
            else:
                found = IncidentReason.find(ndr_code) if ndr_code is not None else None
                if ndr_code is not None and found is None:
                    problems.append(
                        Problem(
                            UNKNOWN_REASON, f"unknown ClickPost ndr_status_code {ndr_code}", str(ndr_code)
                        )
                    )
                reason = (
                    found.name
                    if found
                    else (reason_from_text(remark) or reason_from_text(ndr_text) or NdrReason.unknown).value
                )
        events.append(
            CarrierEvent(
                carrier=CODE,
                tracking_number=waybill,
                milestone=milestone.value,
                occurred_at=occurred,
                event_id=event_id,
                ndr_reason=reason,
                raw_code=code,
                raw_status=remark or description,
                location=opt_str(scan, "location"),
            )
        )
    return events, problems


# --- NDR Action Update v2 -------------------------------------------------------------------------


def action_body(
    inp: SendInstructionInput, cfg: CarrierSettings, today: datetime | None = None
) -> dict[str, Any]:
    """The v2 body. For REATTEMPT the docs make address, landmark, drop_pincode, phone_number and
    preferred_date mandatory, so unchanged values come from the shipment (inp.extra["address"],
    inp.extra["phone"], filled in by the activity from the store)."""
    ins = inp.instruction
    body: dict[str, Any] = {
        "action": ACTIONS[ins.action],
        "waybill": inp.tracking_number,
        "cp_id": int(inp.extra.get("cp_id") or cfg.clickpost_cp_id or 0),
        "account_code": str(inp.extra.get("account_code") or cfg.clickpost_account_code),
    }
    if ins.action == NdrAction.rto:
        return body
    address = ins.address or inp.extra.get("address") or {}
    street = [address.get(k) for k in ("line1", "line2", "city", "state")]
    tomorrow = ((today or datetime.now(IST)) + timedelta(days=1)).strftime("%Y-%m-%d")
    body.update(
        {
            "address": ", ".join(str(p) for p in street if p),
            # Mandatory for REATTEMPT, yet most addresses have none: the locality (line2) or city
            # is what carriers' agents use, rather than an empty field ClickPost refuses.
            "landmark": str(address.get("landmark") or address.get("line2") or address.get("city") or ""),
            "drop_pincode": str(address.get("postal_code") or ""),
            "phone_number": national_in(ins.phone or inp.extra.get("phone")) or "",
            # A plain reattempt means "as soon as possible": the next day.
            "preferred_date": ins.requested_date or tomorrow,
        }
    )
    return body


async def send_instruction(
    inp: SendInstructionInput, cfg: CarrierSettings, http: httpx.AsyncClient
) -> InstructionResult:
    action = inp.instruction.action
    if action not in ACTIONS:
        return unsupported(CODE, action, "ClickPost's NDR API has REATTEMPT and INITIATE_RTO only")
    if not (cfg.clickpost_username and cfg.clickpost_api_key):
        return unsupported(CODE, action, "no NDRFLOW_CLICKPOST_USERNAME / _API_KEY configured")
    body = action_body(inp, cfg)
    if not body["cp_id"] or not body["account_code"]:
        return unsupported(
            CODE, action, "cp_id and account_code are needed (NDRFLOW_CLICKPOST_CP_ID / _ACCOUNT_CODE)"
        )
    url = f"{cfg.clickpost_base_url.rstrip('/')}{cfg.clickpost_ndr_path}"
    resp = await call(
        http,
        "POST",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        json=body,
        params={"username": cfg.clickpost_username, "key": cfg.clickpost_api_key},
    )
    if resp.status_code >= 400:
        return rejected(resp, CODE)
    data = response_json(resp)
    meta = data.get("meta") if isinstance(data, dict) else None
    # ClickPost reports errors inside a 200 answer: meta.success false is a rejection.
    if isinstance(meta, dict) and meta.get("success") is False:
        return InstructionResult(
            status="rejected",
            detail=f"ClickPost: {short(str(meta.get('message') or 'failed'))}",
            http_status=int(meta.get("status") or resp.status_code)
            if str(meta.get("status") or "").isdigit()
            else resp.status_code,
        )
    result = data.get("result") if isinstance(data, dict) else None
    ref = result.get("cp_response") if isinstance(result, dict) else None
    return InstructionResult(
        status="accepted",
        carrier_reference=str(ref) if ref else None,
        detail=f"ClickPost: {short(str(meta.get('message'))) if isinstance(meta, dict) else resp.status_code}",
        http_status=resp.status_code,
    )


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    return []  # not implemented: ClickPost retries its pushes until we answer 200
