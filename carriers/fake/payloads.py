"""Tracking payloads in each carrier's own format, built from (milestone, NDR reason, time), and
signed the way each carrier signs them. Used by the fake carrier's `/_emit`, by tests, the demo,
the benchmark and the chaos run, so every producer of "what Delhivery would send" agrees.

    body, headers = webhook("delhivery", Scan("AWB1", "delivery_failed", "customer_unavailable"), secret)
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from carriers import aftership, easypost, generic
from carriers.base import IST

# What a carrier's agent would write for each reason (Delhivery `Instructions`, Shiprocket scan
# `activity`, ClickPost `remark`, AfterShip checkpoint `message`).
REASON_TEXT: dict[str, str] = {
    "customer_unavailable": "Consignee unavailable",
    "customer_unreachable": "Consignee not reachable on phone",
    "address_issue": "Address incomplete / not locatable",
    "reschedule_requested": "Consignee requested future delivery",
    "payment_issue": "COD cash not ready",
    "premises_closed": "Office / shop closed",
    "access_restricted": "Entry restricted at premises",
    "verification_failed": "OTP not provided",
    "self_collect_requested": "Consignee will self collect",
    "open_delivery_requested": "Consignee wants open delivery",
    "customer_refused": "Consignee refused delivery",
    "order_cancelled_by_customer": "Order cancelled by customer",
    "out_of_delivery_area": "Out of delivery area",
    "not_attempted": "Shipment not attempted",
    "other": "Delivery exception",
}

MILESTONE_TEXT: dict[str, str] = {
    "created": "Shipment manifested",
    "pickup_failed": "Pickup failed",
    "picked_up": "Shipment picked up",
    "in_transit": "Shipment in transit",
    "out_for_delivery": "Out for delivery",
    "ready_for_pickup": "Available for pickup",
    "on_hold": "Shipment held",
    "delivered": "Delivered to consignee",
    "rto_initiated": "Return to origin initiated",
    "rto_in_transit": "Return in transit",
    "rto_delivered": "Returned to seller",
    "cancelled": "Shipment cancelled",
    "lost": "Shipment lost",
    "damaged": "Shipment damaged",
}


class NoSuchCode(ValueError):
    """The carrier has no code for this milestone or reason (e.g. Delhivery has no 'lost')."""


@dataclass
class Scan:
    tracking_number: str
    milestone: str
    ndr_reason: str | None = None
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    location: str = "Bengaluru"
    event_id: str | None = None

    def text(self) -> str:
        if self.milestone == "delivery_failed":
            return REASON_TEXT.get(self.ndr_reason or "", "Delivery attempt failed")
        return MILESTONE_TEXT.get(self.milestone, self.milestone)

    @property
    def ist(self) -> datetime:
        when = self.occurred_at if self.occurred_at.tzinfo else self.occurred_at.replace(tzinfo=UTC)
        return when.astimezone(IST)


def _pick(table: dict[str, Any], key: str | None, carrier: str, what: str) -> Any:
    if key not in table:
        raise NoSuchCode(f"{carrier} has no {what} code for {key!r}")
    return table[key]


# --- generic ------------------------------------------------------------------------------------


def build_generic(scan: Scan) -> dict[str, Any]:
    return {
        "events": [
            {
                "tracking_number": scan.tracking_number,
                "event_id": scan.event_id or f"e-{uuid.uuid4().hex[:16]}",
                "status": scan.milestone,
                "ndr_reason": scan.ndr_reason if scan.milestone == "delivery_failed" else None,
                "occurred_at": scan.ist.isoformat(timespec="seconds"),
                "location": scan.location,
                "raw_code": scan.milestone.upper(),
                "raw_status": scan.text(),
            }
        ]
    }


# --- Delhivery ----------------------------------------------------------------------------------

DELHIVERY_STATUS: dict[str, tuple[str, str]] = {
    "created": ("UD", "Manifested"),
    "pickup_failed": ("UD", "Not Picked"),
    "picked_up": ("UD", "In Transit"),
    "in_transit": ("UD", "In Transit"),
    "out_for_delivery": ("UD", "Dispatched"),
    "delivery_failed": ("UD", "Pending"),
    "delivered": ("DL", "Delivered"),
    "rto_initiated": ("RT", "In Transit"),
    "rto_in_transit": ("RT", "Pending"),
    "rto_delivered": ("DL", "RTO"),
    "cancelled": ("CN", "Canceled"),
}
DELHIVERY_NSL: dict[str, str] = {
    "customer_unavailable": "EOD-11",
    "customer_unreachable": "EOD-43",
    "address_issue": "EOD-74",
    "reschedule_requested": "EOD-3",
    "payment_issue": "EOD-40",
    "access_restricted": "EOD-104",
    "open_delivery_requested": "EOD-69",
    "customer_refused": "EOD-111",
    "not_attempted": "EOD-86",
}


def delhivery_shipment(scan: Scan) -> dict[str, Any]:
    status_type, status = _pick(DELHIVERY_STATUS, scan.milestone, "delhivery", "status")
    nsl = None
    if scan.milestone == "delivery_failed":
        # Reasons without a known NSL go out as EOD-15 (re-attempt eligible, meaning unpublished)
        # and are told by the Instructions text, as Delhivery's own agents do.
        nsl = DELHIVERY_NSL.get(scan.ndr_reason or "customer_unavailable", "EOD-15")
    elif scan.milestone == "pickup_failed":
        nsl = "X-PNP"
    return {
        "AWB": scan.tracking_number,
        "ReferenceNo": f"ORD-{scan.tracking_number}",
        "NSLCode": nsl,
        "Status": {
            "Status": status,
            "StatusType": status_type,
            # Delhivery sends Indian local time with no offset.
            "StatusDateTime": scan.ist.replace(tzinfo=None).isoformat(timespec="milliseconds"),
            "StatusLocation": scan.location,
            "Instructions": scan.text(),
        },
        "PickUpDate": scan.ist.replace(tzinfo=None).isoformat(timespec="seconds"),
        "Sortcode": "BLR/MGR",
    }


def build_delhivery(scan: Scan) -> dict[str, Any]:
    return {"Shipment": delhivery_shipment(scan)}


def delhivery_tracking(tracking_number: str, scans: list[Scan]) -> dict[str, Any]:
    """GET /api/v1/packages/json/ answer for one waybill."""
    if not scans:
        return {"ShipmentData": [], "Error": "No such waybill"}
    details = []
    for s in scans:
        ship = delhivery_shipment(s)
        details.append(
            {
                "ScanDetail": {
                    "Scan": ship["Status"]["Status"],
                    "ScanType": ship["Status"]["StatusType"],
                    "ScanDateTime": ship["Status"]["StatusDateTime"],
                    "StatusDateTime": ship["Status"]["StatusDateTime"],
                    "ScannedLocation": s.location,
                    "Instructions": ship["Status"]["Instructions"],
                    "StatusCode": ship["NSLCode"],
                }
            }
        )
    latest = delhivery_shipment(scans[-1])
    latest["Scans"] = details
    return {"ShipmentData": [{"Shipment": latest}]}


# --- Shiprocket ---------------------------------------------------------------------------------

SHIPROCKET_STATUS: dict[str, tuple[int, str]] = {
    "created": (52, "SHIPMENT BOOKED"),
    "pickup_failed": (20, "PICKUP EXCEPTION"),
    "picked_up": (42, "PICKED UP"),
    "in_transit": (18, "IN TRANSIT"),
    "out_for_delivery": (17, "OUT FOR DELIVERY"),
    "delivery_failed": (21, "UNDELIVERED"),
    "on_hold": (22, "DELAYED"),
    "delivered": (7, "DELIVERED"),
    "rto_initiated": (9, "RTO INITIATED"),
    "rto_in_transit": (46, "RTO IN TRANSIT"),
    "rto_delivered": (10, "RTO DELIVERED"),
    "cancelled": (8, "CANCELED"),
    "lost": (12, "LOST"),
    "damaged": (25, "DAMAGED"),
}


def build_shiprocket(scan: Scan) -> dict[str, Any]:
    code, label = _pick(SHIPROCKET_STATUS, scan.milestone, "shiprocket", "status")
    local = scan.ist.replace(tzinfo=None)
    order = int(hashlib.sha1(scan.tracking_number.encode()).hexdigest()[:12], 16)
    return {
        "awb": scan.tracking_number,
        "courier_name": "Delhivery Surface",
        "current_status": label,
        "current_status_id": code,
        "shipment_status": label,
        "shipment_status_id": code,
        "current_timestamp": local.strftime("%d %m %Y %H:%M:%S"),
        "order_id": f"{order % 10**7}_{order % 10**9}",
        "sr_order_id": order % 10**9,
        "awb_assigned_date": local.strftime("%Y-%m-%d %H:%M:%S"),
        "etd": local.strftime("%Y-%m-%d 23:59:59"),
        "is_return": 1 if scan.milestone.startswith("rto") else 0,
        "scans": [
            {
                "date": local.strftime("%Y-%m-%d %H:%M:%S"),
                "status": "X-UNK",
                "activity": scan.text(),
                "location": scan.location,
                "sr-status": str(code),
                "sr-status-label": label,
            }
        ],
    }


# --- ClickPost ----------------------------------------------------------------------------------

CLICKPOST_STATUS: dict[str, tuple[int, str]] = {
    "created": (1, "OrderPlaced"),
    "pickup_failed": (3, "PickupFailed"),
    "picked_up": (4, "PickedUp"),
    "in_transit": (5, "InTransit"),
    "out_for_delivery": (6, "OutForDelivery"),
    "delivery_failed": (9, "FailedDelivery"),
    "on_hold": (20, "ShipmentHeld"),
    "delivered": (8, "Delivered"),
    "rto_initiated": (11, "RTORequested"),
    "rto_in_transit": (21, "RTOInTransit"),
    "rto_delivered": (14, "RTODelivered"),
    "cancelled": (10, "Cancelled"),
    "lost": (16, "Lost"),
    "damaged": (17, "Damaged"),
}
CLICKPOST_NDR: dict[str, tuple[int, str]] = {
    "customer_unavailable": (1, "Customer Unavailable"),
    "customer_refused": (2, "Rejected by Customer"),
    "reschedule_requested": (3, "Delivery Rescheduled"),
    "not_attempted": (4, "No Attempt"),
    "customer_unreachable": (5, "Customer Unreachable"),
    "address_issue": (6, "Address Issue"),
    "payment_issue": (7, "Payment Issue"),
    "out_of_delivery_area": (8, "Out Of Delivery Area"),
    "order_cancelled_by_customer": (9, "Order Already Cancelled"),
    "self_collect_requested": (10, "Self Collect"),
    "other": (0, "Unknown Exception"),
}


def clickpost_scan(scan: Scan) -> dict[str, Any]:
    code, description = _pick(CLICKPOST_STATUS, scan.milestone, "clickpost", "status")
    return {
        "clickpost_status_code": code,
        "clickpost_status_description": description,
        "status": scan.text(),
        "remark": scan.text(),
        "location": scan.location,
        "timestamp": scan.ist.isoformat(timespec="seconds"),
    }


def build_clickpost(scan: Scan, latest: Scan | None = None, cp_id: int = 4) -> dict[str, Any]:
    """`latest` is the shipment's newest scan when this push is stale (ClickPost's order is not
    guaranteed); by default the push is the latest."""
    body: dict[str, Any] = {"waybill": scan.tracking_number, "cp_id": cp_id, **clickpost_scan(scan)}
    additional: dict[str, Any] = {"latest_status": clickpost_scan(latest or scan), "notification_event_id": 3}
    failed = latest or scan
    if (
        failed.milestone == "delivery_failed"
        and (failed.ndr_reason or "customer_unavailable") in CLICKPOST_NDR
    ):
        # Reasons ClickPost has no code for travel only in the remark text.
        ndr_code, ndr_text = CLICKPOST_NDR[failed.ndr_reason or "customer_unavailable"]
        additional["ndr_status_code"] = ndr_code
        additional["ndr_status_description"] = ndr_text
    body["additional"] = additional
    return body


# --- EasyPost -----------------------------------------------------------------------------------

EASYPOST_STATUS: dict[str, tuple[str, str | None]] = {
    "created": ("pre_transit", None),
    "picked_up": ("in_transit", "arrived_at_facility"),
    "in_transit": ("in_transit", "arrived_at_facility"),
    "out_for_delivery": ("out_for_delivery", "out_for_delivery"),
    "delivery_failed": ("failure", "delivery_exception"),
    "on_hold": ("in_transit", "held"),
    "ready_for_pickup": ("available_for_pickup", "arrived_at_pickup_location"),
    "delivered": ("delivered", "arrived_at_destination"),
    "rto_initiated": ("return_to_sender", "return"),
    "cancelled": ("cancelled", None),
    "lost": ("failure", "lost"),
    "damaged": ("failure", "damaged"),
}
EASYPOST_REASON_DETAIL = {
    "address_issue": "address_correction",
    "customer_refused": "refused",
    "order_cancelled_by_customer": "cancelled",
}


def build_easypost(scan: Scan) -> dict[str, Any]:
    status, detail = _pick(EASYPOST_STATUS, scan.milestone, "easypost", "status")
    if scan.milestone == "delivery_failed" and scan.ndr_reason in EASYPOST_REASON_DETAIL:
        detail = EASYPOST_REASON_DETAIL[scan.ndr_reason]
    when = scan.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": scan.event_id or f"evt_{uuid.uuid4().hex}",
        "object": "Event",
        "mode": "production",
        "description": "tracker.updated",
        "created_at": when,
        "updated_at": when,
        "previous_attributes": {},
        "result": {
            "id": f"trk_{hashlib.sha1(scan.tracking_number.encode()).hexdigest()[:32]}",
            "object": "Tracker",
            "mode": "production",
            "tracking_code": scan.tracking_number,
            "status": status,
            "status_detail": detail,
            "carrier": "USPS",
            "updated_at": when,
            "tracking_details": [
                {
                    "object": "TrackingDetail",
                    "message": scan.text(),
                    "description": "",
                    "status": status,
                    "status_detail": detail,
                    "datetime": when,
                    "source": "USPS",
                    "tracking_location": {
                        "object": "TrackingLocation",
                        "city": scan.location,
                        "state": "KA",
                        "country": "IN",
                        "zip": None,
                    },
                }
            ],
        },
    }


# --- AfterShip ----------------------------------------------------------------------------------

AFTERSHIP_STATUS: dict[str, tuple[str, str]] = {
    "created": ("InfoReceived", "InfoReceived_001"),
    "pickup_failed": ("Exception", "Exception_008"),
    "picked_up": ("InTransit", "InTransit_002"),
    "in_transit": ("InTransit", "InTransit_001"),
    "out_for_delivery": ("OutForDelivery", "OutForDelivery_001"),
    "delivery_failed": ("AttemptFail", "AttemptFail_001"),
    "ready_for_pickup": ("AvailableForPickup", "AvailableForPickup_001"),
    "on_hold": ("Exception", "Exception_005"),
    "delivered": ("Delivered", "Delivered_001"),
    "rto_initiated": ("Exception", "Exception_010"),
    "rto_delivered": ("Exception", "Exception_011"),
    "damaged": ("Exception", "Exception_012"),
    "lost": ("Exception", "Exception_013"),
}
AFTERSHIP_REASON: dict[str, tuple[str, str]] = {
    "customer_unavailable": ("AttemptFail", "AttemptFail_002"),
    "premises_closed": ("AttemptFail", "AttemptFail_003"),
    "address_issue": ("Exception", "Exception_007"),
    "customer_refused": ("Exception", "Exception_003"),
}


def build_aftership(scan: Scan) -> dict[str, Any]:
    tag, subtag = _pick(AFTERSHIP_STATUS, scan.milestone, "aftership", "status")
    if scan.milestone == "delivery_failed" and scan.ndr_reason in AFTERSHIP_REASON:
        tag, subtag = AFTERSHIP_REASON[scan.ndr_reason]
    checkpoint_time = scan.ist.isoformat(timespec="seconds")
    return {
        "event": "tracking_update",
        "event_id": scan.event_id or str(uuid.uuid4()),
        "is_tracking_first_tag": False,
        "ts": int(scan.occurred_at.timestamp()),
        "msg": {
            "id": hashlib.sha1(scan.tracking_number.encode()).hexdigest()[:24],
            "tracking_number": scan.tracking_number,
            "slug": "delhivery",
            "tag": tag,
            "subtag": subtag,
            "subtag_message": scan.text(),
            "checkpoints": [
                {
                    "checkpoint_time": checkpoint_time,
                    "tag": tag,
                    "subtag": subtag,
                    "message": scan.text(),
                    "location": scan.location,
                }
            ],
        },
    }


# --- all together -------------------------------------------------------------------------------

BUILDERS = {
    "generic": build_generic,
    "delhivery": build_delhivery,
    "shiprocket": build_shiprocket,
    "clickpost": build_clickpost,
    "easypost": build_easypost,
    "aftership": build_aftership,
}


def build(carrier: str, scan: Scan) -> dict[str, Any]:
    try:
        builder = BUILDERS[carrier]
    except KeyError:
        raise NoSuchCode(f"no payload builder for carrier {carrier!r}") from None
    return builder(scan)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sign_headers(
    carrier: str, body: bytes, secret: str, delhivery_header: str = "X-Delhivery-Token"
) -> dict[str, str]:
    """The authentication headers `carrier` would send with `body`."""
    headers = {"Content-Type": "application/json"}
    if carrier == "generic":
        headers["X-Ndrflow-Signature"] = generic.sign(body, secret)
    elif carrier == "delhivery":
        headers[delhivery_header] = secret
    elif carrier == "shiprocket":
        headers["x-api-key"] = secret
    elif carrier == "clickpost":
        headers["webhook_key"] = secret
    elif carrier == "easypost":
        headers["X-Hmac-Signature"] = easypost.sign(body, secret)
    elif carrier == "aftership":
        headers["aftership-hmac-sha256"] = aftership.sign(body, secret)
    else:
        raise NoSuchCode(f"no signing scheme for carrier {carrier!r}")
    return headers


def webhook(carrier: str, scan: Scan, secret: str) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) of the push `carrier` would send for `scan`."""
    body = encode(build(carrier, scan))
    return body, sign_headers(carrier, body, secret)
