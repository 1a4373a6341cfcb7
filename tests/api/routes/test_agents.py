"""Agents' API against a fake Temporal: the exact visibility query per filter, quoting, page
tokens, the join with the store, the merged timeline, actions as Updates (audited once per
action id; 404/409/422/503 mapping), and key scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.cases import CaseFilters, FilterError, visibility_literal
from store import agents as agent_store
from store.carriers import record_unknown_code
from tests.api.agent_fakes import AgentsApi, make_agents_api
from workflows.messages import AGENT_ACTION, TimelineEntry

RUNNING = "ExecutionStatus = 'Running'"


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> AgentsApi:
    return make_agents_api(database_url, tmp_path)


def world(api: AgentsApi) -> dict[str, str]:
    """Five shipments: three stuck for different reasons at two merchants/carriers, one fine, one
    stuck but finished (not Running)."""
    t0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    f = api.temporal
    a = f.add(
        api.engine, merchant="acme", tracking="T1", carrier="delhivery", reason="carrier_rejected", started=t0
    )
    b = f.add(
        api.engine,
        merchant="acme",
        tracking="T2",
        reason="no_tracking_update",
        started=t0 + timedelta(minutes=1),
    )
    c = f.add(
        api.engine,
        merchant="globex",
        tracking="T3",
        carrier="delhivery",
        reason="carrier_rejected",
        started=t0 + timedelta(minutes=2),
    )
    d = f.add(api.engine, merchant="acme", tracking="T4", started=t0 + timedelta(minutes=3))
    e = f.add(
        api.engine,
        merchant="acme",
        tracking="T5",
        reason="channels_failed",
        started=t0 + timedelta(minutes=4),
    )
    f.executions[e.workflow_id].running = False
    return {
        "a": a.shipment_id,
        "b": b.shipment_id,
        "c": c.shipment_id,
        "d": d.shipment_id,
        "e": e.shipment_id,
    }


# ---- the queue ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "query", "expect"),
    [
        ({}, f"NeedsAttention = true AND {RUNNING}", ["c", "b", "a"]),
        (
            {"needs_attention": "true", "reason": "carrier_rejected"},
            f"NeedsAttention = true AND AttentionReason = 'carrier_rejected' AND {RUNNING}",
            ["c", "a"],
        ),
        (
            {"carrier": "delhivery"},
            f"NeedsAttention = true AND Carrier = 'delhivery' AND {RUNNING}",
            ["c", "a"],
        ),
        ({"merchant": "acme"}, f"NeedsAttention = true AND MerchantId = 'acme' AND {RUNNING}", ["b", "a"]),
        (
            {"reason": "carrier_rejected", "carrier": "delhivery", "merchant": "globex"},
            f"NeedsAttention = true AND AttentionReason = 'carrier_rejected' AND Carrier = 'delhivery' AND MerchantId = 'globex' AND {RUNNING}",
            ["c"],
        ),
        (
            {"reason": "no_tracking_update", "merchant": "globex"},
            f"NeedsAttention = true AND AttentionReason = 'no_tracking_update' AND MerchantId = 'globex' AND {RUNNING}",
            [],
        ),
        ({"needs_attention": "false"}, f"NeedsAttention = false AND {RUNNING}", ["d"]),
    ],
)
def test_each_filter_combination_sends_the_exact_visibility_query(
    api: AgentsApi, params: dict, query: str, expect: list[str]
) -> None:
    ids = world(api)
    r = api.client.get("/v1/cases", params=params, headers=api.auth(api.agent_key))
    assert r.status_code == 200, r.text
    [(sent, page_size, token)] = api.temporal.list_calls
    assert sent == query and page_size == 50 and token is None
    assert [i["shipment_id"] for i in r.json()["items"]] == [ids[k] for k in expect]


def test_quotes_are_doubled_and_backslashes_refused_in_query_literals() -> None:
    assert visibility_literal("o'brien") == "'o''brien'"
    assert (
        CaseFilters(merchant="x' OR MerchantId = 'y").query()
        == f"NeedsAttention = true AND MerchantId = 'x'' OR MerchantId = ''y' AND {RUNNING}"
    )
    for bad in ("a\\'b", "line\nbreak"):
        with pytest.raises(FilterError):
            visibility_literal(bad)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"merchant": "acme' OR MerchantId = 'globex"}, "merchant"),
        ({"reason": "bogus"}, "reason"),
        ({"reason": "carrier_rejected' OR 'a' = 'a"}, "reason"),
        ({"carrier": "DHL!"}, "carrier"),
        ({"page_token": "not a token!"}, "page_token"),
    ],
)
def test_bad_filters_are_422_naming_the_parameter_and_never_reach_temporal(
    api: AgentsApi, params: dict, names: str
) -> None:
    r = api.client.get("/v1/cases", params=params, headers=api.auth(api.agent_key))
    assert r.status_code == 422
    assert r.json()["detail"].startswith(names)
    assert api.temporal.list_calls == [] and api.temporal.count_calls == []


def test_items_are_joined_with_the_store_and_the_attention_record(api: AgentsApi) -> None:
    ids = world(api)
    raised = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    with Session(api.engine) as s:
        agent_store.raise_attention(
            s,
            shipment_id=ids["a"],
            reason="carrier_rejected",
            raised_at=raised,
            detail="HTTP 400: AWB not in NDR",
        )
        # A stale record for another reason than visibility shows is not its "since".
        agent_store.raise_attention(s, shipment_id=ids["b"], reason="carrier_did_not_act", raised_at=raised)
    r = api.client.get("/v1/cases", params={"merchant": "acme"}, headers=api.auth(api.agent_key))
    by_id = {i["shipment_id"]: i for i in r.json()["items"]}
    a = by_id[ids["a"]]
    assert a["workflow_id"] == f"shipment-{ids['a']}" and a["reason"] == "carrier_rejected"
    assert a["since"] == raised.isoformat() and a["detail"] == "HTTP 400: AWB not in NDR"
    assert (a["tracking_number"], a["order_id"], a["carrier"], a["merchant_id"], a["status"]) == (
        "T1",
        "O-T1",
        "delhivery",
        "acme",
        "in_transit",
    )
    assert by_id[ids["b"]]["reason"] == "no_tracking_update" and by_id[ids["b"]]["since"] is None
    assert r.json()["next_page_token"] is None


def test_page_token_passes_through_to_temporal_and_back(api: AgentsApi) -> None:
    ids = world(api)
    first = api.client.get("/v1/cases", params={"page_size": 2}, headers=api.auth(api.agent_key)).json()
    assert [i["shipment_id"] for i in first["items"]] == [ids["c"], ids["b"]]
    token = first["next_page_token"]
    assert token and "page" not in token  # opaque to clients
    second = api.client.get(
        "/v1/cases", params={"page_size": 2, "page_token": token}, headers=api.auth(api.agent_key)
    ).json()
    assert api.temporal.list_calls[1][1:] == (2, b"page:2")
    assert [i["shipment_id"] for i in second["items"]] == [ids["a"]] and second["next_page_token"] is None
    # A well-formed token Temporal refuses is the client's problem, not a 500.
    r = api.client.get("/v1/cases", params={"page_token": "Z2FyYmFnZQ"}, headers=api.auth(api.agent_key))
    assert r.status_code == 422 and "page_token" in r.json()["detail"]
    assert (
        api.client.get("/v1/cases", params={"page_size": 500}, headers=api.auth(api.agent_key)).status_code
        == 422
    )


def test_counts_per_reason_with_filters(api: AgentsApi) -> None:
    world(api)
    r = api.client.get("/v1/cases/counts", params={"carrier": "delhivery"}, headers=api.auth(api.agent_key))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and body["by_reason"]["carrier_rejected"] == 2 and body["other"] == 0
    assert sum(body["by_reason"].values()) == 2
    assert (
        f"NeedsAttention = true AND AttentionReason = 'carrier_rejected' AND Carrier = 'delhivery' AND {RUNNING}"
        in api.temporal.count_calls
    )
    r = api.client.get("/v1/cases/counts", headers=api.auth(api.agent_key)).json()
    assert r["total"] == 3 and r["by_reason"]["no_tracking_update"] == 1


def test_temporal_down_is_503_not_500(api: AgentsApi) -> None:
    api.temporal.unavailable = True
    r = api.client.get("/v1/cases", headers=api.auth(api.agent_key))
    assert r.status_code == 503 and "unavailable" in r.json()["detail"]


# ---- timeline ------------------------------------------------------------------------------


def test_timeline_merges_every_source_in_time_order_without_repeats(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="TL1", reason="unparsed_replies")
    st = api.temporal.states[row.workflow_id]
    st.timeline += [
        TimelineEntry(
            at="2026-11-26T15:10:00+05:30",
            kind="carrier_event",
            summary="Consignee not available",
            data={"milestone": "delivery_failed", "location": "Bengaluru"},
        ),
        TimelineEntry(
            at="2026-11-26T10:00:00+00:00",
            kind="notification",
            summary="ndr ask by sms",
            data={"key": "k-ask-sms"},
        ),
    ]
    st.notifications = [
        {
            "key": "k-ask-sms",
            "purpose": "ndr_ask",
            "channel": "sms",
            "status": "delivered",
            "sent_at": "2026-11-26T10:00:00+00:00",
        },
        {
            "key": "k-ask-wa",
            "purpose": "ndr_ask",
            "channel": "whatsapp",
            "status": "failed",
            "error_code": "63016",
            "sent_at": "2026-11-26T10:00:05+00:00",
        },
    ]
    st.ndr_cases = [
        {
            "attempt": 1,
            "reason": "customer_unavailable",
            "state": "escalated",
            "responses": [
                {
                    "at": "2026-11-26T11:00:00+00:00",
                    "channel": "sms",
                    "kind": "unclear",
                    "text": "what??",
                    "message_id": "SM1",
                }
            ],
            "instructions": [
                {
                    "seq": 1,
                    "action": "reattempt",
                    "status": "accepted",
                    "source": "merchant_rule",
                    "decided_at": "2026-11-26T12:00:00+00:00",
                    "phone": "+919876543210",
                    "address": None,
                }
            ],
        }
    ]
    with Session(api.engine) as s:
        agent_store.raise_attention(
            s,
            shipment_id=row.shipment_id,
            reason="unparsed_replies",
            raised_at=datetime(2026, 11, 26, 11, 30, tzinfo=UTC),
        )
        agent_store.begin_action(
            s,
            record=agent_store.AgentActionRecord(
                action_id="x1",
                shipment_id=row.shipment_id,
                agent="priya#1",
                action="rto",
                reason="customer asked",
                requested_at=datetime(2026, 11, 26, 13, 0, tzinfo=UTC),
            ),
        )
        agent_store.finish_action(
            s, action_id="x1", status=agent_store.REJECTED, detail="case closed", http_status=409
        )

    r = api.client.get(f"/v1/shipments/{row.shipment_id}/timeline", headers=api.auth(api.agent_key))
    assert r.status_code == 200, r.text
    body = r.json()
    kinds = [(i["kind"], i["at"]) for i in body["items"]]
    assert kinds == [
        ("registered", "2026-11-25T08:00:00+00:00"),
        ("carrier_event", "2026-11-26T15:10:00+05:30"),  # 09:40 UTC
        ("notification", "2026-11-26T10:00:00+00:00"),  # from the workflow's timeline, not repeated
        ("notification", "2026-11-26T10:00:05+00:00"),
        ("reply", "2026-11-26T11:00:00+00:00"),
        ("attention", "2026-11-26T11:30:00+00:00"),
        ("instruction", "2026-11-26T12:00:00+00:00"),
        ("agent_action", "2026-11-26T13:00:00+00:00"),
    ]
    items = body["items"]
    assert items[3]["delivery_status"] == "failed" and "63016" in items[3]["summary"]
    assert items[4]["text"] == "what??"
    assert "phone" not in items[6] and items[6]["changes"] == ["phone"]
    assert items[7]["status"] == "rejected" and "case closed" in items[7]["summary"]
    assert body["needs_attention"] and body["attention_reason"] == "unparsed_replies"
    assert (
        body["workflow_url"]
        == f"http://127.0.0.1:8233/namespaces/default/workflows/shipment-{row.shipment_id}"
    )


def test_merchant_reads_its_own_timeline_only(api: AgentsApi) -> None:
    mine = api.temporal.add(api.engine, merchant="acme", tracking="M1")
    theirs = api.temporal.add(api.engine, merchant="globex", tracking="M2")
    assert (
        api.client.get(
            f"/v1/shipments/{mine.shipment_id}/timeline", headers=api.auth(api.merchant_key)
        ).status_code
        == 200
    )
    r = api.client.get(f"/v1/shipments/{theirs.shipment_id}/timeline", headers=api.auth(api.merchant_key))
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    assert (
        api.client.get(
            f"/v1/shipments/{mine.shipment_id}/timeline", headers=api.auth(api.carrier_key)
        ).status_code
        == 403
    )
    assert (
        api.client.get("/v1/shipments/shp_nope/timeline", headers=api.auth(api.agent_key)).status_code == 404
    )


# ---- actions -------------------------------------------------------------------------------


def test_action_is_one_update_with_agent_and_key_and_is_audited_once(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A1", reason="carrier_did_not_act")
    headers = {**api.auth(api.agent_key), "Idempotency-Key": "act-0001"}
    body = {"action": "reattempt", "reason": "customer confirmed on the phone"}
    r = api.client.post(f"/v1/shipments/{row.shipment_id}/actions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] and not out["duplicate"] and out["action_id"] == "act-0001"
    assert out["agent"] == f"priya#{api.agent_key_id}" and out["needs_attention"] is False
    [call] = api.temporal.updates
    assert (call.workflow_id, call.name, call.id) == (row.workflow_id, AGENT_ACTION, "act-0001")
    inp = call.arg
    assert (inp.action, inp.agent, inp.reason, inp.action_id) == (
        "reattempt",
        f"priya#{api.agent_key_id}",
        "customer confirmed on the phone",
        "act-0001",
    )
    assert (
        inp.requested_date is None
        and inp.address is None
        and datetime.fromisoformat(inp.requested_at).tzinfo is not None
    )

    again = api.client.post(f"/v1/shipments/{row.shipment_id}/actions", json=body, headers=headers)
    assert (
        again.status_code == 200
        and again.json()["duplicate"] is True
        and again.json()["detail"] == out["detail"]
    )
    assert len(api.temporal.updates) == 1  # the recorded answer, without another Update
    with Session(api.engine) as s:
        [rec] = s.exec(select(agent_store.AgentActionRecord)).all()
    assert (rec.status, rec.agent, rec.action, rec.reason, rec.source, rec.http_status) == (
        "accepted",
        f"priya#{api.agent_key_id}",
        "reattempt",
        "customer confirmed on the phone",
        "api",
        200,
    )
    # ... and it shows in the timeline (the workflow's entry, not repeated from the audit).
    tl = api.client.get(f"/v1/shipments/{row.shipment_id}/timeline", headers=api.auth(api.agent_key)).json()[
        "items"
    ]
    assert [i["action_id"] for i in tl if i["kind"] == "agent_action"] == ["act-0001"]


def test_without_idempotency_key_each_request_is_its_own_action(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A2")
    for _ in range(2):
        r = api.client.post(
            f"/v1/shipments/{row.shipment_id}/actions",
            json={"action": "note", "reason": "called, no answer"},
            headers=api.auth(api.agent_key),
        )
        assert r.status_code == 200
    ids = [u.id for u in api.temporal.updates]
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)


def test_same_key_for_another_request_is_409(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A3", reason="carrier_rejected")
    headers = {**api.auth(api.agent_key), "Idempotency-Key": "k-same"}
    assert (
        api.client.post(
            f"/v1/shipments/{row.shipment_id}/actions",
            json={"action": "note", "reason": "a"},
            headers=headers,
        ).status_code
        == 200
    )
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions", json={"action": "rto", "reason": "a"}, headers=headers
    )
    assert r.status_code == 409 and "k-same" in r.json()["detail"]
    assert len(api.temporal.updates) == 1


def test_validator_refusals_map_to_409_and_422_and_are_audited(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A4")  # needs nothing
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "resolve", "reason": "done"},
        headers={**api.auth(api.agent_key), "Idempotency-Key": "r-1"},
    )
    assert r.status_code == 409 and "nothing to resolve" in r.json()["detail"]
    api.temporal.update_error = WorkflowUpdateFailedError(
        ApplicationError(
            "requested_date 2026-12-20 is outside the carrier's window (6 days)", type="InvalidAgentAction"
        )
    )
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={
            "action": "reschedule",
            "reason": "customer travelling",
            "requested_date": (datetime.now(UTC) + timedelta(days=20)).date().isoformat(),
        },
        headers={**api.auth(api.agent_key), "Idempotency-Key": "r-2"},
    )
    assert r.status_code == 422 and "carrier's window" in r.json()["detail"]
    with Session(api.engine) as s:
        recs = {a.action_id: a for a in agent_store.actions_for(s, shipment_id=row.shipment_id)}
    assert (recs["r-1"].status, recs["r-1"].http_status) == ("rejected", 409)
    assert (recs["r-2"].status, recs["r-2"].http_status) == ("rejected", 422)
    # A retry of a refused action gets the same refusal without reaching Temporal again.
    calls = len(api.temporal.updates)
    again = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "resolve", "reason": "done"},
        headers={**api.auth(api.agent_key), "Idempotency-Key": "r-1"},
    )
    assert again.status_code == 409 and len(api.temporal.updates) == calls


def test_unknown_shipment_404_and_finished_workflow_409(api: AgentsApi) -> None:
    r = api.client.post(
        "/v1/shipments/shp_unknown/actions",
        json={"action": "note", "reason": "x"},
        headers=api.auth(api.agent_key),
    )
    assert r.status_code == 404
    row = api.temporal.add(api.engine, merchant="acme", tracking="A5")
    api.temporal.update_error = RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "note", "reason": "x"},
        headers=api.auth(api.agent_key),
    )
    assert r.status_code == 409 and "finished" in r.json()["detail"]
    del api.temporal.states[row.workflow_id]
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "note", "reason": "x"},
        headers=api.auth(api.agent_key),
    )
    assert r.status_code == 404 and "workflow" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "reschedule", "reason": "r"}, "requested_date"),
        ({"action": "reschedule", "reason": "r", "requested_date": "2020-01-01"}, "requested_date"),
        ({"action": "reschedule", "reason": "r", "requested_date": "31-12-2026"}, "requested_date"),
        ({"action": "reattempt", "reason": " "}, "reason"),
        ({"action": "note"}, "reason"),
        ({"action": "reattempt", "reason": "r", "requested_date": "2026-12-01"}, "requested_date"),
        ({"action": "update_address", "reason": "r"}, "address"),
        ({"action": "update_address", "reason": "r", "phone": "12345"}, "phone"),
        ({"action": "update_address", "reason": "r", "address": {"street": "x"}}, "address"),
        ({"action": "snooze", "reason": "r"}, "until"),
        ({"action": "snooze", "reason": "r", "until": "2020-01-01T00:00:00Z"}, "until"),
        ({"action": "teleport", "reason": "r"}, "action"),
        ({"action": "note", "reason": "r", "agent": "someone-else"}, "agent"),
    ],
)
def test_bad_action_input_is_422_naming_the_field_and_sends_nothing(
    api: AgentsApi, body: dict, field: str
) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A6")
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions", json=body, headers=api.auth(api.agent_key)
    )
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]
    assert api.temporal.updates == []
    with Session(api.engine) as s:
        assert agent_store.actions_for(s, shipment_id=row.shipment_id) == []


def test_update_address_normalises_phone_and_snooze_takes_local_time(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A7", reason="carrier_rejected")
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={
            "action": "update_address",
            "reason": "customer called",
            "phone": "98765 43211",
            "address": {"landmark": "opp. temple"},
        },
        headers=api.auth(api.agent_key),
    )
    assert r.status_code == 200, r.text
    inp = api.temporal.updates[-1].arg
    assert inp.phone == "+919876543211" and inp.address == {"landmark": "opp. temple"}
    until_local = (datetime.now(UTC) + timedelta(days=1)).astimezone().replace(tzinfo=None, microsecond=0)
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "snooze", "reason": "waiting for carrier", "until": until_local.isoformat()},
        headers=api.auth(api.agent_key),
    )
    assert r.status_code == 200, r.text
    # A time without offset is the shipment's local time (Asia/Kolkata, +05:30).
    assert (
        api.temporal.updates[-1].arg.until
        == (until_local - timedelta(hours=5, minutes=30)).replace(tzinfo=UTC).isoformat()
    )


def test_temporal_down_leaves_the_action_retryable_and_it_applies_once(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A8", reason="carrier_rejected")
    headers = {**api.auth(api.agent_key), "Idempotency-Key": "retry-me"}
    body = {"action": "rto", "reason": "merchant asked"}
    api.temporal.update_error = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
    r = api.client.post(f"/v1/shipments/{row.shipment_id}/actions", json=body, headers=headers)
    assert r.status_code == 503
    with Session(api.engine) as s:
        assert agent_store.get_action(s, action_id="retry-me").status == "requested"
    r = api.client.post(f"/v1/shipments/{row.shipment_id}/actions", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["accepted"]
    assert [u.id for u in api.temporal.updates] == ["retry-me", "retry-me"]
    assert sum(1 for e in api.temporal.states[row.workflow_id].timeline if e.kind == "agent_action") == 1
    with Session(api.engine) as s:
        assert [a.status for a in agent_store.actions_for(s, shipment_id=row.shipment_id)] == ["accepted"]


def test_bad_idempotency_key_is_422(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="A9")
    r = api.client.post(
        f"/v1/shipments/{row.shipment_id}/actions",
        json={"action": "note", "reason": "x"},
        headers={**api.auth(api.agent_key), "Idempotency-Key": "has space"},
    )
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]


# ---- scopes --------------------------------------------------------------------------------


def test_key_scopes(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="S1", reason="carrier_rejected")
    reg = {
        "merchant_id": "acme",
        "order_id": "A-1",
        "carrier": "generic",
        "tracking_number": "NEW1",
        "customer": {"name": "A", "email": "a@example.com"},
        "address": {"line1": "x", "city": "y", "postal_code": "560001"},
    }
    r = api.client.post("/v1/shipments", json=reg, headers=api.auth(api.agent_key))
    assert r.status_code == 403 and "agent key cannot call" in r.json()["detail"]
    assert api.temporal.starts == []
    for method, path in [
        ("get", "/v1/cases"),
        ("get", "/v1/cases/counts"),
        ("get", "/v1/carriers/unknown-codes"),
        ("post", f"/v1/shipments/{row.shipment_id}/actions"),
    ]:
        kw = {"json": {"action": "note", "reason": "x"}} if method == "post" else {}
        for key in (api.merchant_key, api.carrier_key):
            assert getattr(api.client, method)(path, headers=api.auth(key), **kw).status_code == 403, (
                path,
                key[:6],
            )
        assert getattr(api.client, method)(path, **kw).status_code == 401
    assert api.temporal.updates == [] and api.temporal.list_calls == []


def test_unknown_carrier_codes_for_agents(api: AgentsApi) -> None:
    with Session(api.engine) as s:
        for code in ("X9", "X9", "X9", "ZZ"):
            record_unknown_code(s, "delhivery", code)
        record_unknown_code(s, "clickpost", "77")
    r = api.client.get("/v1/carriers/unknown-codes", headers=api.auth(api.agent_key))
    assert r.status_code == 200
    assert [(i["carrier"], i["code"], i["count"]) for i in r.json()["items"]] == [
        ("delhivery", "X9", 3),
        ("clickpost", "77", 1),
        ("delhivery", "ZZ", 1),
    ]
    r = api.client.get(
        "/v1/carriers/unknown-codes", params={"carrier": "clickpost"}, headers=api.auth(api.agent_key)
    )
    assert [i["code"] for i in r.json()["items"]] == ["77"]
