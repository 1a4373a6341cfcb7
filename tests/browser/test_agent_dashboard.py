"""The agents' dashboard in real Chromium (Debian's /usr/bin/chromium through Python Playwright;
never a downloaded browser): sign in, filter the queue, open a shipment, act, see the result, on
a laptop and a phone viewport. The app is served by uvicorn on a free loopback port with the fake
Temporal of the API tests (visibility, query and Update). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from store.db import migrate
from tests.api.agent_fakes import AgentsApi, make_agents_api

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "agent_dashboard"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser test skipped: Debian Chromium is not installed at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it)",
    ),
]


class Served:
    def __init__(self, api: AgentsApi) -> None:
        self.api = api
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(api.client.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / 'ndrflow.db'}"
    migrate(url)
    api = make_agents_api(url, tmp_path)
    with Served(api) as s:
        yield s


def world(api: AgentsApi) -> dict[str, str]:
    t0 = datetime.now(UTC) - timedelta(hours=5)
    add = api.temporal.add
    rows = {
        "rejected_a": add(
            api.engine,
            merchant="acme",
            tracking="DL100",
            carrier="delhivery",
            reason="carrier_rejected",
            started=t0,
            since=t0 + timedelta(hours=3),
            customer_name="<script>alert('x')</script> Rao",
        ),
        "rejected_b": add(
            api.engine,
            merchant="globex",
            tracking="CP200",
            carrier="clickpost",
            reason="carrier_rejected",
            started=t0 + timedelta(minutes=1),
            since=t0 + timedelta(hours=4),
        ),
        "stalled": add(
            api.engine,
            merchant="acme",
            tracking="GN300",
            reason="no_tracking_update",
            started=t0 + timedelta(minutes=2),
            since=t0 - timedelta(days=2),
        ),
        "fake": add(
            api.engine,
            merchant="acme",
            tracking="GN301",
            reason="suspected_fake_attempt",
            status="delivery_failed",
            started=t0 + timedelta(minutes=3),
            since=t0 + timedelta(hours=2),
        ),
        "fine": add(api.engine, merchant="acme", tracking="GN302", started=t0 + timedelta(minutes=4)),
    }
    st = api.temporal.states[rows["rejected_a"].workflow_id]
    st.status = api.temporal.executions[rows["rejected_a"].workflow_id].attrs["ShipmentStatus"] = (
        "delivery_failed"
    )
    from workflows.messages import TimelineEntry

    st.timeline += [
        TimelineEntry(
            at=(t0 + timedelta(hours=1)).isoformat(),
            kind="carrier_event",
            summary="Consignee unavailable",
            data={"location": "Bengaluru Hub", "milestone": "delivery_failed"},
        ),
        TimelineEntry(
            at=(t0 + timedelta(hours=3)).isoformat(),
            kind="instruction",
            summary="reattempt sent to delhivery: rejected (HTTP 400)",
        ),
    ]
    st.notifications = [
        {
            "key": "n1",
            "purpose": "ndr_ask",
            "channel": "sms",
            "status": "delivered",
            "sent_at": (t0 + timedelta(hours=1, minutes=5)).isoformat(),
        }
    ]
    st.ndr_cases = [
        {
            "attempt": 1,
            "reason": "customer_unavailable",
            "state": "escalated",
            "responses": [
                {
                    "at": (t0 + timedelta(hours=2)).isoformat(),
                    "channel": "sms",
                    "kind": "choice",
                    "action": "reattempt",
                    "text": "1 <b>please</b> deliver tomorrow",
                }
            ],
            "instructions": [],
        }
    ]
    return {k: r.shipment_id for k, r in rows.items()}


def test_sign_in_filter_open_act_and_see_the_result(served: Served) -> None:
    from playwright.sync_api import expect, sync_playwright

    api = served.api
    ids = world(api)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    foreign: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(served.url) else None)
            page.set_default_timeout(10_000)

            # Not signed in: the dashboard sends us to sign in; a merchant key is refused.
            page.goto(f"{served.url}/agent")
            expect(page).to_have_url(f"{served.url}/agent/sign-in")
            page.fill("#key", api.merchant_key)
            page.click("button[type=submit].primary")
            expect(page.locator(".error")).to_contain_text("Only agent keys")
            page.fill("#key", api.agent_key)
            page.screenshot(path=str(ARTIFACTS / "01_sign_in.png"))
            page.click("button[type=submit].primary")
            expect(page).to_have_url(f"{served.url}/agent")

            # The queue: four stuck shipments, counts per reason.
            expect(page.locator("table.cases tbody tr")).to_have_count(4)
            expect(page.locator("table.cases")).to_contain_text("2 d ago")  # the stalled one's since
            expect(page.locator(".count.total")).to_contain_text("4 need attention")
            page.screenshot(path=str(ARTIFACTS / "02_queue.png"), full_page=True)

            # Filter by reason and carrier with the form.
            page.select_option("select[name=reason]", "carrier_rejected")
            page.fill("input[name=carrier]", "delhivery")
            page.click("form.filters button[type=submit]")
            expect(page).to_have_url(re.compile(r"reason=carrier_rejected.*carrier=delhivery"))
            expect(page.locator("table.cases tbody tr")).to_have_count(1)
            assert api.temporal.list_calls[-1][0] == (
                "NeedsAttention = true AND AttentionReason = 'carrier_rejected' AND Carrier = 'delhivery' AND ExecutionStatus = 'Running'"
            )
            page.screenshot(path=str(ARTIFACTS / "03_filtered.png"), full_page=True)

            # Open it: timeline, escaped customer text, link to the Temporal UI.
            page.click(f"a[href='/agent/shipments/{ids['rejected_a']}']")
            expect(page.locator("h1")).to_have_text(ids["rejected_a"])
            expect(page.locator(".customer-name")).to_have_text("<script>alert('x')</script> Rao")
            expect(page.locator("blockquote.reply-text")).to_have_text("1 <b>please</b> deliver tomorrow")
            expect(page.locator(".attention")).to_contain_text("Carrier rejected instruction")
            expect(page.locator("a.temporal")).to_have_attribute(
                "href", f"http://127.0.0.1:8233/namespaces/default/workflows/shipment-{ids['rejected_a']}"
            )
            kinds = page.locator(".timeline li .badge").all_inner_texts()
            assert kinds == [
                "registered",
                "carrier event",
                "notification",
                "reply",
                "instruction",
                "attention",
            ], kinds
            expect(page.locator(".attention")).to_contain_text("2 h ago")
            page.screenshot(path=str(ARTIFACTS / "04_shipment.png"), full_page=True)

            # Act: force a reattempt.
            page.click("details.action-reattempt summary")
            page.fill(
                "details.action-reattempt textarea[name=reason]",
                "Customer confirmed on the phone: home all day",
            )
            page.click("details.action-reattempt button[type=submit]")
            expect(page.locator(".result.ok")).to_contain_text("Done: reattempt")
            expect(page.locator(".calm")).to_contain_text("does not need attention")
            expect(page.locator(".timeline li.kind-agent_action")).to_contain_text("reattempt")
            page.screenshot(path=str(ARTIFACTS / "05_after_action.png"), full_page=True)
            [call] = api.temporal.updates
            assert (call.arg.action, call.arg.reason, call.arg.agent) == (
                "reattempt",
                "Customer confirmed on the phone: home all day",
                f"priya#{api.agent_key_id}",
            )

            # Back in the queue the shipment is gone and the counts moved.
            page.click("nav.crumbs a")
            expect(page.locator(".count.total")).to_contain_text("3 need attention")
            expect(page.locator(f"a[href='/agent/shipments/{ids['rejected_a']}']")).to_have_count(0)

            # A phone: the same session, cards instead of a table, no sideways scrolling.
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, storage_state=context.storage_state(), is_mobile=True
            )
            p2 = phone.new_page()
            p2.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(served.url) else None)
            p2.goto(f"{served.url}/agent")
            expect(p2.locator("table.cases tbody tr")).to_have_count(3)
            assert p2.evaluate("document.documentElement.scrollWidth") <= 390
            p2.screenshot(path=str(ARTIFACTS / "06_phone_queue.png"), full_page=True)
            p2.goto(f"{served.url}/agent/shipments/{ids['fake']}")
            assert p2.evaluate("document.documentElement.scrollWidth") <= 390
            p2.screenshot(path=str(ARTIFACTS / "07_phone_shipment.png"), full_page=True)

            # Sign out.
            page.click("form.signout button")
            expect(page).to_have_url(f"{served.url}/agent/sign-in")
        finally:
            browser.close()

    assert foreign == [], f"the dashboard loaded something from elsewhere: {foreign}"
    assert (ARTIFACTS / "05_after_action.png").stat().st_size > 10_000
