"""Generic carrier events: logged once, delivered by signal-with-start, or kept until the
shipment registers; duplicates counted; bad payloads refused."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from carriers.fake.payloads import Scan, webhook
from store.carriers import unknown_code_counts
from tests.api.conftest import Api
from tests.api.routes.test_merchants import BODY
from workflows.messages import CarrierEventsInput, RegisterInput


def event(eid: str, status: str, at: str, **kw: object) -> dict[str, object]:
    return {"tracking_number": "TRK1001", "event_id": eid, "status": status, "occurred_at": at, **kw}


def test_events_before_registration_wait_and_travel_with_it(api: Api) -> None:
    h = api.auth(api.carrier_key)
    r = api.client.post("/v1/carriers/generic/events", json={"events": [event("e1", "picked_up", "2026-11-27T10:00:00+05:30")]}, headers=h)
    assert r.status_code == 202 and r.json()["pending_registration"] == 1
    assert api.temporal.starts == []
    api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    [call] = api.temporal.starts
    reg: RegisterInput = call.arg
    assert [e.event_id for e in reg.events] == ["e1"]
    assert reg.events[0].occurred_at == "2026-11-27T04:30:00.000000Z"


def test_duplicates_are_counted_and_not_signalled_twice(api: Api) -> None:
    api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    h = api.auth(api.carrier_key)
    batch = {"events": [event("e1", "picked_up", "2026-11-27T10:00:00+05:30"), event("e2", "in_transit", "2026-11-27T18:00:00+05:30")]}
    assert api.client.post("/v1/carriers/generic/events", json=batch, headers=h).json() == {"accepted": 2, "duplicates": 0, "pending_registration": 0, "unknown_codes": 0}
    assert api.client.post("/v1/carriers/generic/events", json=batch, headers=h).json()["duplicates"] == 2
    signals = [c for c in api.temporal.starts if c.signal == "carrier_events"]
    assert len(signals) == 1
    ev_in: CarrierEventsInput = signals[0].arg
    assert [e.milestone for e in ev_in.events] == ["picked_up", "in_transit"]


def test_unknown_status_is_kept_as_unknown_with_raw_code(api: Api) -> None:
    api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    r = api.client.post("/v1/carriers/generic/events", json={"events": [event("x", "weird_status", "2026-11-27T10:00:00Z")]}, headers=api.auth(api.carrier_key))
    assert r.json()["unknown_codes"] == 1
    ev = api.temporal.starts[-1].arg.events[0]
    assert ev.milestone == "unknown" and ev.raw_code == "weird_status"


def test_carrier_auth_and_bad_payloads(api: Api) -> None:
    ok = {"events": [event("e1", "picked_up", "2026-11-27T10:00:00+05:30")]}
    assert api.client.post("/v1/carriers/generic/events", json=ok).status_code == 401
    assert api.client.post("/v1/carriers/generic/events", json=ok, headers=api.auth(api.merchant_key)).status_code == 403
    assert api.client.post("/v1/carriers/nosuch/events", json=ok, headers=api.auth(api.carrier_key)).status_code == 404
    bad_time = api.client.post("/v1/carriers/generic/events", json={"events": [event("e1", "picked_up", "yesterday")]}, headers=api.auth(api.carrier_key))
    assert bad_time.status_code == 422 and "occurred_at" in bad_time.json()["detail"]
    empty = api.client.post("/v1/carriers/generic/events", json={"events": []}, headers=api.auth(api.carrier_key))
    assert empty.status_code == 422
    malformed = api.client.post("/v1/carriers/generic/events", content=b"[", headers={**api.auth(api.carrier_key), "Content-Type": "application/json"})
    assert malformed.status_code == 422


def test_events_for_a_finished_workflow_are_logged_not_restarted(api: Api) -> None:
    r = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    api.temporal.closed.add(r.json()["workflow_id"])
    late = api.client.post("/v1/carriers/generic/events", json={"events": [event("late", "in_transit", "2026-11-29T10:00:00Z")]}, headers=api.auth(api.carrier_key))
    assert late.status_code == 202 and late.json()["accepted"] == 1



def _register(api: Api, carrier: str) -> None:
    body = {**BODY, "carrier": carrier}
    assert api.client.post("/v1/shipments", json=body, headers=api.auth(api.merchant_key)).status_code == 201


@pytest.mark.parametrize("carrier", ["generic", "delhivery", "shiprocket", "clickpost", "easypost", "aftership"])
def test_each_carrier_format_with_its_own_signature_reaches_the_workflow(api: Api, carrier: str) -> None:
    _register(api, carrier)
    body, headers = webhook(carrier, Scan(tracking_number="TRK1001", milestone="delivery_failed", ndr_reason="customer_unavailable"), f"{carrier}-secret")
    r = api.client.post(f"/v1/carriers/{carrier}/events", content=body, headers=headers)
    assert r.status_code == 202, r.text
    ev = [c for c in api.temporal.starts if c.signal == "carrier_events"][-1].arg.events[-1]
    assert ev.carrier == carrier and ev.milestone == "delivery_failed" and ev.ndr_reason == "customer_unavailable"


@pytest.mark.parametrize("carrier", ["generic", "delhivery", "clickpost", "easypost", "aftership"])
def test_bad_or_missing_signature_is_401_and_changes_nothing(api: Api, carrier: str) -> None:
    _register(api, carrier)
    body, headers = webhook(carrier, Scan(tracking_number="TRK1001", milestone="delivered"), "wrong-secret")
    assert api.client.post(f"/v1/carriers/{carrier}/events", content=body, headers=headers).status_code == 401
    assert api.client.post(f"/v1/carriers/{carrier}/events", content=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert [c for c in api.temporal.starts if c.signal == "carrier_events"] == []


def test_unknown_codes_are_counted_per_carrier_and_code(api: Api) -> None:
    _register(api, "generic")
    batch = {"events": [event("u1", "teleported", "2026-11-27T10:00:00Z"), event("u2", "teleported", "2026-11-27T11:00:00Z")]}
    api.client.post("/v1/carriers/generic/events", json=batch, headers=api.auth(api.carrier_key))
    with Session(api.engine) as s:
        counts = {(c.carrier, c.code): c.count for c in unknown_code_counts(s)}
    assert counts == {("generic", "teleported"): 2}


def test_a_redelivered_push_does_not_count_its_unknown_codes_again(api: Api) -> None:
    _register(api, "generic")
    batch = {"events": [event("u1", "teleported", "2026-11-27T10:00:00Z")]}
    for _ in range(3):  # the carrier retries the same push
        api.client.post("/v1/carriers/generic/events", json=batch, headers=api.auth(api.carrier_key))
    later = {"events": [event("u2", "teleported", "2026-11-27T11:00:00Z")]}
    api.client.post("/v1/carriers/generic/events", json=later, headers=api.auth(api.carrier_key))
    with Session(api.engine) as s:
        counts = {(c.carrier, c.code): c.count for c in unknown_code_counts(s)}
    assert counts == {("generic", "teleported"): 2}
