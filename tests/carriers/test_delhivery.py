"""Delhivery: push parsing keyed on (StatusType, Status) + NSL, IST times, async NDR API."""

from __future__ import annotations

import json

import httpx
import pytest

from carriers import delhivery
from carriers.base import CarrierUnavailable, WebhookAuthError, WebhookFormatError
from domain.events import CarrierEvent
from domain.taxonomy import Milestone, NdrReason
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request, settings


def push(
    status_type: str,
    status: str,
    nsl: str | None = None,
    when: str = "2026-11-28T19:40:12.000",
    text: str = "",
) -> bytes:
    """A push with the documented fields (reference section 4)."""
    return json.dumps(
        {
            "Shipment": {
                "AWB": "1490812345678",
                "ReferenceNo": "A-1001",
                "NSLCode": nsl,
                "Status": {
                    "Status": status,
                    "StatusType": status_type,
                    "StatusDateTime": when,
                    "StatusLocation": "Bengaluru_Koramangala_D (Karnataka)",
                    "Instructions": text,
                },
                "PickUpDate": "2026-11-26T11:02:44",
                "Sortcode": "BLR/KRM",
            }
        }
    ).encode()


# --- code tables --------------------------------------------------------------------------------


def test_every_code_in_the_table_maps_to_its_member():
    for table, vocabulary in ((delhivery.TrackingStatus, Milestone), (delhivery.IncidentReason, NdrReason)):
        for member in table:
            vocabulary(member.name)
            for code in member.value:
                assert table.find(code) is member


# Reference 2.1 (Delhivery column) and 2.2 (NSL column), read together as the reference says.
REFERENCE_MILESTONES = [
    ("UD", "Manifested", None, "created"),
    ("UD", "Not Picked", None, "created"),
    ("UD", "Not Picked", "X-PNP", "pickup_failed"),
    ("UD", "In Transit", "X-ILL2F", "in_transit"),
    ("UD", "Pending", "X-PIOM", "in_transit"),
    ("UD", "Dispatched", "X-DDD3FD", "out_for_delivery"),
    ("UD", "Pending", "EOD-11", "delivery_failed"),
    ("DL", "Delivered", "EOD-38", "delivered"),
    ("RT", "In Transit", None, "rto_initiated"),
    ("RT", "Pending", None, "rto_in_transit"),
    ("RT", "Dispatched", None, "rto_in_transit"),
    ("DL", "RTO", None, "rto_delivered"),
    ("CN", "Canceled", None, "cancelled"),
]


@pytest.mark.parametrize("status_type, status, nsl, milestone", REFERENCE_MILESTONES)
def test_reference_milestones(status_type, status, nsl, milestone):
    events, problems = delhivery.parse_webhook(request(push(status_type, status, nsl)))
    assert events[0].milestone == milestone
    assert problems == []


def test_in_transit_means_forward_under_ud_but_return_under_rt():
    fwd, _ = delhivery.parse_webhook(request(push("UD", "In Transit")))
    ret, _ = delhivery.parse_webhook(request(push("RT", "In Transit")))
    assert (fwd[0].milestone, ret[0].milestone) == ("in_transit", "rto_initiated")


REFERENCE_REASONS = [
    ("EOD-11", "customer_unavailable"),
    ("EOD-43", "customer_unreachable"),
    ("EOD-74", "address_issue"),
    ("EOD-3", "reschedule_requested"),
    ("EOD-40", "payment_issue"),
    ("EOD-53", "payment_issue"),
    ("EOD-104", "access_restricted"),
    ("EOD-69", "open_delivery_requested"),
    ("EOD-6", "customer_refused"),
    ("EOD-111", "customer_refused"),
    ("EOD-86", "not_attempted"),
]


@pytest.mark.parametrize("nsl, reason", REFERENCE_REASONS)
def test_reference_ndr_reasons(nsl, reason):
    events, problems = delhivery.parse_webhook(request(push("UD", "Pending", nsl, text="whatever")))
    assert (events[0].milestone, events[0].ndr_reason, problems) == ("delivery_failed", reason, [])


def test_unknown_nsl_falls_back_to_the_instructions_text_and_is_reported():
    events, problems = delhivery.parse_webhook(
        request(push("UD", "Pending", "EOD-999", text="Office closed on Sunday"))
    )
    assert (events[0].milestone, events[0].ndr_reason) == ("delivery_failed", "premises_closed")
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_reason", "EOD-999")]


def test_unknown_status_is_unknown_keeps_raw_code_and_is_reported():
    events, problems = delhivery.parse_webhook(request(push("XX", "Teleported", "X-1")))
    assert events[0].milestone == "unknown"
    assert events[0].raw_code == "XX/Teleported|X-1"
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_status", "XX/Teleported")]


def test_parse_fixture_whole():
    events, problems = delhivery.parse_webhook(request(fixture_bytes("delhivery", "ndr_push.json")))
    assert problems == []
    assert events == [
        CarrierEvent(
            carrier="delhivery",
            tracking_number="1490812345678",
            milestone="delivery_failed",
            # 19:40:12 IST without an offset is 14:10:12 UTC, not 19:40:12 UTC.
            occurred_at="2026-11-28T14:10:12.000000Z",
            event_id=events[0].event_id,
            ndr_reason="customer_unavailable",
            raw_code="UD/Pending|EOD-11",
            raw_status="Consignee Unavailable",
            location="Bengaluru_Koramangala_D (Karnataka)",
        )
    ]
    assert events[0].event_id.startswith("h-")


@pytest.mark.parametrize(
    "when, utc",
    [
        ("2026-11-29 11:05:00", "2026-11-29T05:35:00.000000Z"),
        ("2026-11-29T11:05:00", "2026-11-29T05:35:00.000000Z"),
        ("2026-11-29T00:05:00.000", "2026-11-28T18:35:00.000000Z"),
        ("2026-11-29T11:05:00+05:30", "2026-11-29T05:35:00.000000Z"),
        ("2026-11-29T05:35:00Z", "2026-11-29T05:35:00.000000Z"),
    ],
)
def test_local_times_are_ist(when, utc):
    events, _ = delhivery.parse_webhook(request(push("DL", "Delivered", when=when)))
    assert events[0].occurred_at == utc


def test_same_scan_twice_has_the_same_event_id_and_different_scans_differ():
    a, _ = delhivery.parse_webhook(request(push("UD", "Pending", "EOD-11")))
    b, _ = delhivery.parse_webhook(request(push("UD", "Pending", "EOD-11")))
    c, _ = delhivery.parse_webhook(request(push("UD", "Pending", "EOD-11", when="2026-11-29T19:40:12.000")))
    assert a[0].event_id == b[0].event_id != c[0].event_id


@pytest.mark.parametrize(
    "body, names",
    [
        (b"nope", "not valid JSON"),
        (b'{"Shipment": "x"}', "body.Shipment must be a JSON object"),
        (b'{"Shipment": {"Status": {}}}', "AWB"),
        (
            b'{"Shipment": {"AWB": "1", "Status": {"Status": "Pending", "StatusDateTime": "2026-11-28 10:00:00"}}}',
            "StatusType",
        ),
        (
            b'{"Shipment": {"AWB": "1", "Status": {"Status": "Pending", "StatusType": "UD", "StatusDateTime": "soon"}}}',
            "StatusDateTime",
        ),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names):
        delhivery.parse_webhook(request(body))


# --- authentication -----------------------------------------------------------------------------


def test_shared_secret_header():
    body = push("UD", "Dispatched")
    delhivery.verify_webhook(request(body, {"X-Delhivery-Token": "dlv-push-secret"}), "dlv-push-secret")
    with pytest.raises(WebhookAuthError, match="wrong"):
        delhivery.verify_webhook(request(body, {"X-Delhivery-Token": "guess"}), "dlv-push-secret")
    with pytest.raises(WebhookAuthError, match="missing"):
        delhivery.verify_webhook(request(body), "dlv-push-secret")
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        delhivery.verify_webhook(request(body, {"X-Delhivery-Token": ""}), "")


def test_header_name_is_configurable():
    body = push("UD", "Dispatched")
    delhivery.verify_webhook(request(body, {"Authorization": "s3"}), "s3", header="authorization")


# --- NDR API ------------------------------------------------------------------------------------


def upl_answer(status: str, remarks: str = "") -> httpx.Response:
    if status == "Pending":
        return ok(200, {"request_id": "UPL123", "status": "Pending", "results": []})
    return ok(
        200,
        {
            "request_id": "UPL123",
            "status": "Complete",
            "results": [{"waybill": "AWB123", "status": status, "remarks": remarks}],
        },
    )


async def test_reattempt_submits_then_follows_the_upl_until_accepted(cfg):
    script = Script(
        ok(200, {"status": True, "request_id": "UPL123"}), upl_answer("Pending"), upl_answer("Success")
    )
    seen: list[str] = []

    async def remember(ref: str) -> None:
        seen.append(ref)

    async with script.client() as http:
        result = await delhivery.send_instruction(
            instruction_input("delhivery"), cfg, http, on_reference=remember
        )
    assert (result.status, result.carrier_reference) == ("accepted", "UPL123")
    assert seen == ["UPL123"]
    post, check1, check2 = script.requests
    assert (post.method, post.url.path) == ("POST", "/api/p/update")
    assert post.headers["Authorization"] == "Token dlv-token"
    assert json.loads(post.content) == {"data": [{"waybill": "AWB123", "act": "RE-ATTEMPT"}]}
    for check in (check1, check2):
        assert (check.method, check.url.path, check.url.params["verbose"]) == (
            "GET",
            "/api/cmu/get_bulk_upl/UPL123",
            "true",
        )
        assert check.headers["Authorization"] == "Token dlv-token"


async def test_rejected_upload_is_a_rejection_with_delhiverys_remarks(cfg):
    script = Script(
        ok(200, {"request_id": "UPL123"}), upl_answer("Failure", "NSL not eligible for RE-ATTEMPT")
    )
    async with script.client() as http:
        result = await delhivery.send_instruction(instruction_input("delhivery"), cfg, http)
    assert (result.status, result.carrier_reference) == ("rejected", "UPL123")
    assert "NSL not eligible" in result.detail


async def test_still_pending_after_bounded_checks_is_retryable(cfg):
    script = Script(ok(200, {"request_id": "UPL123"}), upl_answer("Pending"))
    async with script.client() as http:
        with pytest.raises(CarrierUnavailable, match="still pending"):
            await delhivery.send_instruction(instruction_input("delhivery"), cfg, http)
    assert len(script.requests) == 1 + cfg.delhivery_upl_poll_attempts


async def test_follow_up_never_resubmits(cfg):
    script = Script(upl_answer("Success"))
    async with script.client() as http:
        result = await delhivery.follow_up("UPL123", instruction_input("delhivery"), cfg, http)
    assert result.status == "accepted"
    assert [r.method for r in script.requests] == ["GET"]


async def test_reschedule_is_defer_dlv_with_the_date(cfg):
    script = Script(ok(200, {"request_id": "UPL9"}), upl_answer("Success"))
    async with script.client() as http:
        await delhivery.send_instruction(
            instruction_input("delhivery", "reschedule", requested_date="2026-12-01"), cfg, http
        )
    assert script.json(0) == {
        "data": [{"waybill": "AWB123", "act": "DEFER_DLV", "action_data": {"deferred_date": "2026-12-01"}}]
    }


async def test_phone_and_address_changes_are_edit_details(cfg):
    script = Script(ok(200, {"request_id": "UPL9"}), upl_answer("Success"))
    inp = instruction_input(
        "delhivery",
        "update_address",
        phone="+919876543210",
        address={
            "line1": "12 MG Road",
            "landmark": "near Metro",
            "city": "Bengaluru",
            "postal_code": "560001",
        },
    )
    async with script.client() as http:
        await delhivery.send_instruction(inp, cfg, http)
    assert script.json(0)["data"][0] == {
        "waybill": "AWB123",
        "act": "EDIT_DETAILS",
        "action_data": {"phone": "9876543210", "add": "12 MG Road, near Metro, Bengaluru, 560001"},
    }


@pytest.mark.parametrize("action", ["rto", "hold_for_pickup"])
async def test_what_delhivery_cannot_do_is_unsupported_without_a_call(cfg, action):
    script = Script(ok())
    async with script.client() as http:
        result = await delhivery.send_instruction(instruction_input("delhivery", action), cfg, http)
    assert result.status == "unsupported" and script.requests == []
    assert action not in delhivery.supported_actions


@pytest.mark.parametrize("reply", [httpx.Response(502), httpx.ConnectTimeout("slow")])
async def test_submit_5xx_and_timeout_are_retryable(cfg, reply):
    async with Script(reply).client() as http:
        with pytest.raises(CarrierUnavailable):
            await delhivery.send_instruction(instruction_input("delhivery"), cfg, http)


async def test_submit_4xx_is_rejected(cfg):
    async with Script(httpx.Response(401, json={"detail": "Invalid token"})).client() as http:
        result = await delhivery.send_instruction(instruction_input("delhivery"), cfg, http)
    assert (result.status, result.http_status) == ("rejected", 401)


async def test_missing_token_is_unsupported():
    async with Script(ok()).client() as http:
        result = await delhivery.send_instruction(
            instruction_input("delhivery"), settings(delhivery_api_token=""), http
        )
    assert result.status == "unsupported"


# --- tracking pull ------------------------------------------------------------------------------


async def test_poll_tracking_maps_every_scan(cfg):
    script = Script(ok(200, json.loads(fixture_bytes("delhivery", "tracking_response.json"))))
    async with script.client() as http:
        events = await delhivery.poll_tracking("1490812345678", cfg, http)
    req = script.requests[0]
    assert (req.url.path, req.url.params["waybill"], req.headers["Authorization"]) == (
        "/api/v1/packages/json/",
        "1490812345678",
        "Token dlv-token",
    )
    assert [(e.milestone, e.ndr_reason, e.occurred_at) for e in events] == [
        ("created", None, "2026-11-26T03:30:00.000000Z"),
        ("out_for_delivery", None, "2026-11-28T02:45:00.000000Z"),
        ("delivery_failed", "address_issue", "2026-11-28T14:10:12.000000Z"),
    ]


async def test_polled_scan_and_pushed_scan_share_an_event_id(cfg):
    script = Script(ok(200, json.loads(fixture_bytes("delhivery", "tracking_response.json"))))
    async with script.client() as http:
        polled = await delhivery.poll_tracking("1490812345678", cfg, http)
    pushed, _ = delhivery.parse_webhook(request(push("UD", "Pending", "EOD-74", text="Address incomplete")))
    assert pushed[0].event_id == polled[-1].event_id
