"""Issue 6 "What it must show", end to end on the real stack (dev server, worker, notify worker,
API, fake carrier): 20 shipments in mixed states of which exactly 5 get stuck, each for its own
reason, raised by the shipment workflow itself; the agents' queue lists exactly those 5 with
the right reasons; an agent forces a reattempt on one; the fake carrier receives that instruction
once; the item leaves the queue and the action is in the timeline. Keys stay in their lanes.

Why the other 15 cannot get stuck during the test: only `picked_up` has a short stale limit and
only the stale shipment is ever in that status (the others keep the 12 h+ defaults); delivered
ones are terminal; answered NDRs are instructed with a carrier deadline a day away; quiet hours
are off (nothing waits) and polling is off. The reject fault is consumed by the rejected
shipment's instruction before any other instruction is sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from carriers.fake import payloads
from carriers.fake.payloads import Scan
from tests.e2e.harness import RunningStack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

T = TypeVar("T")
CARRIER = "generic"
INBOUND = "/v1/webhooks/twilio/inbound"
STACK = {
    "quiet_hours": "",  # the test may run at night in India
    "poll_after_s": 0,  # no tracking polls: every scan is one the test sent
    "stale_after_s": '{"picked_up": 3}',  # only the stale shipment is ever picked_up
}


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.25)


def phone(n: int) -> str:
    # One number per shipment: every customer reply routes to exactly one open case.
    return f"+9198765432{n:02d}"


async def register(st: RunningStack, n: int) -> tuple[str, str]:
    tracking = f"AG-E2E-{n:02d}"
    body = {
        "merchant_id": "acme",
        "order_id": f"A-{n:02d}",
        "carrier": CARRIER,
        "tracking_number": tracking,
        "payment": {"mode": "prepaid", "amount": "999.00", "currency": "INR"},
        "customer": {"name": "Asha Rao", "phone": phone(n), "locale": "en-IN", "whatsapp_opt_in": False},
        "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    }
    r = await st.http.post("/v1/shipments", json=body, headers=st.auth(st.merchant_key))
    assert r.status_code == 201, r.text
    return str(r.json()["shipment_id"]), tracking


async def scan(st: RunningStack, tracking: str, milestone: str, reason: str | None = None) -> None:
    """The generic carrier's own push format, authenticated with its carrier key."""
    push = payloads.build(
        CARRIER, Scan(tracking, milestone, ndr_reason=reason, occurred_at=datetime.now(UTC))
    )
    r = await st.http.post(
        f"/v1/carriers/{CARRIER}/events",
        content=payloads.encode(push),
        headers={**st.auth(st.carrier_key), "Content-Type": "application/json"},
    )
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


async def sms_reply(st: RunningStack, n: int, body: str, message_sid: str) -> None:
    """What Twilio posts when customer `n` texts us, signed with the home's auth token."""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": phone(n),
        "MessageSid": message_sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "To": "+15005550006",
    }
    signature = RequestValidator(st.settings.twilio_auth_token).compute_signature(
        st.settings.public_base_url + INBOUND, params
    )
    r = await st.http.post(
        INBOUND,
        content=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )
    assert r.status_code == 200, r.text


async def view(st: RunningStack, sid: str) -> dict[str, Any]:
    r = await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.agent_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def last_case(st: RunningStack, sid: str) -> dict[str, Any] | None:
    cases = (await view(st, sid))["ndr_cases"]
    return cases[-1] if cases else None


async def case_in(st: RunningStack, sid: str, *states: str) -> dict[str, Any] | None:
    case = await last_case(st, sid)
    return case if case and case["state"] in states else None


async def responses(st: RunningStack, sid: str, count: int) -> bool:
    case = await last_case(st, sid)
    return bool(case and len(case["responses"]) >= count)


async def status_is(st: RunningStack, sid: str, status: str) -> bool:
    return bool((await view(st, sid))["status"] == status)


async def asked(st: RunningStack, n: int) -> bool:
    """The NDR question reached customer `n` (so their reply has a route to the case)."""
    r = await st.http.get("/v1/dev/outbox", params={"to": phone(n)})
    assert r.status_code == 200, r.text
    return any(m["purpose"] == "ndr_ask" for m in r.json()["messages"])


async def fake_received(st: RunningStack, tracking: str) -> list[dict[str, Any]]:
    """Instructions that reached the fake carrier's logic (accepted or rejected) for one parcel."""
    async with httpx.AsyncClient(base_url=st.fake_url, timeout=10) as c:
        r = await c.get("/_received", params={"carrier": CARRIER})
    assert r.status_code == 200, r.text
    return [
        x for x in r.json() if isinstance(x["body"], dict) and x["body"].get("tracking_number") == tracking
    ]


async def queue(st: RunningStack) -> dict[str, str]:
    r = await st.http.get("/v1/cases", params={"needs_attention": "true"}, headers=st.auth(st.agent_key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_page_token"] is None, "more than one page: the queue holds more than expected"
    return {i["shipment_id"]: i["reason"] for i in body["items"]}


async def test_twenty_shipments_five_stuck_agent_reattempt_reaches_carrier_once(tmp_path: Path) -> None:
    async with running_stack(tmp_path, **STACK) as st:
        ids = {n: await register(st, n) for n in range(1, 21)}

        def sid(n: int) -> str:
            return ids[n][0]

        def trk(n: int) -> str:
            return ids[n][1]

        async def ask_then(n: int, reason: str = "customer_unavailable") -> None:
            await scan(st, trk(n), "delivery_failed", reason)
            await eventually(lambda: case_in(st, sid(n), "asking"), f"shipment {n}'s case asking")
            await eventually(lambda: asked(st, n), f"the NDR question to customer {n}")

        # -- 1: carrier_rejected. First, so that the one-shot reject fault meets its instruction.
        async with httpx.AsyncClient(base_url=st.fake_url, timeout=10) as c:
            r = await c.post("/_faults", json={"carrier": CARRIER, "mode": "reject", "count": 1})
            assert r.status_code == 201, r.text
        # Not the customer's to fix: the default rule decides RTO at once, without review.
        await scan(st, trk(1), "delivery_failed", "out_of_delivery_area")
        rejected = await eventually(lambda: fake_received(st, trk(1)), "the RTO reaching the fake carrier")
        assert [(x["outcome"], x["body"]["action"]) for x in rejected] == [("rejected", "rto")]

        # -- 2: no_tracking_update: picked up, then silence beyond the 3 s limit.
        await scan(st, trk(2), "picked_up")

        # -- 3: unparsed_replies: two answers the parser cannot read.
        await ask_then(3)
        await sms_reply(st, 3, "purple monkey dishwasher", "SMag3a")
        await eventually(lambda: responses(st, sid(3), 1), "the first unclear reply applied")
        await sms_reply(st, 3, "blorp zzz qwxv", "SMag3b")

        # -- 4: suspected_fake_attempt: "customer unavailable", but the customer was home.
        await ask_then(4)
        await sms_reply(st, 4, "I was home, nobody came", "SMag4")

        # -- 5: ndr_rule_review: the carrier did not attempt; the default rule reattempts and escalates.
        await scan(st, trk(5), "delivery_failed", "not_attempted")

        # -- the 15 that are fine.
        # 6-9: registered only.
        for n in (10, 11, 12):  # in transit
            await scan(st, trk(n), "in_transit")
        for n in (13, 14):  # out for delivery
            await scan(st, trk(n), "in_transit")
            await scan(st, trk(n), "out_for_delivery")
        for n in (15, 16, 17):  # delivered (terminal)
            await scan(st, trk(n), "in_transit")
            await scan(st, trk(n), "out_for_delivery")
            await scan(st, trk(n), "delivered")
        for n in (18, 19, 20):  # an NDR answered normally ("1" = reattempt)
            await ask_then(n)
            await sms_reply(st, n, "1", f"SMag{n}")
        for n in (18, 19, 20):
            await eventually(
                lambda n=n: case_in(st, sid(n), "instructed"), f"shipment {n}'s reattempt accepted"
            )
        await scan(st, trk(20), "out_for_delivery")  # 20: the carrier acted and delivered
        await scan(st, trk(20), "delivered")
        await eventually(lambda: case_in(st, sid(20), "closed"), "shipment 20's case closed by the delivery")
        for n in (15, 16, 17):
            await eventually(lambda n=n: status_is(st, sid(n), "delivered"), f"shipment {n} delivered")

        # -- the queue: exactly the five, each with its reason (visibility catches up; bounded).
        expected = {
            sid(1): "carrier_rejected",
            sid(2): "no_tracking_update",
            sid(3): "unparsed_replies",
            sid(4): "suspected_fake_attempt",
            sid(5): "ndr_rule_review",
        }

        async def queue_is_expected() -> dict[str, str] | None:
            got = await queue(st)
            return got if got == expected else None

        try:
            await eventually(queue_is_expected, "the five stuck shipments in the queue")
        except AssertionError:
            raise AssertionError(f"queue {await queue(st)} != expected {expected}") from None
        r = await st.http.get("/v1/cases", params={"needs_attention": "true"}, headers=st.auth(st.agent_key))
        items = {i["shipment_id"]: i for i in r.json()["items"]}
        assert all(items[s]["since"] and items[s]["tracking_number"] for s in expected), items

        # -- an agent forces a reattempt on the unparsed one: no instruction was ever sent for it,
        # so "the carrier receives it once" counts exactly the agent's.
        assert await fake_received(st, trk(3)) == []
        r = await st.http.post(
            f"/v1/shipments/{sid(3)}/actions",
            json={"action": "reattempt", "reason": "called the customer: deliver again tomorrow"},
            headers={**st.auth(st.agent_key), "Idempotency-Key": "e2e-agent-reattempt-3"},
        )
        assert r.status_code == 200 and r.json()["accepted"], r.text
        # A retried request (same Idempotency-Key) gets the first answer and sends nothing new.
        again = await st.http.post(
            f"/v1/shipments/{sid(3)}/actions",
            json={"action": "reattempt", "reason": "called the customer: deliver again tomorrow"},
            headers={**st.auth(st.agent_key), "Idempotency-Key": "e2e-agent-reattempt-3"},
        )
        assert again.status_code == 200, again.text

        async def answered() -> dict[str, Any] | None:
            case = await last_case(st, sid(3))
            ins = case["instructions"] if case else []
            return case if ins and ins[-1]["status"] != "pending" else None

        case = await eventually(answered, "the carrier's answer to the agent's reattempt")
        [ins] = case["instructions"]
        assert (ins["action"], ins["source"], ins["status"]) == ("reattempt", "agent", "accepted"), ins
        got = await fake_received(st, trk(3))
        assert [(x["outcome"], x["body"]["action"], x["body"]["source"]) for x in got] == [
            ("accepted", "reattempt", "agent")
        ]

        # The item leaves the queue; the other four stay.
        rest = {k: v for k, v in expected.items() if k != sid(3)}

        async def left_queue() -> dict[str, str] | None:
            got = await queue(st)
            return got if got == rest else None

        await eventually(left_queue, "the acted-on shipment to leave the queue")

        # The action is in the timeline, with who and why.
        r = await st.http.get(f"/v1/shipments/{sid(3)}/timeline", headers=st.auth(st.agent_key))
        assert r.status_code == 200, r.text
        acts = [i for i in r.json()["items"] if i["kind"] == "agent_action"]
        assert [a.get("action") for a in acts] == ["reattempt"], acts
        assert "called the customer" in str(acts[0])
        assert len(await fake_received(st, trk(3))) == 1  # still once

        # -- keys stay in their lanes.
        agent_create = await st.http.post(
            "/v1/shipments",
            json={
                "merchant_id": "acme",
                "order_id": "X",
                "carrier": CARRIER,
                "tracking_number": "AG-X",
                "customer": {"name": "X", "phone": phone(99)},
                "address": {"line1": "1", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
            },
            headers=st.auth(st.agent_key),
        )
        assert agent_create.status_code == 403, agent_create.text
        assert (await st.http.get("/v1/cases", headers=st.auth(st.merchant_key))).status_code == 403

        other = st.make_key("merchant", merchant_id="globex")
        assert (await st.http.get(f"/v1/shipments/{sid(1)}", headers=st.auth(other))).status_code == 404
        assert (
            await st.http.get(f"/v1/shipments/{sid(1)}/timeline", headers=st.auth(other))
        ).status_code == 404
        assert (
            await st.http.get(f"/v1/shipments/{sid(1)}", headers=st.auth(st.merchant_key))
        ).status_code == 200

        async with httpx.AsyncClient(base_url=st.base_url, timeout=10) as browser:
            form = await browser.get("/agent/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None, form.text
            refused = await browser.post(
                "/agent/sign-in", data={"key": st.merchant_key, "csrf": csrf.group(1)}
            )
            assert refused.status_code == 403 and "Only agent keys" in refused.text
            page = await browser.get("/agent")  # no session: back to the sign-in form
            assert page.status_code == 303 and page.headers["location"] == "/agent/sign-in"
