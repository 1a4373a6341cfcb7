"""Issue 2 end to end on the real dev server, worker and API: the README's walkthrough
(register, four events out of order with a duplicate, read back), events before registration,
and a restart of the whole stack with the same home that resumes the workflow."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningStack, running_stack

pytestmark = pytest.mark.e2e

REGISTRATION = {
    "merchant_id": "acme",
    "order_id": "A-1001",
    "carrier": "generic",
    "tracking_number": "TRK1001",
    "payment": {"mode": "cod", "amount": "1299.00", "currency": "INR"},
    "customer": {"name": "Asha Rao", "phone": "+91 98765 43210", "email": "asha@example.com", "locale": "en-IN", "whatsapp_opt_in": True},
    "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    "promised_delivery_date": "2026-11-30",
}


def event(eid: str, status: str, at: str, **kw: Any) -> dict[str, Any]:
    return {"tracking_number": "TRK1001", "event_id": eid, "status": status, "occurred_at": at, **kw}


async def read_until(st: RunningStack, sid: str, check, timeout: float = 20.0) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.merchant_key))
        if r.status_code == 200 and check(r.json()):
            return r.json()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never reached: {r.status_code} {r.text[:2000]}")
        await asyncio.sleep(0.1)


async def test_readme_walkthrough_then_restart_resumes_the_workflow(tmp_path: Path) -> None:
    async with running_stack(tmp_path, quiet_hours="") as st:
        r = await st.http.post("/v1/shipments", json=REGISTRATION, headers=st.auth(st.merchant_key))
        assert r.status_code == 201, r.text
        sid = r.json()["shipment_id"]
        again = await st.http.post("/v1/shipments", json=REGISTRATION, headers=st.auth(st.merchant_key))
        assert again.status_code == 200 and again.json()["shipment_id"] == sid

        ck = st.auth(st.carrier_key)
        first = await st.http.post("/v1/carriers/generic/events", headers=ck, json={"events": [
            event("e3", "out_for_delivery", "2026-11-28T09:10:00+05:30", location="Bengaluru", raw_code="OFD", raw_status="Out for delivery"),
            event("e1", "picked_up", "2026-11-26T18:00:00+05:30", raw_code="PKD"),
        ]})
        assert first.status_code == 202 and first.json()["accepted"] == 2
        # Make sure the first batch is applied before the late one arrives.
        await read_until(st, sid, lambda b: b["status"] == "out_for_delivery")
        second = await st.http.post("/v1/carriers/generic/events", headers=ck, json={"events": [
            event("e2", "in_transit", "2026-11-27T08:00:00+05:30", raw_code="IT"),
            event("e1", "picked_up", "2026-11-26T18:00:00+05:30", raw_code="PKD"),
        ]})
        assert second.json()["accepted"] == 1 and second.json()["duplicates"] == 1

        body = await read_until(st, sid, lambda b: len([t for t in b["timeline"] if t["kind"] == "carrier_event"]) == 3
                                and b["search_attributes"].get("ShipmentStatus") == "out_for_delivery")
        assert body["status"] == "out_for_delivery"
        scans = [t for t in body["timeline"] if t["kind"] == "carrier_event"]
        assert [t["milestone"] for t in scans] == ["picked_up", "in_transit", "out_for_delivery"]
        assert [t["applied"] for t in scans] == [True, False, True]
        assert body["search_attributes"]["ShipmentStatus"] == "out_for_delivery"
        assert body["search_attributes"]["MerchantId"] == "acme"
        # Messages went out for the notified milestones (local outbox).
        assert {n["purpose"] for n in body["notifications"]} >= {"picked_up", "out_for_delivery"}

    # The whole stack stopped; start it again on the same home (persisted Temporal DB + SQLite).
    async with running_stack(tmp_path, quiet_hours="") as st2:
        body = await read_until(st2, sid, lambda b: b["status"] == "out_for_delivery", timeout=30)
        ck = st2.auth(st2.carrier_key)
        r = await st2.http.post("/v1/carriers/generic/events", headers=ck, json={"events": [event("e4", "delivered", "2026-11-28T13:00:00+05:30", raw_code="DLV")]})
        assert r.status_code == 202 and r.json()["accepted"] == 1
        # Search attributes are updated with the workflow task that applied the scan.
        body = await read_until(st2, sid, lambda b: b["status"] == "delivered" and b["search_attributes"].get("ShipmentStatus") == "delivered")
        assert body["search_attributes"]["MerchantId"] == "acme"


async def test_events_before_registration_are_applied_when_it_arrives(tmp_path: Path) -> None:
    async with running_stack(tmp_path, quiet_hours="") as st:
        ck = st.auth(st.carrier_key)
        r = await st.http.post("/v1/carriers/generic/events", headers=ck, json={"events": [event("p1", "picked_up", "2026-11-26T18:00:00+05:30")]})
        assert r.json()["pending_registration"] == 1
        reg = await st.http.post("/v1/shipments", json=REGISTRATION, headers=st.auth(st.merchant_key))
        sid = reg.json()["shipment_id"]
        body = await read_until(st, sid, lambda b: b["status"] == "picked_up")
        assert [t["kind"] for t in body["timeline"]].count("carrier_event") == 1
        health = await st.http.get("/healthz")
        assert health.json() == {"status": "ok", "temporal": "ok", "database": "ok"}
