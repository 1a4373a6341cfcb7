"""The /agent dashboard: sign-in with agent keys only, cookie flags, CSRF on every form, the queue
and shipment pages, actions through the same Update as the API, and customer text escaped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from store import agents as agent_store
from store import crud, keys
from tests.api.agent_fakes import AgentsApi, make_agents_api
from workflows.messages import TimelineEntry


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> AgentsApi:
    return make_agents_api(database_url, tmp_path)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def action_id_of(html: str, action: str) -> str:
    m = re.search(
        rf'name="action" value="{action}">\s*<input type="hidden" name="action_id" value="([^"]+)"', html
    )
    assert m, f"no {action} form"
    return m.group(1)


def sign_in(api: AgentsApi, key: str, *, with_csrf: bool = True):
    page = api.client.get("/agent/sign-in")
    assert page.status_code == 200
    form = {"key": key}
    if with_csrf:
        form["csrf"] = csrf_of(page.text)
    return api.client.post("/agent/sign-in", data=form, follow_redirects=False)


def session_cookie_header(response) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith("ndr_agent=")]
    return header


# ---- sign-in / sign-out -----------------------------------------------------------------------


def test_agent_key_signs_in_with_a_strict_httponly_signed_cookie(api: AgentsApi) -> None:
    r = sign_in(api, api.agent_key)
    assert r.status_code == 303 and r.headers["location"] == "/agent"
    cookie = session_cookie_header(r)
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")}
    assert "httponly" in attrs and attrs["samesite"].lower().strip() == "samesite=strict"
    assert attrs["path"].strip() == "Path=/agent" and "max-age" in attrs
    assert "secure" not in attrs  # plain http on loopback; see the https test
    assert api.agent_key not in cookie and api.agent_key[:14] not in cookie
    page = api.client.get("/agent")
    assert page.status_code == 200 and f"priya#{api.agent_key_id}" in page.text


def test_cookie_is_secure_behind_https(database_url: str, tmp_path: Path) -> None:
    api = make_agents_api(database_url, tmp_path, public_base_url="https://ndr.example.com")
    api.client = TestClient(
        api.client.app, base_url="https://ndr.example.com"
    )  # secure cookies only travel over https
    assert "secure" in session_cookie_header(sign_in(api, api.agent_key)).lower()


@pytest.mark.parametrize("which", ["merchant_key", "carrier_key"])
def test_merchant_and_carrier_keys_cannot_sign_in_or_see_the_dashboard(api: AgentsApi, which: str) -> None:
    r = sign_in(api, getattr(api, which))
    assert r.status_code == 403 and "Only agent keys" in r.text
    assert not [h for h in r.headers.get_list("set-cookie") if h.startswith("ndr_agent=")]
    with Session(api.engine) as s:
        refused = crud.recent_refusals(s)[0]
    assert (refused.path, refused.status_code) == (
        "/agent/sign-in",
        403,
    ) and "Only agent keys" in refused.reason
    assert getattr(api, which) not in refused.reason
    row = api.temporal.add(api.engine, merchant="acme", tracking="T1", reason="carrier_rejected")
    for path in ("/agent", f"/agent/shipments/{row.shipment_id}"):
        page = api.client.get(path, headers=api.auth(getattr(api, which)), follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/agent/sign-in"
    assert api.temporal.list_calls == []


def test_wrong_key_is_401_and_sign_in_without_csrf_is_403(api: AgentsApi) -> None:
    r = sign_in(api, "ndr_a_" + "x" * 43)
    assert r.status_code == 401 and "not valid" in r.text
    r = sign_in(api, api.agent_key, with_csrf=False)
    assert r.status_code == 403 and not [
        h for h in r.headers.get_list("set-cookie") if h.startswith("ndr_agent=")
    ]
    # A token from another browser's sign-in form (another nonce) is refused too.
    page = api.client.get("/agent/sign-in")
    token = csrf_of(page.text)
    api.client.cookies.clear()
    assert (
        api.client.post(
            "/agent/sign-in", data={"key": api.agent_key, "csrf": token}, follow_redirects=False
        ).status_code
        == 403
    )


def test_sign_out_needs_csrf_and_ends_the_session(api: AgentsApi) -> None:
    sign_in(api, api.agent_key)
    page = api.client.get("/agent")
    r = api.client.post("/agent/sign-out", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    assert api.client.get("/agent", follow_redirects=False).status_code == 200
    r = api.client.post("/agent/sign-out", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/agent/sign-in"
    assert 'ndr_agent=""' in session_cookie_header(r) or "max-age=0" in session_cookie_header(r).lower()
    assert api.client.get("/agent", follow_redirects=False).status_code == 303


def test_tampered_cookie_and_revoked_key_sign_out(api: AgentsApi) -> None:
    sign_in(api, api.agent_key)
    good = api.client.cookies.get("ndr_agent")
    api.client.cookies.set(
        "ndr_agent", good[:-2] + ("AA" if not good.endswith("AA") else "BB"), path="/agent"
    )
    assert api.client.get("/agent", follow_redirects=False).status_code == 303
    api.client.cookies.clear()
    sign_in(api, api.agent_key)
    with Session(api.engine) as s:
        keys.revoke_key(s, key_id=api.agent_key_id)
    assert api.client.get("/agent", follow_redirects=False).status_code == 303


# ---- queue --------------------------------------------------------------------------------------


def test_queue_shows_counts_filters_and_links(api: AgentsApi) -> None:
    a = api.temporal.add(
        api.engine, merchant="acme", tracking="Q1", carrier="delhivery", reason="carrier_rejected"
    )
    b = api.temporal.add(api.engine, merchant="globex", tracking="Q2", reason="no_tracking_update")
    sign_in(api, api.agent_key)
    page = api.client.get("/agent")
    assert page.status_code == 200
    assert a.shipment_id in page.text and b.shipment_id in page.text
    assert re.search(r"<b>2</b> need attention", page.text)
    assert re.search(r'data-reason="carrier_rejected"><b>1</b> Carrier rejected instruction', page.text)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")

    filtered = api.client.get("/agent", params={"reason": "carrier_rejected", "merchant": "acme"})
    assert a.shipment_id in filtered.text and b.shipment_id not in filtered.text
    assert (
        api.temporal.list_calls[-1][0]
        == "NeedsAttention = true AND AttentionReason = 'carrier_rejected' AND MerchantId = 'acme' AND ExecutionStatus = 'Running'"
    )

    bad = api.client.get("/agent", params={"merchant": "x' OR 'a'='a"})
    assert bad.status_code == 422 and "merchant:" in bad.text and "x&#39; OR" in bad.text


def test_queue_pages_through_with_the_token(api: AgentsApi) -> None:
    for i in range(27):
        api.temporal.add(api.engine, merchant="acme", tracking=f"P{i:02d}", reason="channels_failed")
    sign_in(api, api.agent_key)
    page = api.client.get("/agent")
    m = re.search(r'href="(/agent\?page_token=[^"]+)"', page.text)
    assert m and page.text.count("/agent/shipments/") == 25
    second = api.client.get(m.group(1).replace("&amp;", "&"))
    assert second.text.count("/agent/shipments/") == 2 and "First page" in second.text


def test_find_opens_a_shipment_by_tracking_number(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="FIND1")
    sign_in(api, api.agent_key)
    r = api.client.get("/agent/find", params={"q": "FIND1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/agent/shipments/{row.shipment_id}"
    assert api.client.get("/agent/find", params={"q": "<nope>"}).status_code == 404


# ---- shipment page and actions -------------------------------------------------------------------


def test_customer_supplied_text_is_escaped_on_the_shipment_page(api: AgentsApi) -> None:
    row = api.temporal.add(
        api.engine,
        merchant="acme",
        tracking="X1",
        reason="unparsed_replies",
        customer_name="<script>alert('name')</script>",
    )
    api.temporal.states[row.workflow_id].ndr_cases = [
        {
            "attempt": 1,
            "responses": [
                {
                    "at": "2026-11-26T11:00:00+00:00",
                    "channel": "sms",
                    "kind": "unclear",
                    "text": "<img src=x onerror=alert(1)> {{ 7*7 }} {% raw %}",
                }
            ],
            "instructions": [],
        }
    ]
    api.temporal.states[row.workflow_id].timeline.append(
        TimelineEntry(
            at="2026-11-26T09:00:00+00:00",
            kind="carrier_event",
            summary="</li><script>evil()</script>",
            data={"location": "<b>Pune</b>"},
        )
    )
    sign_in(api, api.agent_key)
    page = api.client.get(f"/agent/shipments/{row.shipment_id}")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt; {{ 7*7 }} {% raw %}" in html
    assert "<script>evil" not in html and "&lt;b&gt;Pune&lt;/b&gt;" in html
    assert "49" not in html.split("{{ 7*7 }}")[0][-20:]  # rendered as text, never evaluated
    assert f'href="http://127.0.0.1:8233/namespaces/default/workflows/shipment-{row.shipment_id}"' in html
    assert "Needs attention: Replies not understood" in html


def test_action_form_applies_the_update_once_and_shows_the_result(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="F1", reason="carrier_did_not_act")
    sign_in(api, api.agent_key)
    page = api.client.get(f"/agent/shipments/{row.shipment_id}")
    form = {
        "csrf": csrf_of(page.text),
        "action": "reattempt",
        "action_id": action_id_of(page.text, "reattempt"),
        "reason": "carrier promised a van today",
    }
    r = api.client.post(f"/agent/shipments/{row.shipment_id}/actions", data=form, follow_redirects=False)
    assert (
        r.status_code == 303
        and r.headers["location"] == f"/agent/shipments/{row.shipment_id}?action={form['action_id']}"
    )
    again = api.client.post(
        f"/agent/shipments/{row.shipment_id}/actions", data=form, follow_redirects=False
    )  # double submit
    assert again.status_code == 303
    [call] = api.temporal.updates
    assert (call.arg.action, call.arg.agent, call.arg.reason, call.id) == (
        "reattempt",
        f"priya#{api.agent_key_id}",
        "carrier promised a van today",
        form["action_id"],
    )
    shown = api.client.get(r.headers["location"])
    assert "Done: reattempt" in shown.text and "does not need attention" in shown.text
    with Session(api.engine) as s:
        [rec] = s.exec(select(agent_store.AgentActionRecord)).all()
    assert (rec.source, rec.status) == ("dashboard", "accepted")


def test_action_without_or_with_a_forged_csrf_token_is_refused(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="F2", reason="carrier_rejected")
    sign_in(api, api.agent_key)
    for token in (None, "0" * 64):
        form = {"action": "rto", "action_id": "cross-site-1", "reason": "attacker"}
        if token:
            form["csrf"] = token
        r = api.client.post(f"/agent/shipments/{row.shipment_id}/actions", data=form, follow_redirects=False)
        assert r.status_code == 403
    assert api.temporal.updates == []
    with Session(api.engine) as s:
        assert agent_store.actions_for(s, shipment_id=row.shipment_id) == []


def test_a_session_token_does_not_work_for_another_session(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="F3", reason="carrier_rejected")
    sign_in(api, api.agent_key)
    stolen = csrf_of(api.client.get(f"/agent/shipments/{row.shipment_id}").text)
    api.client.cookies.clear()
    sign_in(api, api.agent_key)  # a new session, a new nonce
    r = api.client.post(
        f"/agent/shipments/{row.shipment_id}/actions",
        data={"csrf": stolen, "action": "note", "action_id": "n-1", "reason": "x"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and api.temporal.updates == []


def test_refused_action_shows_the_workflows_reason(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="F4")  # nothing to resolve
    sign_in(api, api.agent_key)
    page = api.client.get(f"/agent/shipments/{row.shipment_id}")
    form = {
        "csrf": csrf_of(page.text),
        "action": "resolve",
        "action_id": action_id_of(page.text, "resolve"),
        "reason": "looks fine",
    }
    r = api.client.post(f"/agent/shipments/{row.shipment_id}/actions", data=form)
    assert r.status_code == 200 and "Refused: the workflow refused resolve: nothing to resolve" in r.text


def test_bad_form_input_is_422_with_the_field_named(api: AgentsApi) -> None:
    row = api.temporal.add(api.engine, merchant="acme", tracking="F5", reason="carrier_rejected")
    sign_in(api, api.agent_key)
    page = api.client.get(f"/agent/shipments/{row.shipment_id}")
    form = {
        "csrf": csrf_of(page.text),
        "action": "reschedule",
        "action_id": action_id_of(page.text, "reschedule"),
        "reason": "r",
        "requested_date": "2020-01-01",
    }
    r = api.client.post(f"/agent/shipments/{row.shipment_id}/actions", data=form)
    assert r.status_code == 422 and "requested_date" in r.text and "in the past" in r.text
    assert api.temporal.updates == []


def test_temporal_down_keeps_the_same_action_id_for_the_retry(api: AgentsApi) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    row = api.temporal.add(api.engine, merchant="acme", tracking="F6", reason="carrier_rejected")
    sign_in(api, api.agent_key)
    page = api.client.get(f"/agent/shipments/{row.shipment_id}")
    aid = action_id_of(page.text, "rto")
    api.temporal.update_error = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
    r = api.client.post(
        f"/agent/shipments/{row.shipment_id}/actions",
        data={"csrf": csrf_of(page.text), "action": "rto", "action_id": aid, "reason": "asked"},
    )
    assert r.status_code == 503 and action_id_of(r.text, "rto") == aid


def test_unknown_shipment_page_is_404_and_stylesheet_is_local(api: AgentsApi) -> None:
    sign_in(api, api.agent_key)
    assert api.client.get("/agent/shipments/shp_missing").status_code == 404
    css = api.client.get("/agent/static/agent.css")
    assert (
        css.status_code == 200 and css.headers["content-type"].startswith("text/css") and "@media" in css.text
    )
    html = api.client.get("/agent").text
    assert "http://" not in html.replace("http://127.0.0.1:8233", "") and "<script" not in html
