"""The agents' path on the real stack (dev server, worker, API) in Debian Chromium: a shipment's
NDR case escalates for real (two replies nobody understood), the queue shows it, the agent opens
it, resolves it through the workflow's Update, sees the result, and the item leaves the queue.

The failed delivery and the replies are sent straight to the workflow (signal and Update, as the
carrier route and the reply webhooks do after their signature checks, which their own tests
cover), so this test is about the agent's side."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from api import cases
from domain.events import CarrierEvent, normalise_time
from store import agents as agent_store
from tests.e2e.harness import RunningStack, running_stack
from workflows import search
from workflows.messages import (
    CUSTOMER_REPLY,
    CarrierEventsInput,
    CustomerReplyInput,
    CustomerReplyResult,
    ShipmentState,
)
from workflows.shipment import ShipmentWorkflow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "agent_dashboard_live"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser test skipped: Debian Chromium is not installed at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it)",
    ),
]


async def wait_for(predicate, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def escalated_shipment(st: RunningStack, tracking: str) -> tuple[str, str]:
    """A registered shipment whose workflow raised its attention flag; returns (id, reason).

    Two unclear replies escalate the case (unparsed_replies); if a message to the customer could
    not be sent on any channel the workflow flags channels_failed instead. Either is a real flag."""
    body = {
        "merchant_id": "acme",
        "order_id": f"O-{tracking}",
        "carrier": "generic",
        "tracking_number": tracking,
        "customer": {"name": "Asha <i>Rao</i>", "phone": "+91 98765 43210", "locale": "en-IN"},
        "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    }
    r = await st.http.post("/v1/shipments", json=body, headers=st.auth(st.merchant_key))
    assert r.status_code == 201, r.text
    sid, wid = r.json()["shipment_id"], r.json()["workflow_id"]
    handle = st.client.get_workflow_handle(wid)
    now = normalise_time(datetime.now(UTC))
    event = CarrierEvent(
        carrier="generic",
        tracking_number=tracking,
        milestone="delivery_failed",
        occurred_at=now,
        event_id=f"{tracking}-f1",
        ndr_reason="customer_unavailable",
    )
    await handle.signal(ShipmentWorkflow.carrier_events, CarrierEventsInput(events=[event], received_at=now))

    async def asking() -> bool:
        state: ShipmentState = await handle.query(ShipmentWorkflow.state)
        return bool(state.ndr_cases) and state.ndr_cases[-1]["state"] == "asking"

    await wait_for(asking, "the NDR case to ask the customer")
    for i, words in enumerate(["hmm??", "<script>alert('reply')</script> what is this"]):
        reply = CustomerReplyInput(
            attempt=1,
            channel="sms",
            received_at=normalise_time(datetime.now(UTC)),
            kind="unclear",
            text=words,
            confidence=0.1,
            message_id=f"{tracking}-SM{i}",
        )
        await handle.execute_update(CUSTOMER_REPLY, reply, result_type=CustomerReplyResult)

    async def flagged() -> str | None:
        async for w in st.client.list_workflows(f"NeedsAttention = true AND WorkflowId = '{wid}'"):
            return w.typed_search_attributes.get(search.ATTENTION_REASON)
        return None

    reason = await wait_for(flagged, "visibility to show the escalation")
    assert reason in ("unparsed_replies", "channels_failed")
    return sid, reason


async def test_agent_resolves_a_real_escalation_in_chromium(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    async with running_stack(tmp_path) as st:
        sid, reason = await escalated_shipment(st, "LIVE-1")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(15_000)
                await page.goto(f"{st.base_url}/agent")
                await page.fill("#key", st.agent_key)
                await page.click("button[type=submit].primary")
                await expect(page).to_have_url(f"{st.base_url}/agent")

                await page.select_option("select[name=reason]", reason)
                await page.click("form.filters button[type=submit]")
                await expect(page.locator("table.cases tbody tr")).to_have_count(1)
                await expect(page.locator(".count.on")).to_contain_text(f"1 {cases.reason_label(reason)}")
                await page.screenshot(path=str(ARTIFACTS / "01_queue.png"), full_page=True)

                await page.click(f"a[href='/agent/shipments/{sid}']")
                await expect(page.locator(".attention")).to_contain_text(cases.reason_label(reason))
                await expect(page.locator("blockquote.reply-text").last).to_have_text(
                    "<script>alert('reply')</script> what is this"
                )
                await expect(page.locator(".customer-name")).to_have_text("Asha <i>Rao</i>")
                await page.screenshot(path=str(ARTIFACTS / "02_shipment.png"), full_page=True)

                await page.click("details.action-resolve summary")
                await page.fill(
                    "details.action-resolve textarea[name=reason]",
                    "Called the customer: she will collect from the hub",
                )
                await page.click("details.action-resolve button[type=submit]")
                await expect(page.locator(".result.ok")).to_contain_text("Done: resolve")
                await expect(page.locator(".calm")).to_contain_text("does not need attention")
                await expect(page.locator(".timeline li.kind-agent_action")).to_contain_text("resolve")
                await page.screenshot(path=str(ARTIFACTS / "03_resolved.png"), full_page=True)

                async def gone() -> bool:
                    return (
                        await st.client.count_workflows(
                            "NeedsAttention = true AND ExecutionStatus = 'Running'"
                        )
                    ).count == 0

                await wait_for(gone, "the shipment to leave the queue")
                await page.click("nav.crumbs a")
                await expect(page.locator(".count.total")).to_contain_text("0 need attention")
                await expect(page.locator(".empty")).to_contain_text("Nothing needs attention")
            finally:
                await browser.close()

        with Session(st.engine) as s:
            [rec] = agent_store.actions_for(s, shipment_id=sid)
            history = agent_store.attention_history(s, shipment_id=sid)
            still_open = agent_store.open_attention(s, shipment_id=sid)
        assert (rec.action, rec.status, rec.source, rec.agent) == (
            "resolve",
            "accepted",
            "dashboard",
            "e2e agent#3",
        )
        # The workflow's record_attention activity mirrored the raise(s) and the agent's clear.
        assert history and history[-1].reason == reason and still_open == []
        assert history[-1].cleared_by
        tl = (await st.http.get(f"/v1/shipments/{sid}/timeline", headers=st.auth(st.agent_key))).json()[
            "items"
        ]
        assert sum(1 for i in tl if i["kind"] == "agent_action") == 1
        assert re.search(r"resolve", [i for i in tl if i["kind"] == "agent_action"][0]["summary"])
