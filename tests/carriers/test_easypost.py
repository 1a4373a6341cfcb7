"""EasyPost tracker events: status + status_detail, X-Hmac-Signature; tracking only."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from carriers import easypost
from carriers.base import WebhookAuthError, WebhookFormatError
from domain.events import CarrierEvent
from domain.taxonomy import Milestone, NdrReason
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request


def event(
    status: str, detail: str | None = None, message: str = "", description: str = "tracker.updated"
) -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "object": "Event",
            "description": description,
            "result": {
                "object": "Tracker",
                "tracking_code": "EZ1000000001",
                "status": status,
                "status_detail": detail,
                "tracking_details": [
                    {
                        "status": status,
                        "status_detail": detail,
                        "message": message,
                        "datetime": "2026-11-28T14:10:00Z",
                    }
                ],
            },
        }
    ).encode()


def test_every_code_in_the_table_maps_to_its_member():
    for table, vocabulary in (
        (easypost.TrackingStatus, Milestone),
        (easypost.DetailStatus, Milestone),
        (easypost.IncidentReason, NdrReason),
    ):
        for member in table:
            vocabulary(member.name)
            for code in member.value:
                assert table.find(code) is member


# Reference 2.1, EasyPost column (status, with status_detail where it decides).
REFERENCE_MILESTONES = [
    ("pre_transit", None, "created"),
    ("in_transit", "arrived_at_facility", "in_transit"),
    ("out_for_delivery", "out_for_delivery", "out_for_delivery"),
    ("failure", None, "delivery_failed"),
    ("in_transit", "delivery_exception", "delivery_failed"),
    ("available_for_pickup", None, "ready_for_pickup"),
    ("in_transit", "held", "on_hold"),
    ("in_transit", "delayed", "on_hold"),
    ("in_transit", "weather_delay", "on_hold"),
    ("delivered", "arrived_at_destination", "delivered"),
    ("return_to_sender", "return", "rto_initiated"),
    ("cancelled", None, "cancelled"),
    ("failure", "lost", "lost"),
    ("failure", "damaged", "damaged"),
    ("unknown", None, "unknown"),
    ("error", None, "unknown"),
]


@pytest.mark.parametrize("status, detail, milestone", REFERENCE_MILESTONES)
def test_reference_milestones(status, detail, milestone):
    events, _ = easypost.parse_webhook(request(event(status, detail)))
    assert events[0].milestone == milestone


@pytest.mark.parametrize(
    "detail, reason",
    [
        ("delivery_exception", "customer_unavailable"),
        ("address_correction", "address_issue"),
        ("refused", "customer_refused"),
        ("cancelled", "order_cancelled_by_customer"),
        ("unknown", "other"),
    ],
)
def test_reference_ndr_reasons(detail, reason):
    events, problems = easypost.parse_webhook(request(event("failure", detail)))
    assert (events[0].ndr_reason, problems) == (reason, [])


def test_a_precise_carrier_message_refines_a_generic_exception():
    events, _ = easypost.parse_webhook(
        request(event("failure", "delivery_exception", "Business closed - delivery attempted"))
    )
    assert events[0].ndr_reason == "premises_closed"


def test_parse_fixture_whole():
    events, problems = easypost.parse_webhook(request(fixture_bytes("easypost", "tracker_failure.json")))
    assert problems == []
    assert events == [
        CarrierEvent(
            carrier="easypost",
            tracking_number="9400110898825022579493",
            milestone="delivery_failed",
            occurred_at="2026-11-28T14:10:00.000000Z",
            event_id="evt_4e1d2c3b4a5968778695a4b3c2d1e0f1",  # EasyPost's own id: dedupes redeliveries
            ndr_reason="customer_unavailable",
            raw_code="failure/delivery_exception",
            raw_status="Notice Left (No Authorized Recipient Available)",
            location="AUSTIN, TX",
        )
    ]


def test_unknown_status_is_unknown_and_reported():
    events, problems = easypost.parse_webhook(request(event("beamed_up")))
    assert (events[0].milestone, events[0].raw_code) == ("unknown", "beamed_up")
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_status", "beamed_up")]


def test_other_event_types_are_acknowledged_without_events():
    events, problems = easypost.parse_webhook(request(event("delivered", description="batch.created")))
    assert events == [] and problems[0].code == "ignored_event"


@pytest.mark.parametrize(
    "body, names",
    [
        (b"{", "not valid JSON"),
        (b'{"description": "tracker.updated"}', "body.id"),
        (b'{"id": "evt_1", "description": "tracker.updated"}', "body.result must be a JSON object"),
        (
            b'{"id": "evt_1", "description": "tracker.updated", "result": {"status": "delivered"}}',
            "tracking_code",
        ),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names):
        easypost.parse_webhook(request(body))


def hex_sig(body: bytes, secret: str) -> str:
    return "hmac-sha256-hex=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_good_bad_missing():
    body = fixture_bytes("easypost", "tracker_failure.json")
    easypost.verify_webhook(request(body, {"X-Hmac-Signature": hex_sig(body, "ep-secret")}), "ep-secret")
    for headers, why in (
        ({}, "missing"),
        ({"X-Hmac-Signature": hex_sig(body, "other")}, "does not match"),
        ({"X-Hmac-Signature": hex_sig(body, "ep-secret")[len("hmac-sha256-hex=") :]}, "hmac-sha256-hex="),
        ({"X-Hmac-Signature": hex_sig(body + b" ", "ep-secret")}, "does not match"),
    ):
        with pytest.raises(WebhookAuthError, match=why):
            easypost.verify_webhook(request(body, headers), "ep-secret")
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        easypost.verify_webhook(request(body, {"X-Hmac-Signature": hex_sig(body, "")}), "")


def test_secret_is_nfkd_normalised_like_easyposts_libraries():
    body = b'{"id":"evt_1"}'
    fullwidth = "\uff53\uff45\uff43\uff52\uff45\uff54"  # "secret" in fullwidth letters
    easypost.verify_webhook(request(body, {"X-Hmac-Signature": hex_sig(body, "secret")}), fullwidth)


async def test_tracking_only_every_action_is_unsupported(cfg):
    script = Script(ok())
    async with script.client() as http:
        result = await easypost.send_instruction(instruction_input("easypost", "reattempt"), cfg, http)
    assert (
        result.status == "unsupported" and script.requests == [] and easypost.supported_actions == frozenset()
    )
