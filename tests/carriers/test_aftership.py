"""AfterShip tracking webhooks: subtags (tag fallback for new ones), aftership-hmac-sha256; tracking only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from carriers import aftership
from carriers.base import WebhookAuthError, WebhookFormatError
from domain.events import CarrierEvent
from domain.taxonomy import Milestone, NdrReason
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request


def webhook(
    tag: str,
    subtag: str | None,
    message: str = "",
    checkpoint_time: str | None = "2026-11-28T19:40:12+05:30",
    ts: int = 1795875012,
) -> bytes:
    checkpoints = (
        []
        if checkpoint_time is None
        else [
            {
                "checkpoint_time": checkpoint_time,
                "tag": tag,
                "subtag": subtag,
                "message": message,
                "location": "Bengaluru",
            }
        ]
    )
    return json.dumps(
        {
            "event": "tracking_update",
            "event_id": "0b6c3f9e-5b1a-4c7e-9f1d-2a3b4c5d6e7f",
            "is_tracking_first_tag": False,
            "ts": ts,
            "msg": {
                "tracking_number": "1490812345678",
                "slug": "delhivery",
                "tag": tag,
                "subtag": subtag,
                "subtag_message": message,
                "checkpoints": checkpoints,
            },
        }
    ).encode()


def test_every_code_in_the_table_maps_to_its_member():
    for table, vocabulary in ((aftership.TrackingStatus, Milestone), (aftership.IncidentReason, NdrReason)):
        for member in table:
            vocabulary(member.name)
            for code in member.value:
                assert table.find(code) is member
                assert code.split("_")[0] in aftership.TAG_FALLBACK  # every subtag's tag is known


# Reference 2.1, AfterShip column.
REFERENCE_MILESTONES = [
    ("InfoReceived", "InfoReceived_001", "created"),
    ("Pending", "Pending_001", "created"),
    ("InTransit", "InTransit_002", "picked_up"),
    *[("InTransit", f"InTransit_00{n}", "in_transit") for n in (1, 3, 4, 5, 6, 7, 8, 9)],
    *[("OutForDelivery", f"OutForDelivery_00{n}", "out_for_delivery") for n in (1, 3, 4)],
    *[("AttemptFail", f"AttemptFail_00{n}", "delivery_failed") for n in (1, 2, 3)],
    ("AvailableForPickup", "AvailableForPickup_001", "ready_for_pickup"),
    *[("Exception", f"Exception_00{n}", "on_hold") for n in (4, 5, 6, 9)],
    *[("Delivered", f"Delivered_00{n}", "delivered") for n in (1, 2, 3, 4, 5)],
    ("Exception", "Exception_010", "rto_initiated"),
    ("Exception", "Exception_011", "rto_delivered"),
    ("Exception", "Exception_012", "damaged"),
    ("Exception", "Exception_013", "lost"),
    ("Expired", "Expired_001", "unknown"),
]


@pytest.mark.parametrize("tag, subtag, milestone", REFERENCE_MILESTONES)
def test_reference_milestones(tag, subtag, milestone):
    events, problems = aftership.parse_webhook(request(webhook(tag, subtag)))
    assert (events[0].milestone, problems) == (milestone, [])


@pytest.mark.parametrize(
    "tag, subtag, reason",
    [
        ("AttemptFail", "AttemptFail_002", "customer_unavailable"),
        ("AttemptFail", "AttemptFail_003", "premises_closed"),
        ("Exception", "Exception_007", "address_issue"),
        ("Exception", "Exception_002", "address_issue"),
        ("Exception", "Exception_003", "customer_refused"),
        ("Exception", "Exception_001", "other"),
    ],
)
def test_reference_ndr_reasons(tag, subtag, reason):
    events, _ = aftership.parse_webhook(request(webhook(tag, subtag)))
    assert (events[0].milestone, events[0].ndr_reason) == ("delivery_failed", reason)


@pytest.mark.parametrize(
    "message, reason",
    [
        ("Consignee not reachable", "customer_unreachable"),
        ("OTP not shared by customer", "verification_failed"),
        ("?", "unknown"),
    ],
)
def test_generic_attempt_failure_takes_its_reason_from_the_checkpoint_text(message, reason):
    events, _ = aftership.parse_webhook(request(webhook("AttemptFail", "AttemptFail_001", message)))
    assert events[0].ndr_reason == reason


def test_new_subtag_is_mapped_by_its_tag_and_reported():
    events, problems = aftership.parse_webhook(request(webhook("Exception", "Exception_016")))
    assert (events[0].milestone, events[0].raw_code) == ("on_hold", "Exception_016")
    assert [(p.code, p.raw_code) for p in problems] == [("unmapped_subtag", "Exception_016")]


def test_unknown_tag_is_unknown_and_reported():
    events, problems = aftership.parse_webhook(request(webhook("Wormhole", "Wormhole_001")))
    assert events[0].milestone == "unknown"
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_status", "Wormhole_001")]


def test_parse_fixture_whole():
    events, problems = aftership.parse_webhook(request(fixture_bytes("aftership", "attempt_fail.json")))
    assert problems == []
    assert events == [
        CarrierEvent(
            carrier="aftership",
            tracking_number="1490812345678",
            milestone="delivery_failed",
            occurred_at="2026-11-28T14:10:12.000000Z",
            event_id="8d2f5a8e-3c4b-4f8e-9a57-0f3c2e1d7b64",
            ndr_reason="customer_unavailable",
            raw_code="AttemptFail_002",
            raw_status="Consignee Unavailable",
            location="Bengaluru",
        )
    ]


def test_naive_checkpoint_time_uses_the_webhook_ts_instead_of_guessing_a_zone():
    events, _ = aftership.parse_webhook(
        request(webhook("Delivered", "Delivered_001", checkpoint_time="2026-11-28T19:40:12", ts=1795875012))
    )
    assert events[0].occurred_at == "2026-11-28T14:10:12.000000Z"  # from ts


def test_other_events_are_ignored():
    body = json.dumps({"event": "edd_revise", "event_id": "x", "msg": {}}).encode()
    events, problems = aftership.parse_webhook(request(body))
    assert events == [] and problems[0].code == "ignored_event"


@pytest.mark.parametrize(
    "body, names",
    [
        (b"nope", "not valid JSON"),
        (b'{"event": "tracking_update", "msg": {}}', "body.event_id"),
        (b'{"event": "tracking_update", "event_id": "e", "msg": {"tag": "Delivered"}}', "tracking_number"),
        (
            b'{"event": "tracking_update", "event_id": "e", "msg": {"tracking_number": "1", "tag": "Delivered"}}',
            "body.ts",
        ),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names):
        aftership.parse_webhook(request(body))


def b64(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_signature_good_bad_missing_and_legacy_header():
    body = fixture_bytes("aftership", "attempt_fail.json")
    aftership.verify_webhook(request(body, {"aftership-hmac-sha256": b64(body, "as-secret")}), "as-secret")
    aftership.verify_webhook(
        request(body, {"am-webhook-signature": "hmac-sha256=" + b64(body, "as-secret")}), "as-secret"
    )
    for headers, why in (({}, "missing"), ({"aftership-hmac-sha256": b64(body, "nope")}, "does not match")):
        with pytest.raises(WebhookAuthError, match=why):
            aftership.verify_webhook(request(body, headers), "as-secret")
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        aftership.verify_webhook(request(body, {"aftership-hmac-sha256": b64(body, "")}), "")


async def test_tracking_only_every_action_is_unsupported(cfg):
    script = Script(ok())
    async with script.client() as http:
        result = await aftership.send_instruction(instruction_input("aftership", "rto"), cfg, http)
    assert result.status == "unsupported" and script.requests == []
