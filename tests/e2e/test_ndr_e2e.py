"""Issue 5 end to end on the real stack (dev server, worker, notify worker, API) with the local
outbox and the fake carrier that local mode serves: a failed delivery asks the customer, the
customer answers by a signed Twilio webhook ("2", then a day) or on the self-service page in real
Chromium, the carrier receives exactly one reschedule for that day, and the delivery closes the
case. Unsigned or wrongly signed webhooks change nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from carriers.fake import payloads
from carriers.fake.payloads import Scan
from store import ndr as routes
from store import notifications as ns
from tests.e2e.harness import RunningStack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

T = TypeVar("T")
IST = ZoneInfo("Asia/Kolkata")
PHONE = "+919876543210"
INBOUND = "/v1/webhooks/twilio/inbound"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ndr"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
# Quiet hours off: the test may run at night in India, when SMS would wait for 09:00.
STACK = {"quiet_hours": "", "delhivery_upl_poll_interval_s": 0.2}


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings cached by an earlier stack in this process must not leak into this one."""
    from api.routes.merchants import channel_settings
    from ndrflow.ndr_settings import get_ndr_settings

    for cached in (channel_settings, get_ndr_settings):
        cached.cache_clear()
    yield
    for cached in (channel_settings, get_ndr_settings):
        cached.cache_clear()


def reply_day(today: date) -> tuple[str, date]:
    """Saturday when the coming Saturday is inside the carrier's window (tomorrow .. +6 days),
    else the first weekday name that is; and the date the customer means by it."""
    for name in ["Saturday", *WEEKDAYS]:
        ahead = (WEEKDAYS.index(name) - today.weekday()) % 7
        if 1 <= ahead <= 6:
            return name, today + timedelta(days=ahead)
    raise AssertionError("unreachable: some weekday is 1-6 days ahead")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 25.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.2)


def registration(carrier: str, tracking: str) -> dict[str, Any]:
    return {
        "merchant_id": "acme",
        "order_id": f"A-{tracking}",
        "carrier": carrier,
        "tracking_number": tracking,
        "payment": {"mode": "cod", "amount": "1299.00", "currency": "INR"},
        "customer": {"name": "Asha Rao", "phone": "+91 98765 43210", "email": "asha@example.com", "locale": "en-IN",
                     "whatsapp_opt_in": False},
        "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    }


async def register(st: RunningStack, carrier: str, tracking: str) -> str:
    r = await st.http.post("/v1/shipments", json=registration(carrier, tracking), headers=st.auth(st.merchant_key))
    assert r.status_code == 201, r.text
    return str(r.json()["shipment_id"])


async def scan(st: RunningStack, carrier: str, tracking: str, milestone: str, reason: str | None = None) -> None:
    """The carrier's own push format, authenticated with its carrier key."""
    body = payloads.encode(payloads.build(carrier, Scan(tracking, milestone, ndr_reason=reason, occurred_at=datetime.now(UTC))))
    r = await st.http.post(f"/v1/carriers/{carrier}/events", content=body,
                           headers={**st.auth(st.carrier_key), "Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


async def shipment(st: RunningStack, sid: str) -> dict[str, Any]:
    r = await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.merchant_key))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def case_in(st: RunningStack, sid: str, *states: str) -> dict[str, Any] | None:
    cases = (await shipment(st, sid))["ndr_cases"]
    return cases[-1] if cases and cases[-1]["state"] in states else None


async def outbox(st: RunningStack, to: str = PHONE) -> list[dict[str, Any]]:
    r = await st.http.get("/v1/dev/outbox", params={"to": to})
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def received(st: RunningStack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=st.stack.fake_carrier.url, timeout=10) as c:
        r = await c.get("/_received")  # what reached the carrier's logic (accepted or rejected)
    assert r.status_code == 200, r.text
    return list(r.json())


def twilio_form(body: str, sid: str) -> dict[str, str]:
    return {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "Body": body, "From": PHONE, "MessageSid": sid,
            "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "To": "+15005550006"}


async def sms_reply(st: RunningStack, body: str, sid: str, *, token: str | None = None, signed: bool = True) -> httpx.Response:
    """What Twilio posts when the customer texts us: signed over our public URL."""
    params = twilio_form(body, sid)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        key = token if token is not None else st.settings.twilio_auth_token
        headers["X-Twilio-Signature"] = RequestValidator(key).compute_signature(st.settings.public_base_url + INBOUND, params)
    return await st.http.post(INBOUND, content=urlencode(params), headers=headers)


def inbound_rows(st: RunningStack) -> tuple[int, int]:
    with Session(st.engine) as s:
        return len(s.exec(select(routes.InboundReply)).all()), len(s.exec(select(ns.InboundMessage)).all())


def instructions_for(got: list[dict[str, Any]], tracking: str) -> list[dict[str, Any]]:
    return [r for r in got if tracking in str(r["body"])]


async def ask_message(st: RunningStack) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return next((m for m in await outbox(st) if m["purpose"].startswith("ndr") and "/r/" in m["body"]), None)

    return await eventually(probe, "the NDR question with its options and link in the outbox")


# ---- SMS -------------------------------------------------------------------------------------------


async def test_sms_two_then_a_day_reaches_the_carrier_once_and_the_delivery_closes_the_case(tmp_path: Path) -> None:
    async with running_stack(tmp_path, carrier="delhivery", **STACK) as st:
        tracking = "DLV1001"
        sid = await register(st, "delhivery", tracking)
        await scan(st, "delhivery", tracking, "delivery_failed", "customer_unavailable")

        ask = await ask_message(st)
        assert ask["channel"] == "sms" and ask["purpose"] == "ndr_ask"
        # The options the reason allows, numbered as the parser reads them.
        for number in ("1", "2", "3", "4"):
            assert re.search(rf"\b{number}\b", ask["body"]), ask["body"]
        case = await eventually(lambda: case_in(st, sid, "asking"), "the case asking")
        assert case["reason"] == "customer_unavailable" and case["attempt"] == 1

        # Forged replies: unsigned, signed with another token, or for another URL. 403, nothing changes.
        before = inbound_rows(st)
        assert (await sms_reply(st, "4", "SMforged1", signed=False)).status_code == 403
        assert (await sms_reply(st, "4", "SMforged2", token="not-the-auth-token")).status_code == 403
        params = twilio_form("4", "SMforged3")
        wrong_url = RequestValidator(st.settings.twilio_auth_token).compute_signature("http://evil.example" + INBOUND, params)
        r = await st.http.post(INBOUND, content=urlencode(params), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": wrong_url})
        assert r.status_code == 403
        assert inbound_rows(st) == before
        assert (await case_in(st, sid, "asking"))["responses"] == []  # type: ignore[index]

        # "2" (pick a date), then the day by name.
        r = await sms_reply(st, "2", "SMe2e1")
        assert r.status_code == 200 and r.text.endswith("<Response/>")
        await eventually(lambda: case_in(st, sid, "awaiting_date"), "the case awaiting a date")
        name, day = reply_day(datetime.now(IST).date())
        assert (await sms_reply(st, name, "SMe2e2")).status_code == 200
        assert (await sms_reply(st, name, "SMe2e2")).status_code == 200  # Twilio retries: applied once

        async def accepted_instruction() -> list[dict[str, Any]] | None:
            got = [r for r in instructions_for(await received(st), tracking) if r["path"] == "/api/p/update"]
            view = await case_in(st, sid, "instructed")
            return got if got and view else None

        got = await eventually(accepted_instruction, "the reschedule at the fake Delhivery")
        [update] = got
        [item] = update["body"]["data"]
        assert (item["waybill"], item["act"], item["action_data"]["deferred_date"]) == (tracking, "DEFER_DLV", day.isoformat())

        await scan(st, "delhivery", tracking, "out_for_delivery")
        await scan(st, "delhivery", tracking, "delivered")
        view = await eventually(lambda: case_in(st, sid, "closed"), "the delivery closing the case")
        assert view["close_reason"] == "delivered"
        assert [(x["channel"], x["text"], x["action"]) for x in view["responses"]] == [
            ("sms", "2", "reschedule"), ("sms", name, "reschedule")]
        [ins] = view["instructions"]
        assert (ins["action"], ins["status"], ins["requested_date"], ins["source"]) == ("reschedule", "accepted", day.isoformat(), "customer")
        body = await shipment(st, sid)
        assert body["status"] == "delivered" and body["search_attributes"]["NdrAttempts"] == 1
        # Exactly one instruction reached the carrier's logic, whatever the retries.
        assert len([r for r in instructions_for(await received(st), tracking) if r["path"] == "/api/p/update"]) == 1
        # The customer was asked for the date and told the outcome, all in the outbox.
        purposes = [m["purpose"] for m in await outbox(st)]
        assert purposes.count("ndr_ask") == 1 and "ndr_ask_date" in purposes and "ndr_confirm" in purposes


# ---- the self-service page in Chromium ---------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="browser test skipped: Debian Chromium is not installed at /usr/bin/chromium "
                    "(`apt-get install chromium`; .ci/run installs it)")
async def test_self_service_page_in_chromium_reschedules_once(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with running_stack(tmp_path, **STACK) as st:
        tracking = "GEN2002"
        sid = await register(st, "generic", tracking)
        await scan(st, "generic", tracking, "delivery_failed", "customer_unavailable")
        ask = await ask_message(st)
        link = re.search(r"https?://\S+/r/[A-Za-z0-9_.~-]+", ask["body"])
        assert link is not None, ask["body"]
        assert link.group(0).startswith(st.base_url)
        _, day = reply_day(datetime.now(IST).date())

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 390, "height": 844}, locale="en-IN")
                response = await page.goto(link.group(0))
                assert response is not None and response.status == 200
                await page.screenshot(path=str(ARTIFACTS / "case_page.png"), full_page=True)
                options = await page.eval_on_selector_all("select#date option", "els => els.map(e => e.value)")
                assert day.isoformat() in options and len(options) == 6
                await page.select_option("select#date", day.isoformat())
                await page.click("form:has(select#date) button[type=submit]")
                await page.wait_for_load_state()
                text = await page.inner_text("body")
                await page.screenshot(path=str(ARTIFACTS / "case_page_done.png"), full_page=True)
                assert "Thank you" in text and "The courier will deliver on" in text
                # The link is used: opening it again says so, with the decision.
                again = await page.goto(link.group(0))
                assert again is not None and again.status == 410
            finally:
                await browser.close()

        async def instructed() -> list[dict[str, Any]] | None:
            got = [r for r in instructions_for(await received(st), tracking) if r["path"] == "/generic/instructions"]
            return got if got and await case_in(st, sid, "instructed") else None

        [ins] = await eventually(instructed, "the reschedule at the fake generic carrier")
        assert (ins["body"]["action"], ins["body"]["requested_date"], ins["body"]["source"]) == ("reschedule", day.isoformat(), "customer")
        assert ins["headers"].get("x-ndrflow-signature", "").startswith("sha256=")
        await scan(st, "generic", tracking, "delivered")
        view = await eventually(lambda: case_in(st, sid, "closed"), "the delivery closing the case")
        assert [x["channel"] for x in view["responses"]] == ["web"]
        assert [(i["action"], i["requested_date"]) for i in view["instructions"]] == [("reschedule", day.isoformat())]
    assert (ARTIFACTS / "case_page_done.png").stat().st_size > 0
