"""ClickPost: status and NDR code tables, out-of-order pushes, webhook_key; NDR Action Update v2."""

from __future__ import annotations

import json
from datetime import datetime

import httpx
import pytest

from carriers import clickpost
from carriers.base import IST, CarrierUnavailable, WebhookAuthError, WebhookFormatError
from domain.taxonomy import Milestone, NdrReason
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request, settings


def push(
    code: int,
    ndr_code: int | None = None,
    latest: dict | None = None,
    when: str = "2026-11-28T19:40:12+05:30",
) -> bytes:
    additional: dict = {"notification_event_id": 3}
    if latest is not None:
        additional["latest_status"] = latest
    if ndr_code is not None:
        additional["ndr_status_code"] = ndr_code
        additional["ndr_status_description"] = "x"
    return json.dumps(
        {
            "waybill": "4152912745934",
            "cp_id": 4,
            "clickpost_status_code": code,
            "clickpost_status_description": "desc",
            "status": "s",
            "remark": "r",
            "location": "Bengaluru",
            "timestamp": when,
            "additional": additional,
        }
    ).encode()


def test_every_code_in_the_table_maps_to_its_member():
    for table, vocabulary in ((clickpost.TrackingStatus, Milestone), (clickpost.IncidentReason, NdrReason)):
        for member in table:
            vocabulary(member.name)
            for code in member.value:
                assert table.find(code) is member


# Reference 2.1, ClickPost column.
REFERENCE_MILESTONES = [
    (1, "created"), (2, "created"), (25, "created"), (28, "created"),
    (3, "pickup_failed"), (4, "picked_up"), (5, "in_transit"), (1004, "in_transit"),
    (6, "out_for_delivery"), (9, "delivery_failed"), (7, "delivery_failed"),
    (18, "on_hold"), (19, "on_hold"), (20, "on_hold"), (8, "delivered"),
    (11, "rto_initiated"), (12, "rto_initiated"),
    (21, "rto_in_transit"), (13, "rto_in_transit"), (15, "rto_in_transit"), (26, "rto_in_transit"), (27, "rto_in_transit"),
    (14, "rto_delivered"), (10, "cancelled"), (16, "lost"), (17, "damaged"), (23, "unknown"),
]  # fmt: skip


@pytest.mark.parametrize("code, milestone", REFERENCE_MILESTONES)
def test_reference_milestones(code, milestone):
    events, problems = clickpost.parse_webhook(request(push(code)))
    assert (events[0].milestone, problems) == (milestone, [])  # EXPIRED is a known code: no problem


# Reference 2.2, ClickPost column.
REFERENCE_REASONS = [
    (1, "customer_unavailable"), (2, "customer_refused"), (3, "reschedule_requested"), (4, "not_attempted"),
    (5, "customer_unreachable"), (6, "address_issue"), (7, "payment_issue"), (8, "out_of_delivery_area"),
    (9, "order_cancelled_by_customer"), (10, "self_collect_requested"), (0, "other"), (11, "other"),
]  # fmt: skip


@pytest.mark.parametrize("ndr_code, reason", REFERENCE_REASONS)
def test_reference_ndr_reasons(ndr_code, reason):
    events, problems = clickpost.parse_webhook(request(push(9, ndr_code)))
    assert (events[0].ndr_reason, problems) == (reason, [])


def test_not_serviceable_is_an_ndr_out_of_delivery_area():
    events, _ = clickpost.parse_webhook(request(push(7)))
    assert (events[0].milestone, events[0].ndr_reason) == ("delivery_failed", "out_of_delivery_area")


def test_stale_push_also_yields_the_latest_status():
    """Out of order: a late out-for-delivery push whose latest_status is the failed attempt."""
    events, problems = clickpost.parse_webhook(request(fixture_bytes("clickpost", "stale_push.json")))
    assert problems == []
    assert [(e.milestone, e.ndr_reason, e.occurred_at, e.raw_code) for e in events] == [
        ("out_for_delivery", None, "2026-11-28T02:45:00.000000Z", "6"),
        # latest_status's naive timestamp is IST
        ("delivery_failed", "customer_refused", "2026-11-28T14:10:12.000000Z", "9"),
    ]
    assert len({e.event_id for e in events}) == 2
    # The newer event sorts after the stale one, so the workflow keeps delivery_failed.
    assert max(events, key=lambda e: e.occurred_at).milestone == "delivery_failed"


def test_latest_status_equal_to_the_push_is_not_doubled():
    scan = {"clickpost_status_code": 8, "timestamp": "2026-11-28T19:40:12+05:30", "remark": "Delivered"}
    events, _ = clickpost.parse_webhook(request(push(8, latest=scan)))
    assert [e.milestone for e in events] == ["delivered"]


def test_unknown_codes_are_unknown_and_reported():
    events, problems = clickpost.parse_webhook(request(push(99)))
    assert (events[0].milestone, events[0].raw_code) == ("unknown", "99")
    events, problems2 = clickpost.parse_webhook(request(push(9, ndr_code=42)))
    assert events[0].ndr_reason == "unknown"
    assert [(p.code, p.raw_code) for p in problems + problems2] == [
        ("unknown_status", "99"),
        ("unknown_reason", "42"),
    ]


@pytest.mark.parametrize(
    "body, names",
    [
        (b"[1]", "body must be a JSON object"),
        (b'{"clickpost_status_code": 8, "timestamp": "2026-11-28T10:00:00Z"}', "body.waybill"),
        (b'{"waybill": "1", "timestamp": "2026-11-28T10:00:00Z"}', "clickpost_status_code"),
        (b'{"waybill": "1", "clickpost_status_code": 8}', "body.timestamp"),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names):
        clickpost.parse_webhook(request(body))


def test_webhook_key_header():
    body = push(8)
    clickpost.verify_webhook(request(body, {"webhook_key": "cp-key"}), "cp-key")
    with pytest.raises(WebhookAuthError, match="wrong"):
        clickpost.verify_webhook(request(body, {"webhook_key": "cp-kez"}), "cp-key")
    with pytest.raises(WebhookAuthError, match="missing"):
        clickpost.verify_webhook(request(body), "cp-key")
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        clickpost.verify_webhook(request(body, {"webhook_key": "cp-key"}), "")


# --- NDR Action Update v2 -------------------------------------------------------------------------

SUCCESS = {"meta": {"success": True, "message": "SUCCESS", "status": 200}}
SHIPMENT = {
    "address": {
        "line1": "12 MG Road",
        "city": "Bengaluru",
        "postal_code": "560001",
        "landmark": "near Metro",
    },
    "phone": "+919876543210",
}


async def test_reattempt_body_query_auth_and_mandatory_fields(cfg):
    script = Script(ok(200, SUCCESS))
    inp = instruction_input("clickpost", "reschedule", requested_date="2026-12-01", extra=SHIPMENT)
    async with script.client() as http:
        result = await clickpost.send_instruction(inp, cfg, http)
    assert result.status == "accepted"
    req = script.requests[0]
    assert (req.method, req.url.host, req.url.path) == (
        "POST",
        "www.clickpost.example",
        "/api/v2/ndr/update/",
    )
    assert dict(req.url.params) == {"username": "acme", "key": "lic-key-123"}
    assert script.json() == {
        "action": "REATTEMPT",
        "waybill": "AWB123",
        "cp_id": 4,
        "account_code": "Delhivery-Express",
        "address": "12 MG Road, Bengaluru",
        "landmark": "near Metro",
        "drop_pincode": "560001",
        "phone_number": "9876543210",
        "preferred_date": "2026-12-01",
    }


def test_plain_reattempt_prefers_tomorrow_and_changes_override_the_shipment(cfg):
    inp = instruction_input("clickpost", "update_phone", phone="+919000000001", extra=SHIPMENT)
    body = clickpost.action_body(inp, cfg, today=datetime(2026, 11, 28, 22, 0, tzinfo=IST))
    assert (body["phone_number"], body["preferred_date"], body["drop_pincode"]) == (
        "9000000001",
        "2026-11-29",
        "560001",
    )


async def test_rto_is_initiate_rto(cfg):
    script = Script(ok(200, SUCCESS))
    async with script.client() as http:
        await clickpost.send_instruction(
            instruction_input("clickpost", "rto", extra={"cp_id": 7, "account_code": "Ekart"}), cfg, http
        )
    assert script.json() == {
        "action": "INITIATE_RTO",
        "waybill": "AWB123",
        "cp_id": 7,
        "account_code": "Ekart",
    }


async def test_meta_success_false_in_a_200_is_a_rejection(cfg):
    answer = {"meta": {"success": False, "message": "NDR action not allowed for AWB", "status": 400}}
    async with Script(ok(200, answer)).client() as http:
        result = await clickpost.send_instruction(instruction_input("clickpost", extra=SHIPMENT), cfg, http)
    assert (result.status, result.http_status) == ("rejected", 400) and "not allowed" in result.detail


async def test_4xx_is_a_rejection(cfg):
    async with Script(httpx.Response(401, json={"meta": {"success": False}})).client() as http:
        result = await clickpost.send_instruction(instruction_input("clickpost", extra=SHIPMENT), cfg, http)
    assert (result.status, result.http_status) == ("rejected", 401)


@pytest.mark.parametrize("reply", [httpx.Response(504), httpx.ReadTimeout("slow")])
async def test_5xx_and_timeout_are_retryable_and_never_leak_the_key(cfg, reply):
    async with Script(reply).client() as http:
        with pytest.raises(CarrierUnavailable) as err:
            await clickpost.send_instruction(instruction_input("clickpost", extra=SHIPMENT), cfg, http)
    assert "lic-key-123" not in str(err.value)


async def test_hold_for_pickup_unsupported_and_missing_partner_ids_unsupported():
    cfg = settings(clickpost_cp_id=None, clickpost_account_code="")
    script = Script(ok(200, SUCCESS))
    async with script.client() as http:
        hold = await clickpost.send_instruction(instruction_input("clickpost", "hold_for_pickup"), cfg, http)
        no_ids = await clickpost.send_instruction(instruction_input("clickpost", extra=SHIPMENT), cfg, http)
    assert (hold.status, no_ids.status) == ("unsupported", "unsupported") and script.requests == []
