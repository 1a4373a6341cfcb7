"""Carrier adapters on the real stack (issue 4, "What it must show"): the dev server, the worker
and the API on free ports, with the fake carrier that local mode serves and points every carrier
API at (tests/e2e/harness.py). Pushes are built and signed with carriers/fake/payloads.py, the
same code the fake's `/_emit` uses, so they are what each carrier would send.

Each test starts its own stack (a few seconds) with only the settings it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlmodel import Session, select

from carriers.fake import payloads
from carriers.fake.payloads import Scan
from store.carriers import CarrierInstruction
from store.models import CarrierEventLog
from tests.e2e.harness import RunningStack, running_stack
from workflows.ids import shipment_id_for
from workflows.shipment import ShipmentWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

T = TypeVar("T")


def registration(carrier: str, tracking_number: str, *, payment_mode: str = "prepaid") -> dict[str, Any]:
    return {
        "merchant_id": "acme",
        "order_id": f"A-{tracking_number}",
        "carrier": carrier,
        "tracking_number": tracking_number,
        "payment": {"mode": payment_mode, "amount": "1299.00", "currency": "INR"},
        "customer": {
            "name": "Asha Rao",
            "phone": "+91 98765 43210",
            "email": "asha@example.com",
            "locale": "en-IN",
            "whatsapp_opt_in": True,
        },
        "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    }


async def register(st: RunningStack, carrier: str, tracking_number: str) -> str:
    r = await st.http.post(
        "/v1/shipments", json=registration(carrier, tracking_number), headers=st.auth(st.merchant_key)
    )
    assert r.status_code == 201, r.text
    sid = r.json()["shipment_id"]
    assert sid == shipment_id_for("acme", carrier, tracking_number)
    return str(sid)


async def shipment(st: RunningStack, sid: str) -> dict[str, Any]:
    r = await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.agent_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


def carrier_events(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in view["timeline"] if t["kind"] == "carrier_event"]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str, every: float = 0.25
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(every)


async def post_push(
    st: RunningStack, carrier: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await st.http.post(f"/v1/carriers/{carrier}/events", content=body, headers=headers)


def logged_events(st: RunningStack, tracking_number: str) -> list[CarrierEventLog]:
    with Session(st.engine) as s:
        return list(s.exec(select(CarrierEventLog).where(CarrierEventLog.tracking_number == tracking_number)))


async def fake(st: RunningStack, method: str, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=st.fake_url, timeout=10) as c:
        r = await c.request(method, path, **kwargs)
    assert r.status_code < 300, r.text
    return r.json()


async def unknown_codes(st: RunningStack, carrier: str) -> dict[str, int]:
    r = await st.http.get(
        "/v1/carriers/unknown-codes", params={"carrier": carrier}, headers=st.auth(st.agent_key)
    )
    assert r.status_code == 200, r.text
    return {i["code"]: i["count"] for i in r.json()["items"]}


# --- 1. Delhivery delivery_failed -> NDR case -> one instruction despite two timeouts ----------


async def test_delhivery_failed_push_opens_case_and_instruction_reaches_carrier_once_despite_timeouts(
    tmp_path: Path,
) -> None:
    async with running_stack(
        tmp_path,
        delhivery_webhook_secret="s3cret",
        # The fake holds a timed-out call for 5 s; the adapter gives up after 1 s, so each
        # timeout costs a second plus the workflow's retry backoff (5 s, then 10 s).
        carrier_http_timeout_s=1,
        delhivery_upl_poll_interval_s=0.2,
    ) as st:
        awb = "DLV-E2E-0001"
        sid = await register(st, "delhivery", awb)
        await fake(st, "POST", "/_faults", json={"carrier": "delhivery", "mode": "timeout", "count": 2, "delay_s": 5})

        # `not_attempted` (Delhivery NSL EOD-86) is not the customer's to fix: the merchant's
        # default rule decides at once (reattempt, and escalate: the carrier's fault).
        scan = Scan(awb, "delivery_failed", "not_attempted", occurred_at=datetime.now(UTC) - timedelta(minutes=5))
        body, headers = payloads.webhook("delhivery", scan, "s3cret")
        r = await post_push(st, "delhivery", body, headers)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 0

        async def answered() -> dict[str, Any] | None:
            view = await shipment(st, sid)
            cases = view["ndr_cases"]
            if cases and cases[0]["instructions"] and cases[0]["instructions"][0]["status"] != "pending":
                return view
            return None

        view = await eventually(answered, timeout=45, what="the Delhivery instruction to be answered")
        assert view["status"] == "delivery_failed"
        [case] = view["ndr_cases"]
        assert (case["attempt"], case["reason"]) == (1, "not_attempted")
        [ins] = case["instructions"]
        assert ins["action"] == "reattempt" and ins["status"] == "accepted", ins
        assert ins["carrier_reference"].startswith("UPL")

        # The carrier's logic saw exactly one instruction; the two timed-out calls before it were
        # swallowed by the fault (they never reached Delhivery's processing).
        received = await fake(st, "GET", "/_received", params={"carrier": "delhivery"})
        assert len(received) == 1, received
        [got] = received
        assert got["outcome"] == "accepted"
        assert (got["method"], got["path"]) == ("POST", "/api/p/update")
        assert got["headers"]["authorization"].startswith("Token ")
        assert got["body"] == {"data": [{"waybill": awb, "act": "RE-ATTEMPT"}]}
        every_call = await fake(st, "GET", "/_received", params={"carrier": "delhivery", "all": "true"})
        assert [c["outcome"] for c in every_call] == ["timeout", "timeout", "accepted"]

        # The store's exactly-once record: one row for the key, three activity attempts.
        with Session(st.engine) as s:
            [row] = s.exec(select(CarrierInstruction).where(CarrierInstruction.shipment_id == sid)).all()
        assert (row.status, row.attempts, row.carrier_reference) == ("accepted", 3, ins["carrier_reference"])

        # Delhivery retries a push it thinks failed: the same push again is a duplicate and
        # opens no second case, so no second instruction.
        r = await post_push(st, "delhivery", body, headers)
        assert r.status_code == 202 and r.json()["duplicates"] == 1, r.text
        await asyncio.sleep(1)
        view = await shipment(st, sid)
        assert len(view["ndr_cases"]) == 1 and len(carrier_events(view)) == 1
        assert len(await fake(st, "GET", "/_received", params={"carrier": "delhivery"})) == 1


# --- 2. ClickPost out of order ------------------------------------------------------------------


async def test_clickpost_webhook_out_of_order_does_not_move_status_backwards(tmp_path: Path) -> None:
    async with running_stack(tmp_path, clickpost_webhook_secret="cp-webhook-key") as st:
        awb = "CP-E2E-0001"
        sid = await register(st, "clickpost", awb)
        now = datetime.now(UTC)
        ofd = Scan(awb, "out_for_delivery", occurred_at=now - timedelta(hours=3))
        delivered = Scan(awb, "delivered", occurred_at=now - timedelta(hours=1))

        # Delivered arrives first ...
        body = payloads.encode(payloads.build_clickpost(delivered))
        r = await post_push(st, "clickpost", body, payloads.sign_headers("clickpost", body, "cp-webhook-key"))
        assert r.status_code == 202, r.text

        async def delivered_applied() -> dict[str, Any] | None:
            view = await shipment(st, sid)
            return view if view["status"] == "delivered" else None

        await eventually(delivered_applied, timeout=20, what="the delivered scan to apply")
        # ... then, later, the older out-for-delivery scan, which (as ClickPost does) also carries the
        # shipment's latest status: that part is the delivered scan again, a duplicate.
        body = payloads.encode(payloads.build_clickpost(ofd, latest=delivered))
        r = await post_push(st, "clickpost", body, payloads.sign_headers("clickpost", body, "cp-webhook-key"))
        assert r.status_code == 202, r.text
        assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 1)

        async def both_seen() -> dict[str, Any] | None:
            view = await shipment(st, sid)
            # Search attributes are written when the workflow task completes: a moment after the
            # state a query sees.
            published = view["search_attributes"].get("ShipmentStatus") == view["status"]
            return view if len(carrier_events(view)) == 2 and published else None

        view = await eventually(both_seen, timeout=20, what="both ClickPost scans in the timeline")
        assert view["status"] == "delivered"
        assert view["search_attributes"]["ShipmentStatus"] == "delivered"
        by_milestone = {e["milestone"]: e for e in carrier_events(view)}
        assert by_milestone["delivered"]["applied"] is True
        late = by_milestone["out_for_delivery"]
        assert late["applied"] is False and late["raw_code"] == "6"
        # The timeline is in carrier time: the late scan sits before the delivery it lost to.
        assert [e["milestone"] for e in carrier_events(view)] == ["out_for_delivery", "delivered"]
        # A stale status sends the customer nothing.
        assert not [n for n in view["notifications"] if "out_for_delivery" in n["purpose"]]


# --- 3. Bad signatures -----------------------------------------------------------------------------

SECRETS = {"delhivery": "dlv-secret", "easypost": "ep-secret", "aftership": "as-secret"}


def bad_variants(carrier: str, body: bytes) -> list[tuple[str, bytes, dict[str, str]]]:
    """(what, body, headers) pushes that must be refused."""
    wrong = payloads.sign_headers(carrier, body, "not-the-secret")
    unsigned = {"Content-Type": "application/json"}
    out = [("wrong secret", body, wrong), ("no signature header", body, unsigned)]
    if carrier != "delhivery":  # Delhivery's static token does not cover the body; HMACs do
        tampered = body.replace(b"out_for_delivery", b"delivered").replace(b"OutForDelivery", b"Delivered")
        assert tampered != body
        out.append(("body changed after signing", tampered, payloads.sign_headers(carrier, body, SECRETS[carrier])))
    return out


async def test_bad_signature_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    env = {f"{c}_webhook_secret": s for c, s in SECRETS.items()}
    async with running_stack(tmp_path, **env) as st:
        now = datetime.now(UTC)
        for n, (carrier, secret) in enumerate(SECRETS.items()):
            tracking = f"SIG-E2E-{carrier.upper()}"
            sid = await register(st, carrier, tracking)
            scan = Scan(tracking, "out_for_delivery", occurred_at=now - timedelta(minutes=30 - n))
            body = payloads.encode(payloads.build(carrier, scan))

            for what, bad_body, headers in bad_variants(carrier, body):
                r = await post_push(st, carrier, bad_body, headers)
                assert r.status_code in (401, 403), f"{carrier} {what}: {r.status_code} {r.text}"
                assert carrier in r.json()["detail"], r.text
            # A carrier API key for another carrier is refused too, whatever the body.
            r = await post_push(st, carrier, body, {**payloads.sign_headers(carrier, body, secret), **st.auth(st.carrier_key)})
            assert r.status_code == 403, r.text

            # Nothing changed: no event logged, status and timeline as registered.
            assert logged_events(st, tracking) == []
            view = await shipment(st, sid)
            assert view["status"] == "created" and carrier_events(view) == []

            # The same push correctly signed is accepted and applied: the refusals above were
            # about the signature, not the payload.
            r = await post_push(st, carrier, body, payloads.sign_headers(carrier, body, secret))
            assert r.status_code == 202 and r.json()["accepted"] == 1, r.text

            async def applied(sid: str = sid) -> dict[str, Any] | None:
                view = await shipment(st, sid)
                return view if view["status"] == "out_for_delivery" else None

            view = await eventually(applied, timeout=20, what=f"the signed {carrier} push to apply")
            # Only the signed push reached the workflow.
            assert len(carrier_events(view)) == 1
            assert len(logged_events(st, tracking)) == 1


# --- 4. Polling fallback -------------------------------------------------------------------------


async def test_dropped_push_is_learned_by_polling_the_carrier_after_a_quiet_spell(tmp_path: Path) -> None:
    quiet_s = 4
    async with running_stack(tmp_path, poll_after_s=quiet_s) as st:
        loop = asyncio.get_running_loop()
        registered = loop.time()
        trackings = {carrier: f"POLL-E2E-{carrier.upper()}" for carrier in ("delhivery", "generic")}
        sids = {carrier: await register(st, carrier, tracking) for carrier, tracking in trackings.items()}
        for carrier, tracking in trackings.items():
            # The carrier records the scan but its push never reaches us (deliver: false).
            answer = await fake(
                st,
                "POST",
                "/_emit",
                json={
                    "carrier": carrier,
                    "tracking_number": tracking,
                    "milestone": "out_for_delivery",
                    "occurred_at": (datetime.now(UTC) - timedelta(minutes=10)).isoformat(),
                    "deliver": False,
                },
            )
            assert answer["delivered"] is False

        # Not before the quiet spell: nobody asked the carrier yet (checked while well inside it;
        # the learned-after-the-spell assertion below holds however slow the machine is).
        if loop.time() - registered < quiet_s - 1:
            for sid in sids.values():
                assert (await shipment(st, sid))["status"] == "created"

        for carrier, sid in sids.items():

            async def learned(sid: str = sid) -> dict[str, Any] | None:
                view = await shipment(st, sid)
                return view if view["status"] == "out_for_delivery" else None

            view = await eventually(learned, timeout=30, what=f"the {carrier} scan to be learned by polling")
            assert loop.time() - registered >= quiet_s
            [ev] = carrier_events(view)
            assert ev["milestone"] == "out_for_delivery" and ev["applied"] is True
            # It came from the tracking API, not through the events endpoint.
            assert logged_events(st, trackings[carrier]) == []
            state = await st.client.get_workflow_handle(view["workflow_id"]).query(ShipmentWorkflow.state)
            assert state.polled_at is not None
            # The policy snapshot the workflow decides by carries the configured interval.
            assert state.policy is not None and state.policy["poll_after_s"] == quiet_s

        # The push that was dropped arrives after all (Delhivery's one retry): a duplicate of the
        # polled scan, nothing changes.
        tracking = trackings["delhivery"]
        scans = st.fake_state.scans[("delhivery", tracking)]
        body, headers = payloads.webhook("delhivery", scans[0], "")
        r = await st.http.post(
            "/v1/carriers/delhivery/events", content=body, headers={**headers, **st.auth(st.make_key("carrier", carrier="delhivery"))}
        )
        assert r.status_code == 202, r.text
        await asyncio.sleep(1)
        assert len(carrier_events(await shipment(st, sids["delhivery"]))) == 1


# --- 5. Unknown carrier codes are counted for agents -----------------------------------------------


async def test_unknown_codes_are_counted_kept_in_the_timeline_and_visible_to_agents(tmp_path: Path) -> None:
    async with running_stack(tmp_path, delhivery_webhook_secret="s3cret") as st:
        awb = "UNK-E2E-0001"
        sid = await register(st, "delhivery", awb)

        def misrouted(minutes_ago: int) -> tuple[bytes, dict[str, str]]:
            doc = payloads.build_delhivery(
                Scan(awb, "in_transit", occurred_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))
            )
            doc["Shipment"]["Status"]["Status"] = "Misrouted"  # not in our Delhivery table
            body = payloads.encode(doc)
            return body, payloads.sign_headers("delhivery", body, "s3cret")

        first = misrouted(20)
        r = await post_push(st, "delhivery", *first)
        assert r.status_code == 202, r.text
        assert r.json()["unknown_codes"] == 1
        assert await unknown_codes(st, "delhivery") == {"UD/Misrouted": 1}

        # A redelivery of the same push is a duplicate: not counted again.
        r = await post_push(st, "delhivery", *first)
        assert r.status_code == 202 and r.json()["duplicates"] == 1, r.text
        assert await unknown_codes(st, "delhivery") == {"UD/Misrouted": 1}
        # A second sighting is.
        r = await post_push(st, "delhivery", *misrouted(10))
        assert r.status_code == 202, r.text
        assert await unknown_codes(st, "delhivery") == {"UD/Misrouted": 2}

        r = await st.http.get("/v1/carriers/unknown-codes", headers=st.auth(st.agent_key))
        [item] = r.json()["items"]
        assert (item["carrier"], item["code"], item["count"]) == ("delhivery", "UD/Misrouted", 2)
        assert item["first_seen"] <= item["last_seen"]
        # Agents only.
        r = await st.http.get("/v1/carriers/unknown-codes", headers=st.auth(st.merchant_key))
        assert r.status_code == 403, r.text

        # The scans are kept with their raw code and never move the status.
        async def both_kept() -> dict[str, Any] | None:
            view = await shipment(st, sid)
            return view if len(carrier_events(view)) == 2 else None

        view = await eventually(both_kept, timeout=20, what="both unknown scans in the timeline")
        assert view["status"] == "created"
        for ev in carrier_events(view):
            assert (ev["milestone"], ev["raw_code"], ev["applied"]) == ("unknown", "UD/Misrouted", False)
