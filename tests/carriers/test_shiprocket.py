"""Shiprocket: webhook status ids, IST times, x-api-key token; NDR action with a cached bearer token."""

from __future__ import annotations

import json

import httpx
import pytest

from carriers import shiprocket
from carriers.base import CarrierUnavailable, WebhookAuthError, WebhookFormatError
from domain.events import CarrierEvent
from domain.taxonomy import Milestone
from tests.carriers.conftest import Script, fixture_bytes, instruction_input, ok, request


def webhook(
    status_id: int | str, label: str = "", activity: str = "", when: str = "28 11 2026 19:40:12"
) -> bytes:
    return json.dumps(
        {
            "awb": "19041424751540",
            "courier_name": "Delhivery Surface",
            "current_status": label,
            "current_status_id": status_id,
            "shipment_status": label,
            "shipment_status_id": status_id,
            "current_timestamp": when,
            "order_id": "1373900_150876814",
            "sr_order_id": 348456385,
            "scans": [
                {
                    "date": "2026-11-28 19:40:12",
                    "activity": activity,
                    "location": "BLR",
                    "sr-status": str(status_id),
                    "sr-status-label": label,
                }
            ],
        }
    ).encode()


def test_every_code_in_the_table_maps_to_its_member():
    for member in shiprocket.TrackingStatus:
        Milestone(member.name)
        for code in member.value:
            assert shiprocket.TrackingStatus.find(code) is member


# Shiprocket's shipment status list (the ids its webhook sends), and where each one lands.
STATUS_LIST = [
    (6, "SHIPPED", "picked_up"),
    (7, "DELIVERED", "delivered"),
    (8, "CANCELED", "cancelled"),
    (9, "RTO INITIATED", "rto_initiated"),
    (10, "RTO DELIVERED", "rto_delivered"),
    (12, "LOST", "lost"),
    (13, "PICKUP ERROR", "pickup_failed"),
    (14, "RTO ACKNOWLEDGED", "rto_initiated"),
    (15, "PICKUP RESCHEDULED", "created"),
    (16, "CANCELLATION REQUESTED", "cancelled"),
    (17, "OUT FOR DELIVERY", "out_for_delivery"),
    (18, "IN TRANSIT", "in_transit"),
    (19, "OUT FOR PICKUP", "created"),
    (20, "PICKUP EXCEPTION", "pickup_failed"),
    (21, "UNDELIVERED", "delivery_failed"),
    (22, "DELAYED", "on_hold"),
    (23, "PARTIAL DELIVERED", "delivered"),
    (24, "DESTROYED", "damaged"),
    (25, "DAMAGED", "damaged"),
    (26, "FULFILLED", "delivered"),
    (38, "REACHED AT DESTINATION HUB", "in_transit"),
    (39, "MISROUTED", "in_transit"),
    (40, "RTO NDR", "rto_in_transit"),
    (41, "RTO OFD", "rto_in_transit"),
    (42, "PICKED UP", "picked_up"),
    (43, "SELF FULFILLED", "delivered"),
    (44, "DISPOSED OFF", "damaged"),
    (45, "CANCELLED BEFORE DISPATCHED", "cancelled"),
    (46, "RTO IN TRANSIT", "rto_in_transit"),
    (48, "REACHED WAREHOUSE", "in_transit"),
    (50, "IN FLIGHT", "in_transit"),
    (51, "HANDOVER TO COURIER", "picked_up"),
    (52, "SHIPMENT BOOKED", "created"),
    (75, "RTO LOCK", "rto_initiated"),
    (76, "UNTRACEABLE", "on_hold"),
    (77, "ISSUE RELATED TO THE RECIPIENT", "delivery_failed"),
    (78, "REACHED BACK AT SELLER CITY", "rto_in_transit"),
]


@pytest.mark.parametrize("status_id, label, milestone", STATUS_LIST)
def test_status_list(status_id, label, milestone):
    events, problems = shiprocket.parse_webhook(request(webhook(status_id, label)))
    assert (events[0].milestone, problems) == (milestone, [])


@pytest.mark.parametrize(
    "activity, reason",
    [
        ("Consignee Unavailable", "customer_unavailable"),
        ("Customer not reachable on phone", "customer_unreachable"),
        ("Address incomplete, not locatable", "address_issue"),
        ("Customer refused to accept", "customer_refused"),
        ("Customer asked for future delivery", "reschedule_requested"),
        ("COD cash not ready", "payment_issue"),
        ("Out of delivery area (ODA)", "out_of_delivery_area"),
        ("Something else happened", "unknown"),
    ],
)
def test_undelivered_reason_comes_from_the_scan_text(activity, reason):
    events, _ = shiprocket.parse_webhook(request(webhook(21, "UNDELIVERED", activity)))
    assert (events[0].milestone, events[0].ndr_reason) == ("delivery_failed", reason)


def test_parse_fixture_whole():
    events, problems = shiprocket.parse_webhook(request(fixture_bytes("shiprocket", "undelivered.json")))
    assert problems == []
    assert events == [
        CarrierEvent(
            carrier="shiprocket",
            tracking_number="19041424751540",
            milestone="delivery_failed",
            occurred_at="2026-11-28T14:10:12.000000Z",  # "28 11 2026 19:40:12" is IST
            event_id=events[0].event_id,
            ndr_reason="customer_unavailable",
            raw_code="21",
            raw_status="Consignee Unavailable",
            location="Bengaluru_Koramangala_D",
        )
    ]


def test_unknown_status_id_is_unknown_and_reported():
    events, problems = shiprocket.parse_webhook(request(webhook(999, "SOMETHING NEW")))
    assert (events[0].milestone, events[0].raw_code) == ("unknown", "999")
    assert [(p.code, p.raw_code) for p in problems] == [("unknown_status", "999")]


@pytest.mark.parametrize(
    "body, names",
    [
        (b"{", "not valid JSON"),
        (b'{"current_status_id": 7, "current_timestamp": "28 11 2026 19:40:12"}', "body.awb"),
        (b'{"awb": "1", "current_timestamp": "28 11 2026 19:40:12"}', "current_status_id"),
        (b'{"awb": "1", "current_status_id": 7, "current_timestamp": "the 28th"}', "current_timestamp"),
    ],
)
def test_malformed_body_names_the_problem(body, names):
    with pytest.raises(WebhookFormatError, match=names):
        shiprocket.parse_webhook(request(body))


def test_token_header():
    body = webhook(7, "DELIVERED")
    shiprocket.verify_webhook(request(body, {"X-Api-Key": "sr-token"}), "sr-token")
    for headers, why in (({}, "missing"), ({"x-api-key": "sr-tokex"}, "wrong")):
        with pytest.raises(WebhookAuthError, match=why):
            shiprocket.verify_webhook(request(body, headers), "sr-token")
    with pytest.raises(WebhookAuthError, match="no webhook secret"):
        shiprocket.verify_webhook(request(body, {"x-api-key": ""}), "")


# --- NDR action ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def login_then(*replies: httpx.Response | Exception) -> Script:
    def login(req: httpx.Request) -> httpx.Response:
        return ok(200, {"token": f"tok-{len(script.requests)}"})

    script = Script()
    script.replies = []
    # Answer logins and actions by path so the order of calls is checked by the test, not here.
    actions = list(replies)

    def handler(req: httpx.Request) -> httpx.Response:
        script.requests.append(req)
        if req.url.path.endswith("/auth/login"):
            return login(req)
        reply = actions.pop(0) if len(actions) > 1 else actions[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    script.handler = handler  # type: ignore[method-assign]
    return script


async def test_logs_in_then_posts_the_action_with_the_bearer_token(cfg):
    script = login_then(httpx.Response(202, json={"status": "Data Updated Sucessfully"}))
    tokens = shiprocket.TokenCache(clock=Clock())
    async with script.client() as http:
        result = await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    assert (result.status, result.http_status) == ("accepted", 202)
    login, action = script.requests
    assert (login.method, login.url.path) == ("POST", "/v1/external/auth/login")
    assert json.loads(login.content) == {"email": "api@merchant.example", "password": "pw"}
    assert (action.method, action.url.path) == ("POST", "/v1/external/ndr/AWB123/action")
    assert action.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(action.content) == {
        "action": "re-attempt",
        "comments": "reattempt requested by customer via ndrflow",
    }


async def test_token_is_cached_and_refreshed_a_day_before_its_ten_days_end(cfg):
    clock = Clock()
    tokens = shiprocket.TokenCache(clock=clock)
    script = login_then(httpx.Response(202))
    async with script.client() as http:
        await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
        clock.now += 8 * 24 * 3600  # day 8: still fresh
        await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
        assert tokens.logins == 1
        clock.now += 1.5 * 24 * 3600  # day 9.5: inside the refresh margin
        await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    assert tokens.logins == 2
    assert script.requests[-1].headers["Authorization"] == "Bearer tok-4"


async def test_a_401_logs_in_again_once_and_retries(cfg):
    tokens = shiprocket.TokenCache(clock=Clock())
    script = login_then(httpx.Response(401, json={"message": "Token has expired"}), httpx.Response(202))
    async with script.client() as http:
        result = await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    assert result.status == "accepted" and tokens.logins == 2
    assert [r.url.path.rsplit("/", 1)[-1] for r in script.requests] == ["login", "action", "login", "action"]


async def test_a_second_401_is_a_rejection(cfg):
    tokens = shiprocket.TokenCache(clock=Clock())
    script = login_then(httpx.Response(401, json={"message": "Unauthenticated"}))
    async with script.client() as http:
        result = await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    assert (result.status, result.http_status) == ("rejected", 401)


async def test_refused_login_is_a_rejection(cfg):
    script = Script(httpx.Response(400, json={"message": "Invalid email and password combination"}))
    async with script.client() as http:
        result = await shiprocket.send_instruction(
            instruction_input("shiprocket"), cfg, http, tokens=shiprocket.TokenCache()
        )
    assert result.status == "rejected" and "login" in result.detail


@pytest.mark.parametrize(
    "action, kw, body",
    [
        (
            "reschedule",
            {"requested_date": "2026-12-01"},
            {"action": "re-attempt", "deferred_date": "2026-12-01"},
        ),
        ("update_phone", {"phone": "+919876543210"}, {"action": "re-attempt", "phone": "9876543210"}),
        (
            "update_address",
            {
                "address": {
                    "line1": "12 MG Road",
                    "line2": "Flat 4",
                    "landmark": "near Metro",
                    "city": "Bengaluru",
                    "postal_code": "560001",
                }
            },
            {
                "action": "re-attempt",
                "address1": "12 MG Road",
                "address2": "Flat 4, near Metro, Bengaluru, 560001",
            },
        ),
        ("rto", {"comments": "customer cancelled"}, {"action": "return", "comments": "customer cancelled"}),
    ],
)
async def test_action_mapping(cfg, action, kw, body):
    script = login_then(httpx.Response(202))
    async with script.client() as http:
        await shiprocket.send_instruction(
            instruction_input("shiprocket", action, **kw), cfg, http, tokens=shiprocket.TokenCache()
        )
    sent = json.loads(script.requests[-1].content)
    assert {k: sent[k] for k in body} == body
    assert sent["comments"]  # required by Shiprocket


async def test_hold_for_pickup_is_unsupported(cfg):
    script = login_then(httpx.Response(202))
    async with script.client() as http:
        result = await shiprocket.send_instruction(
            instruction_input("shiprocket", "hold_for_pickup"), cfg, http
        )
    assert result.status == "unsupported" and script.requests == []


@pytest.mark.parametrize("reply", [httpx.Response(500), httpx.ReadTimeout("slow")])
async def test_5xx_and_timeout_are_retryable(cfg, reply):
    script = login_then(reply)
    async with script.client() as http:
        with pytest.raises(CarrierUnavailable):
            await shiprocket.send_instruction(
                instruction_input("shiprocket"), cfg, http, tokens=shiprocket.TokenCache()
            )


async def test_422_is_a_rejection(cfg):
    script = login_then(httpx.Response(422, json={"message": "AWB not in NDR"}))
    async with script.client() as http:
        result = await shiprocket.send_instruction(
            instruction_input("shiprocket"), cfg, http, tokens=shiprocket.TokenCache()
        )
    assert (result.status, result.http_status) == ("rejected", 422) and "AWB not in NDR" in result.detail
