"""API keys: each scope reaches only its own endpoints, a merchant sees only its own shipments,
and bad, revoked or misplaced credentials are refused the same way."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from carriers.fake.payloads import Scan, webhook
from store import keys
from tests.api.conftest import Api
from tests.api.routes.test_merchants import BODY
from workflows.messages import ShipmentState

EVENTS = {
    "events": [
        {
            "tracking_number": "TRK1001",
            "event_id": "e1",
            "status": "picked_up",
            "occurred_at": "2026-11-27T10:00:00+05:30",
        }
    ]
}
CODEC = {"payloads": []}


@pytest.fixture
def registered(api: Api) -> str:
    r = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    assert r.status_code == 201
    api.temporal.states[r.json()["workflow_id"]] = ShipmentState(shipment_id=r.json()["shipment_id"])
    return r.json()["shipment_id"]


def call(api: Api, what: str, key: str | None, shipment_id: str = "") -> int:
    headers = api.auth(key) if key else {}
    if what == "register":
        return api.client.post(
            "/v1/shipments", json={**BODY, "tracking_number": "TRK2002"}, headers=headers
        ).status_code
    if what == "read":
        return api.client.get(f"/v1/shipments/{shipment_id}", headers=headers).status_code
    if what == "events":
        return api.client.post("/v1/carriers/generic/events", json=EVENTS, headers=headers).status_code
    if what == "codec":
        return api.client.post("/codec/decode", json=CODEC, headers=headers).status_code
    if what == "timeline":
        return api.client.get(f"/v1/shipments/{shipment_id}/timeline", headers=headers).status_code
    if what == "action":
        body = {"action": "note", "reason": "called the customer"}
        return api.client.post(f"/v1/shipments/{shipment_id}/actions", json=body, headers=headers).status_code
    if what == "cases":
        return api.client.get("/v1/cases?needs_attention=true", headers=headers).status_code
    raise AssertionError(what)


# (endpoint, key role) -> status. "other" is a merchant key of another merchant.
MATRIX = {
    ("register", None): 401,
    ("register", "merchant"): 201,
    ("register", "other"): 403,
    ("register", "carrier"): 403,
    ("register", "agent"): 403,
    ("read", None): 401,
    ("read", "merchant"): 200,
    ("read", "other"): 404,
    ("read", "carrier"): 403,
    ("read", "agent"): 200,
    ("events", None): 401,
    ("events", "merchant"): 403,
    ("events", "other"): 403,
    ("events", "carrier"): 202,
    ("events", "agent"): 403,
    ("codec", None): 401,
    ("codec", "merchant"): 403,
    ("codec", "other"): 403,
    ("codec", "carrier"): 403,
    ("codec", "agent"): 200,
    ("timeline", None): 401,
    ("timeline", "merchant"): 200,
    ("timeline", "other"): 404,
    ("timeline", "carrier"): 403,
    ("timeline", "agent"): 200,
    # Agent-only endpoints: the agent paths themselves are exercised in tests/api/routes/test_agents.py.
    ("action", None): 401,
    ("action", "merchant"): 403,
    ("action", "other"): 403,
    ("action", "carrier"): 403,
    ("cases", None): 401,
    ("cases", "merchant"): 403,
    ("cases", "other"): 403,
    ("cases", "carrier"): 403,
}


ENDPOINTS = sorted({w for w, _ in MATRIX})


@pytest.mark.parametrize("what", ENDPOINTS)
def test_scope_matrix(api: Api, registered: str, what: str) -> None:
    keys_by_role = {
        None: None,
        "merchant": api.merchant_key,
        "other": api.other_merchant_key,
        "carrier": api.carrier_key,
        "agent": api.agent_key,
    }
    got = {role: call(api, what, keys_by_role[role], registered) for (w, role) in MATRIX if w == what}
    assert got == {role: code for (w, role), code in MATRIX.items() if w == what}


def test_another_merchants_shipment_is_indistinguishable_from_a_missing_one(
    api: Api, registered: str
) -> None:
    theirs = api.client.get(f"/v1/shipments/{registered}", headers=api.auth(api.other_merchant_key))
    missing = api.client.get(
        "/v1/shipments/shp_doesnotexist0000000000", headers=api.auth(api.other_merchant_key)
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(registered, "ID") == missing.json()["detail"].replace(
        "shp_doesnotexist0000000000", "ID"
    )
    assert "acme" not in theirs.text and "TRK1001" not in theirs.text


def test_merchant_cannot_register_or_rebind_for_another_merchant(api: Api, registered: str) -> None:
    r = api.client.post(
        "/v1/shipments", json={**BODY, "merchant_id": "acme"}, headers=api.auth(api.other_merchant_key)
    )
    assert r.status_code == 403 and "globex" in r.json()["detail"]
    # Registering the same (carrier, tracking number) under its own name does not take it over.
    r = api.client.post(
        "/v1/shipments", json={**BODY, "merchant_id": "globex"}, headers=api.auth(api.other_merchant_key)
    )
    assert r.status_code == 409
    assert [c.arg.profile.merchant_id for c in api.temporal.starts if c.signal == "register"] == ["acme"]


def test_carrier_key_is_bound_to_its_carrier(api: Api) -> None:
    with Session(api.engine) as s:
        delhivery_key = keys.create_key(s, scope="carrier", carrier="delhivery")
    body, _ = webhook("generic", Scan(tracking_number="TRK1001", milestone="picked_up"), "x")
    r = api.client.post(
        "/v1/carriers/generic/events",
        content=body,
        headers={**api.auth(delhivery_key), "Content-Type": "application/json"},
    )
    assert r.status_code == 403 and "generic" in r.json()["detail"]


def test_revoked_keys_stop_working_at_once(api: Api, registered: str) -> None:
    with Session(api.engine) as s:
        keys.revoke_key(s, prefix=keys.key_prefix(api.agent_key))
        keys.revoke_key(s, prefix=keys.key_prefix(api.merchant_key))
    assert call(api, "read", api.agent_key, registered) == 401
    assert call(api, "register", api.merchant_key) == 401
    assert call(api, "codec", api.agent_key) == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",  # no key
        "Bearer ndr_m_" + "A" * 43,  # well-formed, never issued
        "Bearer ndr_a_" + "A" * 43,
        "Basic YWNtZTphY21l",  # another scheme
        "Bearer ' OR 1=1 --",
        "Bearer " + "x" * 5000,
    ],
    ids=["empty", "unissued-merchant", "unissued-agent", "basic", "sql", "huge"],
)
def test_malformed_or_forged_credentials_are_401(api: Api, registered: str, header: str) -> None:
    r = api.client.get(f"/v1/shipments/{registered}", headers={"Authorization": header})
    assert r.status_code == 401


def test_keys_are_only_read_from_the_authorization_header(api: Api, registered: str) -> None:
    for params in ({"api_key": api.agent_key}, {"key": api.agent_key}, {"access_token": api.agent_key}):
        assert api.client.get(f"/v1/shipments/{registered}", params=params).status_code == 401
    api.client.cookies.set("api_key", api.agent_key)
    assert api.client.get(f"/v1/shipments/{registered}").status_code == 401


def test_a_key_of_one_scope_relabelled_as_another_is_refused(api: Api, registered: str) -> None:
    # The scope letter is part of the key: swapping it yields a key that does not exist.
    forged = api.merchant_key.replace("ndr_m_", "ndr_a_", 1)
    assert call(api, "read", forged, "shp_other") == 401
    assert call(api, "codec", forged) == 401
