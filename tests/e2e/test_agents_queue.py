"""The agents' queue on the real stack: the visibility queries api/cases.py builds (filters,
quoting, page tokens, counts per reason) run on the dev server's visibility store, and the API
and dashboard join them with the store.

The flagged executions are stand-ins started with our search attributes on a task queue nobody
polls (the shipment workflow's own detection is tested with the workflow); what matters here is
that Temporal accepts and answers exactly the queries we send."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api import cases
from store import agents as agent_store
from store.models import Shipment
from tests.e2e.harness import RunningStack, running_stack
from workflows import search
from workflows.ids import shipment_id_for, shipment_workflow_id

pytestmark = pytest.mark.e2e

SPECS = {
    "a": ("acme", "delhivery", "carrier_rejected"),
    "b": ("acme", "generic", "no_tracking_update"),
    "c": ("globex", "delhivery", "carrier_rejected"),
    "d": ("acme", "generic", None),  # fine
    "e": ("o'brien", "generic", "channels_failed"),  # a quote: only reachable through the code path
    "f": ("acme", "generic", "suspected_fake_attempt"),  # finished below: not Running
}
RAISED = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


async def stand_ins(st: RunningStack) -> dict[str, str]:
    ids = {}
    with Session(st.engine) as s:
        for name, (merchant, carrier, reason) in SPECS.items():
            sid = shipment_id_for(merchant, carrier, f"E2E-{name}")
            ids[name] = sid
            s.add(
                Shipment(
                    shipment_id=sid,
                    workflow_id=shipment_workflow_id(sid),
                    merchant_id=merchant,
                    carrier=carrier,
                    tracking_number=f"E2E-{name}",
                    order_id=f"O-{name}",
                )
            )
            pairs = [
                SearchAttributePair(search.MERCHANT_ID, merchant),
                SearchAttributePair(search.CARRIER, carrier),
                SearchAttributePair(search.SHIPMENT_STATUS, "in_transit"),
                SearchAttributePair(search.NEEDS_ATTENTION, reason is not None),
            ]
            if reason:
                pairs.append(SearchAttributePair(search.ATTENTION_REASON, reason))
            await st.client.start_workflow(
                "AgentQueueStandIn",
                id=shipment_workflow_id(sid),
                task_queue="agents-e2e-nobody-polls",
                search_attributes=TypedSearchAttributes(pairs),
            )
        s.commit()
        agent_store.raise_attention(
            s, shipment_id=ids["a"], reason="carrier_rejected", raised_at=RAISED, detail="HTTP 400"
        )
    await st.client.get_workflow_handle(shipment_workflow_id(ids["f"])).terminate("finished")
    # Visibility is eventually consistent: wait until every stand-in is indexed.
    for _ in range(200):
        if (await st.client.count_workflows("WorkflowType = 'AgentQueueStandIn'")).count == len(SPECS):
            break
        await asyncio.sleep(0.05)
    return ids


async def test_queue_filters_pages_and_counts_on_the_real_visibility_store(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as st:
        ids = await stand_ins(st)
        agent = st.auth(st.agent_key)

        async def cases_for(**params: str | int) -> list[str]:
            r = await st.http.get("/v1/cases", params=params, headers=agent)
            assert r.status_code == 200, r.text
            return sorted(i["shipment_id"] for i in r.json()["items"])

        assert await cases_for() == sorted(ids[k] for k in "abce")
        assert await cases_for(reason="carrier_rejected") == sorted(ids[k] for k in "ac")
        assert await cases_for(reason="carrier_rejected", carrier="delhivery", merchant="acme") == [ids["a"]]
        assert await cases_for(merchant="acme") == sorted(ids[k] for k in "ab")
        assert await cases_for(needs_attention="false") == [ids["d"]]

        r = await st.http.get("/v1/cases", params={"merchant": "acme"}, headers=agent)
        [a] = [i for i in r.json()["items"] if i["shipment_id"] == ids["a"]]
        assert (a["reason"], a["since"], a["detail"], a["tracking_number"], a["order_id"]) == (
            "carrier_rejected",
            RAISED.isoformat(),
            "HTTP 400",
            "E2E-a",
            "O-a",
        )

        # Page tokens from the server pass through the API and back.
        first = (await st.http.get("/v1/cases", params={"page_size": 3}, headers=agent)).json()
        assert len(first["items"]) == 3 and first["next_page_token"]
        second = (
            await st.http.get(
                "/v1/cases", params={"page_size": 3, "page_token": first["next_page_token"]}, headers=agent
            )
        ).json()
        seen = [i["shipment_id"] for i in first["items"] + second["items"]]
        assert sorted(seen) == sorted(ids[k] for k in "abce") and not second["next_page_token"]

        counts = (await st.http.get("/v1/cases/counts", headers=agent)).json()
        assert counts["total"] == 4 and counts["other"] == 0
        assert {k: v for k, v in counts["by_reason"].items() if v} == {
            "carrier_rejected": 2,
            "no_tracking_update": 1,
            "channels_failed": 1,
        }

        # The quoting holds on the real parser: a quote in a value selects exactly that value.
        with Session(st.engine) as s:
            page = await cases.list_cases(st.client, s, cases.CaseFilters(merchant="o'brien"))
        assert [i.shipment_id for i in page.items] == [ids["e"]]

        # The dashboard renders the same queue from the real server.
        sign_in = await st.http.get("/agent/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', sign_in.text).group(1)  # type: ignore[union-attr]
        r = await st.http.post("/agent/sign-in", data={"key": st.agent_key, "csrf": token})
        assert r.status_code == 303
        page_html = (await st.http.get("/agent", params={"reason": "carrier_rejected"})).text
        assert ids["a"] in page_html and ids["c"] in page_html and ids["b"] not in page_html
        assert re.search(r"<b>4</b> need attention", page_html)


async def test_timeline_and_an_action_on_a_real_shipment_workflow(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as st:
        body = {
            "merchant_id": "acme",
            "order_id": "A-1",
            "carrier": "generic",
            "tracking_number": "E2E-TL-1",
            "customer": {"name": "<b>Asha</b>", "phone": "+91 98765 43210", "locale": "en-IN"},
            "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
        }
        r = await st.http.post("/v1/shipments", json=body, headers=st.auth(st.merchant_key))
        assert r.status_code == 201, r.text
        sid = r.json()["shipment_id"]
        for _ in range(100):  # the registration signal is applied by the worker
            tl = await st.http.get(f"/v1/shipments/{sid}/timeline", headers=st.auth(st.agent_key))
            if tl.status_code == 200 and tl.json()["items"]:
                break
            await asyncio.sleep(0.05)
        assert tl.status_code == 200 and tl.json()["items"][0]["kind"] == "registered"
        assert tl.json()["workflow_url"].endswith(f"/namespaces/default/workflows/shipment-{sid}")
        mine = await st.http.get(f"/v1/shipments/{sid}/timeline", headers=st.auth(st.merchant_key))
        assert mine.status_code == 200
        other = st.make_key("merchant", merchant_id="globex")
        assert (await st.http.get(f"/v1/shipments/{sid}/timeline", headers=st.auth(other))).status_code == 404

        # An action is one Update on the real workflow: accepted, audited, in the timeline once.
        r = await st.http.post(
            f"/v1/shipments/{sid}/actions",
            json={"action": "note", "reason": "called the customer"},
            headers={**st.auth(st.agent_key), "Idempotency-Key": "e2e-note-1"},
        )
        assert r.status_code == 200 and r.json()["accepted"], r.text
        # Refused by the workflow's validator (nothing to resolve): 409, audited, shown.
        r2 = await st.http.post(
            f"/v1/shipments/{sid}/actions",
            json={"action": "resolve", "reason": "looks fine"},
            headers={**st.auth(st.agent_key), "Idempotency-Key": "e2e-resolve-1"},
        )
        assert r2.status_code == 409 and "nothing to resolve" in r2.json()["detail"]
        with Session(st.engine) as s:
            recs = {
                a.action_id: (a.status, a.http_status) for a in agent_store.actions_for(s, shipment_id=sid)
            }
        assert recs == {"e2e-note-1": ("accepted", 200), "e2e-resolve-1": ("rejected", 409)}
        items = (await st.http.get(f"/v1/shipments/{sid}/timeline", headers=st.auth(st.agent_key))).json()[
            "items"
        ]
        actions = [(i["source"], i.get("action")) for i in items if i["kind"] == "agent_action"]
        assert actions == [("workflow", "note"), ("audit", "resolve")]
