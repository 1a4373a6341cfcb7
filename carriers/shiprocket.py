"""Shiprocket: tracking webhook in, NDR action out (bearer token from the login endpoint).

Webhook payload (fields as Shiprocket sends them; numbers are Shiprocket's shipment status ids)::

    {"awb": "19041424751540", "courier_name": "Delhivery Surface", "current_status": "UNDELIVERED",
     "current_status_id": 21, "shipment_status": "UNDELIVERED", "shipment_status_id": 21,
     "current_timestamp": "28 11 2026 19:40:12", "order_id": "1373900_150876814",
     "sr_order_id": 348456385, "etd": "2026-11-29 23:59:59", "is_return": 0,
     "scans": [{"date": "2026-11-28 19:40:12", "status": "X-DDD3FD", "activity": "Consignee Unavailable",
                "location": "Bengaluru_Hub", "sr-status": "21", "sr-status-label": "UNDELIVERED"}]}

Times are Indian local time without an offset (IST). Shiprocket's status ids carry no NDR reason,
so a failed attempt's reason comes from the latest scan's `activity` text.
Authentication: the token set with the webhook in Shiprocket's panel, sent back in the
``x-api-key`` header (a static shared secret, not a signature) [code-level confidence].
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from carriers.base import (
    IST,
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
    to_utc,
    unsupported,
)
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import Milestone, NdrAction, NdrReason

CODE = "shiprocket"
WEBHOOK_HEADER = "x-api-key"
TIME_FORMATS = ("%d %m %Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d-%m-%Y %H:%M:%S")

# Tokens from /v1/external/auth/login last 10 days; we refresh a day early, and on any 401.
TOKEN_TTL_S = 10 * 24 * 3600
REFRESH_MARGIN_S = 24 * 3600


class TrackingStatus(CodeTable):
    """Shiprocket shipment status ids (`current_status_id` / `shipment_status_id` / `sr-status`)."""

    created = (
        "19",  # OUT FOR PICKUP
        "27",  # PICKUP BOOKED
        "52",  # SHIPMENT BOOKED
        "15",  # PICKUP RESCHEDULED
        "59",  # BOX PACKING
        "60",  # FC ALLOCATED
        "61",  # PICKLIST GENERATED
        "62",  # READY TO PACK
        "63",  # PACKED
        "67",  # FC MANIFEST GENERATED
        "68",  # PROCESSED AT WAREHOUSE
    )
    pickup_failed = (
        "13",  # PICKUP ERROR
        "20",  # PICKUP EXCEPTION
        "71",  # HANDOVER EXCEPTION
        "72",  # PACKED EXCEPTION
    )
    picked_up = (
        "42",  # PICKED UP
        "6",  # SHIPPED (handed to the courier)
        "51",  # HANDOVER TO COURIER
    )
    in_transit = (
        "18",  # IN TRANSIT
        "38",  # REACHED AT DESTINATION HUB
        "39",  # MISROUTED (still moving)
        "48",  # REACHED WAREHOUSE
        "49",  # CUSTOM CLEARED
        "50",  # IN FLIGHT
        "54",  # IN TRANSIT OVERSEAS
        "55",  # CONNECTION ALIGNED
        "56",  # REACHED OVERSEAS WAREHOUSE
        "57",  # CUSTOM CLEARED OVERSEAS
    )
    out_for_delivery = ("17",)  # OUT FOR DELIVERY
    delivery_failed = (
        "21",  # UNDELIVERED (an NDR; reason from the scan text)
        "77",  # ISSUE RELATED TO THE RECIPIENT
    )
    on_hold = (
        "22",  # DELAYED
        "76",  # UNTRACEABLE (held until found or declared lost)
    )
    delivered = (
        "7",  # DELIVERED
        "23",  # PARTIAL DELIVERED
        "26",  # FULFILLED
        "43",  # SELF FULFILLED
    )
    rto_initiated = (
        "9",  # RTO INITIATED
        "14",  # RTO ACKNOWLEDGED
        "75",  # RTO LOCK
    )
    rto_in_transit = (
        "46",  # RTO IN TRANSIT
        "41",  # RTO OFD
        "40",  # RTO NDR
        "78",  # REACHED BACK AT SELLER CITY
    )
    rto_delivered = ("10",)  # RTO DELIVERED
    cancelled = (
        "8",  # CANCELED
        "16",  # CANCELLATION REQUESTED
        "45",  # CANCELLED BEFORE DISPATCHED
    )
    lost = ("12",)  # LOST
    damaged = (
        "25",  # DAMAGED
        "24",  # DESTROYED
        "44",  # DISPOSED OFF
    )
    unknown = ()


# Canonical action -> Shiprocket `action` (reference 1.3). Address and phone changes ride on a
# re-attempt; `return` is RTO. Shiprocket has no hold-for-pickup.
ACTIONS: dict[str, str] = {
    NdrAction.reattempt: "re-attempt",
    NdrAction.reschedule: "re-attempt",
    NdrAction.update_address: "re-attempt",
    NdrAction.update_phone: "re-attempt",
    NdrAction.rto: "return",
}
supported_actions: frozenset[str] = frozenset(ACTIONS)


def verify_webhook(req: WebhookRequest, secret: str) -> None:
    check_shared_secret(req, WEBHOOK_HEADER, secret, CODE)


def parse_webhook(req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    body = require_obj(load_json(req.body), "body")
    awb = require_str(body, "awb", "body")
    status_id = body.get("current_status_id", body.get("shipment_status_id"))
    if status_id is None or isinstance(status_id, bool) or str(status_id).strip() == "":
        raise WebhookFormatError("body.current_status_id is required")
    code = str(status_id).strip()
    label = opt_str(body, "current_status") or opt_str(body, "shipment_status")
    scans = body.get("scans") if isinstance(body.get("scans"), list) else []
    latest_scan = scans[-1] if scans and isinstance(scans[-1], dict) else {}
    when = body.get("current_timestamp") or latest_scan.get("date")
    occurred = to_utc(when, local=IST, formats=TIME_FORMATS, where="body.current_timestamp")
    problems: list[Problem] = []
    member = TrackingStatus.find(code)
    if member is None or member is TrackingStatus.unknown:
        problems.append(Problem(UNKNOWN_STATUS, f"unknown Shiprocket status id {code} ({label})", code))
        milestone = Milestone.unknown
    else:
        milestone = Milestone(member.name)
    reason = None
    activity = opt_str(latest_scan, "activity")
    if milestone is Milestone.delivery_failed:
        # No reason code in Shiprocket's payload: the courier's scan text is all there is.
        reason = (reason_from_text(activity) or reason_from_text(label) or NdrReason.unknown).value
    event = CarrierEvent(
        carrier=CODE,
        tracking_number=awb,
        milestone=milestone.value,
        occurred_at=occurred,
        event_id=hashed_event_id(CODE, awb, code, occurred),
        ndr_reason=reason,
        raw_code=code,
        raw_status=activity or label,
        location=opt_str(latest_scan, "location"),
    )
    return [event], problems


# --- token cache --------------------------------------------------------------------------------


@dataclass
class TokenCache:
    """Bearer tokens per (base URL, email), shared by every call in this worker process."""

    clock: Callable[[], float] = time.monotonic
    _tokens: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    logins: int = 0  # how many times we logged in (tests and metrics)

    async def get(self, cfg: CarrierSettings, http: httpx.AsyncClient, *, force: bool = False) -> str:
        key = (cfg.shiprocket_base_url, cfg.shiprocket_email)
        # One lock per event loop (an asyncio.Lock is bound to the loop that first waits on it),
        # so concurrent activities log in once instead of stampeding the login endpoint.
        lock = self._locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and not force and self.clock() < cached[1] - REFRESH_MARGIN_S:
                return cached[0]
            token = await _login(cfg, http)
            self.logins += 1
            self._tokens[key] = (token, self.clock() + TOKEN_TTL_S)
            return token

    def forget(self, cfg: CarrierSettings) -> None:
        self._tokens.pop((cfg.shiprocket_base_url, cfg.shiprocket_email), None)


TOKENS = TokenCache()


class ShiprocketAuthError(Exception):
    """Login refused (4xx): our credentials are wrong; retrying will not help."""


async def _login(cfg: CarrierSettings, http: httpx.AsyncClient) -> str:
    url = f"{cfg.shiprocket_base_url.rstrip('/')}/v1/external/auth/login"
    resp = await call(
        http,
        "POST",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        json={"email": cfg.shiprocket_email, "password": cfg.shiprocket_password},
    )
    data = response_json(resp)
    if resp.status_code >= 400 or not isinstance(data, dict) or not data.get("token"):
        raise ShiprocketAuthError(f"Shiprocket login answered {resp.status_code}")
    return str(data["token"])


# --- NDR action ---------------------------------------------------------------------------------


def action_body(inp: SendInstructionInput) -> dict[str, Any]:
    ins = inp.instruction
    body: dict[str, Any] = {
        "action": ACTIONS[ins.action],
        # `comments` is required by Shiprocket; say who decided when nobody wrote anything.
        "comments": ins.comments or f"{ins.action} requested by {ins.source} via ndrflow",
    }
    if ins.action == NdrAction.reschedule and ins.requested_date:
        body["deferred_date"] = ins.requested_date
    if ins.action != NdrAction.rto:
        if ins.phone:
            body["phone"] = national_in(ins.phone)
        if ins.address:
            line1 = ins.address.get("line1") or ""
            rest = [ins.address.get(k) for k in ("line2", "landmark", "city", "postal_code")]
            body["address1"] = str(line1)
            body["address2"] = ", ".join(str(p) for p in rest if p)
    return body


async def send_instruction(
    inp: SendInstructionInput,
    cfg: CarrierSettings,
    http: httpx.AsyncClient,
    tokens: TokenCache | None = None,
) -> InstructionResult:
    action = inp.instruction.action
    if action not in ACTIONS:
        return unsupported(CODE, action, "Shiprocket's NDR action API has re-attempt and return only")
    if not (cfg.shiprocket_email and cfg.shiprocket_password):
        return unsupported(CODE, action, "no NDRFLOW_SHIPROCKET_EMAIL / _PASSWORD configured")
    tokens = tokens or TOKENS
    url = f"{cfg.shiprocket_base_url.rstrip('/')}/v1/external/ndr/{inp.tracking_number}/action"
    body = action_body(inp)
    try:
        token = await tokens.get(cfg, http)
        resp = await _post(http, url, body, token, cfg)
        if resp.status_code == 401:
            # Revoked or expired early: log in again once, then believe the answer.
            token = await tokens.get(cfg, http, force=True)
            resp = await _post(http, url, body, token, cfg)
    except ShiprocketAuthError as exc:
        return InstructionResult(status="rejected", detail=str(exc), http_status=401)
    if resp.status_code >= 400:
        if resp.status_code == 401:
            tokens.forget(cfg)
        return rejected(resp, CODE)
    # Observed success is 202 {"status": "Data Updated Sucessfully"}; any 2xx is accepted.
    return InstructionResult(
        status="accepted", detail=f"Shiprocket answered {resp.status_code}", http_status=resp.status_code
    )


async def _post(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], token: str, cfg: CarrierSettings
) -> httpx.Response:
    return await call(
        http,
        "POST",
        url,
        carrier=CODE,
        timeout=cfg.carrier_http_timeout_s,
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


async def poll_tracking(
    tracking_number: str, cfg: CarrierSettings, http: httpx.AsyncClient
) -> list[CarrierEvent]:
    return []  # not implemented: Shiprocket pushes reliably enough; Delhivery and generic poll
