"""The fake carrier: every adapter's instruction lands on it, faults behave like real outages,
`/_received` counts what got through, `/_emit` posts signed carrier-format pushes."""

from __future__ import annotations

import json

import httpx
import pytest

from carriers import clickpost, delhivery, generic, shiprocket
from carriers.base import CarrierUnavailable, WebhookRequest
from carriers.fake.server import FakeCarrierServer, create_app
from tests.carriers.conftest import instruction_input, settings

SHIPMENT = {
    "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "landmark": "Metro"},
    "phone": "+919876543210",
}


def fake_settings(url: str = "http://fake"):
    return settings(delhivery_upl_poll_interval_s=0.0, generic_instruction_secret="gen-out").pointing_at(url)


@pytest.fixture
def app():
    return create_app(generic_secret="gen-out")


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        yield client


async def received(http: httpx.AsyncClient, **params) -> list[dict]:
    return (await http.get("/_received", params=params)).json()


@pytest.mark.parametrize(
    "adapter, action, kw, path, body_check",
    [
        (
            shiprocket,
            "reschedule",
            {"requested_date": "2026-12-01"},
            "/v1/external/ndr/AWB123/action",
            {"action": "re-attempt", "deferred_date": "2026-12-01"},
        ),
        (delhivery, "reattempt", {}, "/api/p/update", {"data": [{"waybill": "AWB123", "act": "RE-ATTEMPT"}]}),
        (
            clickpost,
            "reattempt",
            {"requested_date": "2026-12-01"},
            "/api/v2/ndr/update/",
            {"action": "REATTEMPT", "preferred_date": "2026-12-01"},
        ),
        (generic, "rto", {}, "/generic/instructions", {"action": "rto", "idempotency_key": "shp_01:ndr1:1"}),
    ],
)
async def test_every_adapter_lands_on_the_fake_once(http, adapter, action, kw, path, body_check):
    if adapter is shiprocket:
        kw_send = {"tokens": shiprocket.TokenCache()}
    else:
        kw_send = {}
    inp = instruction_input(adapter.CODE, action, extra=SHIPMENT, **kw)
    result = await adapter.send_instruction(inp, fake_settings(), http, **kw_send)
    assert result.status == "accepted", result.detail
    [entry] = await received(http)
    assert (entry["carrier"], entry["path"], entry["outcome"]) == (adapter.CODE, path, "accepted")
    assert {k: entry["body"][k] for k in body_check} == body_check
    if adapter is generic:
        assert entry["headers"]["idempotency-key"] == "shp_01:ndr1:1"


async def test_5xx_faults_are_retryable_and_not_counted_as_received(http):
    await http.post("/_faults", json={"carrier": "delhivery", "mode": "5xx", "count": 2})
    cfg = fake_settings()
    inp = instruction_input("delhivery")
    for _ in range(2):
        with pytest.raises(CarrierUnavailable, match="503"):
            await delhivery.send_instruction(inp, cfg, http)
    result = await delhivery.send_instruction(inp, cfg, http)
    assert result.status == "accepted" and result.carrier_reference.startswith("UPL")
    assert len(await received(http, carrier="delhivery")) == 1
    assert [e["outcome"] for e in await received(http, all="true")] == ["5xx", "5xx", "accepted"]
    assert (await http.get("/_faults")).json() == []


async def test_reject_faults_are_rejections(http):
    cfg = fake_settings()
    await http.post("/_faults", json={"carrier": "clickpost", "mode": "reject"})
    result = await clickpost.send_instruction(instruction_input("clickpost", extra=SHIPMENT), cfg, http)
    assert (result.status, result.http_status) == ("rejected", 400) and "injected" in result.detail
    await http.post("/_faults", json={"carrier": "delhivery", "mode": "reject_async"})
    result = await delhivery.send_instruction(instruction_input("delhivery"), cfg, http)
    assert result.status == "rejected" and "not eligible" in result.detail
    assert [e["outcome"] for e in await received(http)] == [
        "rejected",
        "accepted",
    ]  # Delhivery took the upload


async def test_expired_shiprocket_token_is_renewed(http):
    cfg, tokens = fake_settings(), shiprocket.TokenCache()
    assert (
        await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    ).status == "accepted"
    await http.post("/_faults", json={"carrier": "shiprocket", "mode": "expire_token"})
    assert (
        await shiprocket.send_instruction(instruction_input("shiprocket"), cfg, http, tokens=tokens)
    ).status == "accepted"
    assert tokens.logins == 2


async def test_generic_instruction_signature_is_checked(http):
    cfg = fake_settings().model_copy(update={"generic_instruction_secret": "wrong"})
    result = await generic.send_instruction(instruction_input("generic"), cfg, http)
    assert (result.status, result.http_status) == ("rejected", 401)


async def test_received_can_be_cleared_and_bad_faults_refused(http):
    await generic.send_instruction(instruction_input("generic"), fake_settings(), http)
    assert (await http.delete("/_received")).json() == {"cleared": 1}
    assert await received(http) == []
    assert (await http.post("/_faults", json={"carrier": "x", "mode": "explode"})).status_code == 422


async def test_tracking_endpoints_serve_emitted_scans(http):
    for milestone, reason, when in (
        ("out_for_delivery", None, "2026-11-28T03:00:00Z"),
        ("delivery_failed", "address_issue", "2026-11-28T08:00:00Z"),
    ):
        for carrier in ("delhivery", "generic"):
            r = await http.post(
                "/_emit",
                json={
                    "carrier": carrier,
                    "tracking_number": "AWB9",
                    "milestone": milestone,
                    "ndr_reason": reason,
                    "occurred_at": when,
                    "deliver": False,
                },
            )
            assert r.json()["delivered"] is False
    cfg = fake_settings()
    for adapter in (delhivery, generic):
        events = await adapter.poll_tracking("AWB9", cfg, http)
        assert [(e.milestone, e.ndr_reason, e.occurred_at) for e in events] == [
            ("out_for_delivery", None, "2026-11-28T03:00:00.000000Z"),
            ("delivery_failed", "address_issue", "2026-11-28T08:00:00.000000Z"),
        ]
    assert await generic.poll_tracking("UNKNOWN", cfg, http) == []


@pytest.mark.parametrize(
    "carrier", ["generic", "delhivery", "shiprocket", "clickpost", "easypost", "aftership"]
)
async def test_emit_posts_a_signed_push_the_adapter_accepts(carrier):
    caught: list[httpx.Request] = []

    def sink(req: httpx.Request) -> httpx.Response:
        caught.append(req)
        return httpx.Response(202, json={"accepted": 1})

    app = create_app(emit_transport=httpx.MockTransport(sink))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as http:
        r = await http.post(
            "/_emit",
            json={
                "carrier": carrier,
                "target_url": f"http://127.0.0.1:8000/v1/carriers/{carrier}/events",
                "tracking_number": "AWB5",
                "milestone": "delivery_failed",
                "ndr_reason": "customer_unavailable",
                "secret": "push-secret",
            },
        )
    assert r.status_code == 200 and r.json()["status_code"] == 202
    [req] = caught
    assert req.url.path == f"/v1/carriers/{carrier}/events"
    webhook = WebhookRequest(body=req.content, headers=dict(req.headers))
    adapter = __import__(f"carriers.{carrier}", fromlist=["x"])
    adapter.verify_webhook(webhook, "push-secret")
    events, _ = adapter.parse_webhook(webhook)
    assert (events[-1].tracking_number, events[-1].milestone, events[-1].ndr_reason) == (
        "AWB5",
        "delivery_failed",
        "customer_unavailable",
    )


async def test_emit_only_to_loopback_and_names_missing_codes(http):
    far = await http.post(
        "/_emit",
        json={
            "carrier": "generic",
            "target_url": "http://example.com/x",
            "tracking_number": "A",
            "milestone": "delivered",
        },
    )
    assert far.status_code == 422 and "loopback" in far.json()["error"]
    nocode = await http.post(
        "/_emit",
        json={
            "carrier": "delhivery",
            "target_url": "http://127.0.0.1:1/x",
            "tracking_number": "A",
            "milestone": "lost",
        },
    )
    assert nocode.status_code == 422 and "no status code" in nocode.json()["error"]


async def test_timeouts_on_a_real_socket_then_exactly_one_instruction():
    """Two calls time out (the client gives up), the third lands: the fake has received it once."""
    with FakeCarrierServer(upl_pending_polls=0) as fake:
        cfg = settings(carrier_http_timeout_s=0.3, delhivery_upl_poll_interval_s=0.0).pointing_at(fake.url)
        async with httpx.AsyncClient() as control:
            await control.post(
                f"{fake.url}/_faults",
                json={"carrier": "delhivery", "mode": "timeout", "count": 2, "delay_s": 1.5},
            )
            async with httpx.AsyncClient() as http:
                inp = instruction_input("delhivery")
                for _ in range(2):
                    with pytest.raises(CarrierUnavailable, match="timed out"):
                        await delhivery.send_instruction(inp, cfg, http)
                result = await delhivery.send_instruction(inp, cfg, http)
            assert result.status == "accepted"
            got = (await control.get(f"{fake.url}/_received")).json()
            everything = (await control.get(f"{fake.url}/_received", params={"all": "true"})).json()
    assert [e["body"] for e in got] == [{"data": [{"waybill": "AWB123", "act": "RE-ATTEMPT"}]}]
    assert sorted(e["outcome"] for e in everything) == ["accepted", "timeout", "timeout"]
    assert json.dumps(got)  # JSON-serialisable record


async def test_late_clickpost_push_carries_the_newest_status():
    caught: list[httpx.Request] = []
    app = create_app(emit_transport=httpx.MockTransport(lambda r: caught.append(r) or httpx.Response(202)))
    base = {
        "carrier": "clickpost",
        "target_url": "http://127.0.0.1:8000/e",
        "tracking_number": "CP1",
        "secret": "k",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as http:
        await http.post(
            "/_emit", json={**base, "milestone": "delivered", "occurred_at": "2026-11-29T06:00:00Z"}
        )
        await http.post(
            "/_emit", json={**base, "milestone": "out_for_delivery", "occurred_at": "2026-11-29T03:00:00Z"}
        )
    events, _ = clickpost.parse_webhook(
        WebhookRequest(body=caught[-1].content, headers=dict(caught[-1].headers))
    )
    assert [e.milestone for e in events] == ["out_for_delivery", "delivered"]
