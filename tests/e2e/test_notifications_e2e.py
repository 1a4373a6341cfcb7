"""Milestone notifications on the real stack: carrier events through the generic webhook, the
workflow's notification plan, the rate-limited notify worker, templates in the customer's
language, the local outbox, and the notifications the shipment API reports.

One stack for the module (starting one costs seconds on a shared 2-core machine): quiet hours
off so the run does not depend on the hour, a policy that fans every milestone out to every
channel so each channel's count can be checked, and a recognisable notify rate limit."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from channels.settings import ChannelSettings
from tests.e2e.harness import RunningStack, running_stack

pytestmark = pytest.mark.e2e

NOTIFIED = ("picked_up", "out_for_delivery", "delivered")
RATE = 7.5  # NDRFLOW_NOTIFY_MAX_PER_SECOND for this stack
POLICY = (
    '{"default": {"merchant_name": "Acme Fashions", "notify": {'
    + ", ".join(f'"{m}": {{"channels": ["whatsapp", "sms", "email"], "fan_out": true}}' for m in NOTIFIED)
    + "}}}"
)

# (locale, phone as the merchant sends it, E.164, email, country, WhatsApp opt-in, script of the text)
CUSTOMERS = {
    "en": ("en-IN", "+91 98765 43210", "+919876543210", "asha.en@example.com", "IN", False, r"[A-Za-z]"),
    "hi": ("hi-IN", "098765 43211", "+919876543211", "asha.hi@example.com", "IN", True, r"[\u0900-\u097F]"),
    "ko": (
        "ko-KR",
        "010-2345-6789",
        "+821023456789",
        "minji.ko@example.com",
        "KR",
        False,
        r"[\uAC00-\uD7A3]",
    ),
}
CHANNELS = {"en": ("sms", "email"), "hi": ("whatsapp", "sms", "email"), "ko": ("sms", "email")}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningStack]:
    async with running_stack(
        tmp_path_factory.mktemp("notify-e2e"),
        quiet_hours="",
        notify_policy=POLICY,
        notify_max_per_second=RATE,
    ) as stack:
        # The API caches the channel settings it snapshots policies from at registration: a stack
        # started earlier in this process must not lend us its policy or quiet hours.
        _clear_settings_caches()
        yield stack
    _clear_settings_caches()


def _clear_settings_caches() -> None:
    from api.routes import merchants
    from ndrflow.ndr_settings import get_ndr_settings

    merchants.channel_settings.cache_clear()
    get_ndr_settings.cache_clear()


async def register(st: RunningStack, lang: str, tag: str = "") -> str:
    locale, phone, _, email, country, wa, _ = CUSTOMERS[lang]
    body = {
        "merchant_id": "acme",
        "order_id": f"A-{lang.upper()}-1001",
        "carrier": "generic",
        "tracking_number": f"TRK-E2E-{lang.upper()}{tag}",
        "payment": {"mode": "cod", "amount": "1299.00", "currency": "INR" if country == "IN" else "KRW"},
        "customer": {
            "name": "Asha Rao",
            "phone": phone,
            "email": email,
            "locale": locale,
            "whatsapp_opt_in": wa,
        },
        "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": country},
        "promised_delivery_date": "2026-11-30",
    }
    r = await st.http.post("/v1/shipments", json=body, headers=st.auth(st.merchant_key))
    assert r.status_code == 201, r.text
    return r.json()["shipment_id"]


async def post_event(st: RunningStack, lang: str, status: str, n: int, tag: str = "") -> None:
    ev = {
        "tracking_number": f"TRK-E2E-{lang.upper()}{tag}",
        "event_id": f"{lang}-e{n}",
        "status": status,
        "ndr_reason": None,
        "occurred_at": f"2026-11-28T0{n}:10:00+05:30",
        "location": "Bengaluru Hub",
        "raw_code": status.upper(),
        "raw_status": status.replace("_", " "),
    }
    r = await st.http.post(
        "/v1/carriers/generic/events", json={"events": [ev]}, headers=st.auth(st.carrier_key)
    )
    assert r.status_code == 202, r.text


async def outbox(st: RunningStack, to: str) -> list[dict[str, Any]]:
    r = await st.http.get("/v1/dev/outbox", params={"to": to})
    assert r.status_code == 200, r.text
    return r.json()["messages"]


async def wait_for(st: RunningStack, to: str, purpose: str, count: int, timeout: float = 45.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if sum(1 for m in await outbox(st, to) if m["purpose"] == purpose) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{to}: no {purpose} message after {timeout}s: {await outbox(st, to)}")


async def test_each_notified_milestone_reaches_each_channel_once_in_the_customers_language(
    st: RunningStack,
) -> None:
    ids = {lang: await register(st, lang) for lang in CUSTOMERS}
    for n, status in enumerate(("created", *NOTIFIED), start=1):
        for lang in CUSTOMERS:
            await post_event(st, lang, status, n)
        if status in NOTIFIED:
            for lang, (_, _, e164, email, *_rest) in CUSTOMERS.items():
                await wait_for(st, e164, status, len(CHANNELS[lang]) - 1)
                await wait_for(st, email, status, 1)
    # A carrier retry of an event already applied changes nothing.
    await post_event(st, "hi", "delivered", 4)
    await asyncio.sleep(1.5)  # room for any duplicate to show up

    for lang, (locale, _, e164, email, _, _, script) in CUSTOMERS.items():
        sid = ids[lang]
        messages = await outbox(st, e164) + await outbox(st, email)
        assert all(m["shipment_id"] == sid for m in messages)
        per = Counter((m["channel"], m["purpose"]) for m in messages)
        assert per == Counter({(c, p): 1 for c in CHANNELS[lang] for p in NOTIFIED}), (lang, per)
        for m in messages:
            assert m["locale"] == locale and m["template_locale"] == lang
            assert re.search(script, m["body"]), (lang, m["body"])
            assert f"{st.base_url}/t/{sid}" in m["body"]  # our public tracking page
            assert "Acme Fashions" in m["body"]
            if m["channel"] == "email":
                assert m["subject"] and m["has_html"]
        if lang == "hi":
            sms = next(m for m in messages if m["channel"] == "sms" and m["purpose"] == "delivered")
            assert "डिलीवर" in sms["body"]
        if lang == "ko":
            ofd = next(m for m in messages if m["channel"] == "sms" and m["purpose"] == "out_for_delivery")
            assert "₩1,299" in ofd["body"] and "배송" in ofd["body"]

        r = await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.merchant_key))
        assert r.status_code == 200, r.text
        shipment = r.json()
        assert shipment["status"] == "delivered"
        notes = shipment["notifications"]
        assert Counter((n["channel"], n["purpose"]) for n in notes) == per
        for note in notes:
            assert {"channel", "purpose", "status", "provider_message_id"} <= set(note)
            assert note["status"] == "sent" and note["provider_message_id"]
        assert {n["provider_message_id"] for n in notes} == {m["message_id"] for m in messages}

        # The public page the messages link to: the customer's language, no personal data.
        page = await st.http.get(f"/t/{sid}")
        assert page.status_code == 200 and page.headers["content-language"] == lang
        assert {"en": "Delivered", "hi": "डिलीवर हो गया", "ko": "배송 완료"}[lang] in page.text
        for secret in ("Asha Rao", e164, email, "12 MG Road"):
            assert secret not in page.text
    assert (await st.http.get("/t/shp_" + "a" * 24)).status_code == 404


async def test_ndr_question_carries_the_fixed_menu_and_a_signed_link_kept_out_of_history(
    st: RunningStack,
) -> None:
    from api.tokens import read_case_token
    from workflows.ids import shipment_workflow_id

    body = {
        "merchant_id": "acme",
        "order_id": "A-NDR-1",
        "carrier": "generic",
        "tracking_number": "TRK-E2E-NDR",
        "customer": {"name": "Ravi Kumar", "phone": "+91 98111 22334", "locale": "en-IN"},
        "address": {"line1": "4 Park St", "city": "Kolkata", "postal_code": "700016", "country": "IN"},
    }
    r = await st.http.post("/v1/shipments", json=body, headers=st.auth(st.merchant_key))
    assert r.status_code == 201, r.text
    sid = r.json()["shipment_id"]
    ev = {
        "tracking_number": "TRK-E2E-NDR",
        "event_id": "ndr-e1",
        "status": "delivery_failed",
        "ndr_reason": "payment_issue",  # no address change for this reason: option 3 is left out
        "occurred_at": "2026-11-28T11:00:00+05:30",
        "location": "Kolkata",
        "raw_code": "EOD-74",
        "raw_status": "Customer not ready with cash",
    }
    r = await st.http.post(
        "/v1/carriers/generic/events", json={"events": [ev]}, headers=st.auth(st.carrier_key)
    )
    assert r.status_code == 202, r.text
    await wait_for(st, "+919811122334", "ndr_ask", 1)
    [ask] = [m for m in await outbox(st, "+919811122334") if m["purpose"] == "ndr_ask"]
    assert ask["channel"] == "sms"
    assert "Reply 1 deliver tomorrow, 2 pick a date, 4 cancel." in ask["body"]
    link = ask["body"].rsplit(" ", 1)[1]
    assert link.startswith(f"{st.base_url}/r/")
    token = link.rsplit("/", 1)[1]
    case = read_case_token(token, secret_key=st.settings.secret_key, max_age=3600)
    shipment = (await st.http.get(f"/v1/shipments/{sid}", headers=st.auth(st.merchant_key))).json()
    [ndr_case] = shipment["ndr_cases"]
    assert (case.shipment_id, case.attempt) == (sid, 1) and case.case_ref == ndr_case["ref"]
    # Neither the link nor the phone number is in the workflow's history.
    history = await st.client.get_workflow_handle(shipment_workflow_id(sid)).fetch_history()
    raw = history.to_json()
    assert token not in raw and "98111" not in raw


async def test_notify_rate_limit_reaches_the_notify_worker(st: RunningStack) -> None:
    """NDRFLOW_NOTIFY_MAX_PER_SECOND becomes the notify worker's
    max_task_queue_activities_per_second: the server sees it on the worker's activity polls."""
    queue = ChannelSettings().notify_task_queue
    assert queue != st.task_queue  # provider sends run on their own, rate-limited queue
    rates: list[float] = []
    for _ in range(100):
        desc = await st.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=st.client.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        rates = [p.rate_per_second for p in desc.pollers]
        if rates:
            break
        await asyncio.sleep(0.05)
    assert rates and all(r == pytest.approx(RATE) for r in rates), rates
    # and the main worker's activity polls carry no such limit
    main = await st.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=st.client.namespace,
            task_queue=TaskQueue(name=st.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    assert all(p.rate_per_second != pytest.approx(RATE) for p in main.pollers)


async def test_with_the_shared_budget_spent_messages_go_through_the_rate_limited_queue_once(
    st: RunningStack,
) -> None:
    """Inline sends take from the provider budget every process shares (store/send_budget.py);
    with it spent (here by "another worker"), each message falls back to the notify queue's
    activity: still exactly one per channel, and the history shows the regular activities."""
    import time

    from temporalio.api.enums.v1 import EventType

    from store import send_budget
    from workflows.ids import shipment_workflow_id

    queue = ChannelSettings().notify_task_queue
    sid = await register(st, "hi", "-B")  # three channels: one out_for_delivery event, three messages
    # Spend the budget for the next few seconds (each take moves it 1/RATE s further ahead).
    while send_budget.take(st.engine, queue, rate=RATE, burst=RATE):
        pass
    for _ in range(int(RATE * 4)):
        send_budget.debit(st.engine, queue, rate=RATE)
    _, _, e164, email, *_ = CUSTOMERS["hi"]

    async def ours() -> list[dict[str, Any]]:
        found = await outbox(st, e164) + await outbox(st, email)
        return [m for m in found if m["purpose"] == "out_for_delivery" and m["shipment_id"] == sid]

    t0 = time.monotonic()
    await post_event(st, "hi", "out_for_delivery", 7, "-B")
    while len(await ours()) < 3 and time.monotonic() - t0 < 15:
        await asyncio.sleep(0.1)
    assert time.monotonic() - t0 < 4, "fell back to the queue instead of waiting for the budget"
    await asyncio.sleep(1.0)  # room for any duplicate to show up
    assert Counter(m["channel"] for m in await ours()) == Counter({"whatsapp": 1, "sms": 1, "email": 1})
    history = await st.client.get_workflow_handle(shipment_workflow_id(sid)).fetch_history()
    queued = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
              and e.activity_task_scheduled_event_attributes.activity_type.name == "send_notification"]
    assert len(queued) == 3
    assert {e.activity_task_scheduled_event_attributes.task_queue.name for e in queued} == {queue}
