"""Generic carrier: our own JSON contract (issue 2), HMAC-signed both ways."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from carriers import generic
from carriers.base import CarrierUnavailable, WebhookAuthError, WebhookFormatError
from domain.events import CarrierEvent
from domain.taxonomy import Milestone, NdrAction, NdrReason
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request, settings


def signed(body: bytes, secret: str = "generic-secret") -> dict[str, str]:
    return {"X-Ndrflow-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


# --- code tables --------------------------------------------------------------------------------


def test_every_code_in_the_table_maps_to_its_member():
    for table, vocabulary in ((generic.TrackingStatus, Milestone), (generic.IncidentReason, NdrReason)):
        for member in table:
            vocabulary(member.name)  # every member is one of our values
            for code in member.value:
                assert table.find(code) is member


def test_every_milestone_and_reason_is_accepted():
    assert {m.name for m in generic.TrackingStatus} == {m.value for m in Milestone}
    assert {r.name for r in generic.IncidentReason} == {r.value for r in NdrReason}


# --- parsing ------------------------------------------------------------------------------------


def test_parse_fixture_whole():
    events, problems = generic.parse_webhook(request(fixture_bytes("generic", "events.json")))
    assert events[:2] == [
        CarrierEvent(
            carrier="generic",
            tracking_number="TRK1001",
            milestone="out_for_delivery",
            occurred_at="2026-11-28T03:40:00.000000Z",
            event_id="e1",
            ndr_reason=None,
            raw_code="OFD",
            raw_status="Out for delivery",
            location="Bengaluru",
        ),
        CarrierEvent(
            carrier="generic",
            tracking_number="TRK1001",
            milestone="delivery_failed",
            occurred_at="2026-11-28T08:12:00.000000Z",
            event_id="e2",
            ndr_reason="customer_unavailable",
            raw_code="NDR-CU",
            raw_status="Customer not at home",
            location="Bengaluru",
            attempt=1,
        ),
    ]
    unknown = events[2]
    assert unknown.milestone == "unknown" and unknown.raw_code == "TLP"
    assert unknown.event_id and unknown.event_id.startswith("h-")
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_status", "teleported")]


def test_event_id_hash_is_stable_for_the_same_scan():
    body = json.dumps(
        {"events": [{"tracking_number": "T1", "status": "in_transit", "occurred_at": "2026-11-28T10:00:00Z"}]}
    ).encode()
    first, _ = generic.parse_webhook(request(body))
    again, _ = generic.parse_webhook(request(body))
    assert first[0].event_id == again[0].event_id


def test_unknown_reason_is_reported_and_kept_unknown():
    body = json.dumps(
        {
            "events": [
                {
                    "tracking_number": "T1",
                    "status": "delivery_failed",
                    "ndr_reason": "alien_abduction",
                    "occurred_at": "2026-11-28T10:00:00Z",
                }
            ]
        }
    ).encode()
    events, problems = generic.parse_webhook(request(body))
    assert events[0].milestone == "delivery_failed" and events[0].ndr_reason == "unknown"
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_reason", "alien_abduction")]


@pytest.mark.parametrize(
    "body, names",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "body must be a JSON object"),
        (b'{"events": []}', "events must be a non-empty list"),
        (
            b'{"events": [{"status": "delivered", "occurred_at": "2026-11-28T10:00:00Z"}]}',
            "events[0].tracking_number",
        ),
        (
            b'{"events": [{"tracking_number": "T", "occurred_at": "2026-11-28T10:00:00Z"}]}',
            "events[0].status",
        ),
        (
            b'{"events": [{"tracking_number": "T", "status": "delivered", "occurred_at": "yesterday"}]}',
            "events[0].occurred_at",
        ),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names.replace("[", r"\[").replace("]", r"\]")):
        generic.parse_webhook(request(body))


# --- signatures ---------------------------------------------------------------------------------


def test_good_signature_passes():
    body = fixture_bytes("generic", "events.json")
    generic.verify_webhook(request(body, signed(body)), "generic-secret")


@pytest.mark.parametrize(
    "headers, why",
    [
        ({}, "missing"),
        ({"X-Ndrflow-Signature": "deadbeef"}, "sha256="),
        ({"X-Ndrflow-Signature": "sha256=" + "0" * 64}, "does not match"),
    ],
)
def test_bad_or_missing_signature_is_refused(headers, why):
    with pytest.raises(WebhookAuthError, match=why):
        generic.verify_webhook(request(b'{"events":[]}', headers), "generic-secret")


def test_signature_is_over_the_raw_bytes_not_reserialised_json():
    body = b'{"events": [ {"tracking_number":"T1"} ]}'
    reformatted = json.dumps(json.loads(body)).encode()
    with pytest.raises(WebhookAuthError):
        generic.verify_webhook(request(reformatted, signed(body)), "generic-secret")


def test_no_secret_configured_refuses_even_a_signed_request():
    body = b'{"events":[]}'
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        generic.verify_webhook(request(body, signed(body, "")), "")


# --- instructions -------------------------------------------------------------------------------


async def test_instruction_is_signed_json_with_idempotency_key(cfg):
    script = Script(ok(200, {"reference": "CAR-77"}))
    inp = instruction_input("generic", "reschedule", requested_date="2026-12-01", comments="after 5pm")
    async with script.client() as http:
        result = await generic.send_instruction(inp, cfg, http)
    assert (result.status, result.carrier_reference) == ("accepted", "CAR-77")
    req = script.requests[0]
    assert req.method == "POST" and str(req.url) == "https://carrier.example/ndr/instructions"
    assert req.headers["Idempotency-Key"] == "shp_01:ndr1:1"
    assert req.headers["X-Ndrflow-Signature"] == generic.sign(req.content, "generic-secret")
    assert script.json() == {
        "idempotency_key": "shp_01:ndr1:1",
        "shipment_id": "shp_01",
        "carrier": "generic",
        "tracking_number": "AWB123",
        "attempt": 1,
        "action": "reschedule",
        "requested_date": "2026-12-01",
        "phone": None,
        "address": None,
        "comments": "after 5pm",
        "source": "customer",
    }


async def test_retries_send_identical_bytes(cfg):
    script = Script(ok(200))
    inp = instruction_input("generic", "rto")
    async with script.client() as http:
        await generic.send_instruction(inp, cfg, http)
        await generic.send_instruction(inp, cfg, http)
    assert script.requests[0].content == script.requests[1].content


@pytest.mark.parametrize(
    "reply",
    [httpx.Response(503), httpx.Response(429), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
)
async def test_5xx_429_and_timeouts_are_retryable(cfg, reply):
    async with Script(reply).client() as http:
        with pytest.raises(CarrierUnavailable):
            await generic.send_instruction(instruction_input("generic"), cfg, http)


async def test_4xx_is_a_recorded_rejection(cfg):
    async with Script(httpx.Response(409, json={"error": "already returned"})).client() as http:
        result = await generic.send_instruction(instruction_input("generic"), cfg, http)
    assert result.status == "rejected" and result.http_status == 409 and "already returned" in result.detail


async def test_without_an_instruction_url_it_says_unsupported():
    cfg = settings(generic_instruction_url="", generic_base_url="")
    async with Script(ok()).client() as http:
        result = await generic.send_instruction(instruction_input("generic"), cfg, http)
    assert result.status == "unsupported"


def test_all_canonical_actions_are_supported():
    assert generic.supported_actions == {a.value for a in NdrAction}


async def test_poll_tracking_reads_the_contract(cfg):
    body = json.loads(fixture_bytes("generic", "events.json"))
    script = Script(ok(200, body))
    async with script.client() as http:
        events = await generic.poll_tracking("TRK1001", cfg, http)
    assert str(script.requests[0].url) == "https://carrier.example/tracking/TRK1001"
    assert [e.event_id for e in events][:2] == ["e1", "e2"]


async def test_poll_tracking_404_is_no_events(cfg):
    async with Script(httpx.Response(404)).client() as http:
        assert await generic.poll_tracking("NOPE", cfg, http) == []
