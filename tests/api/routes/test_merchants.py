"""Registration and reads: exact workflow id and payload handed to Temporal, idempotent
re-registration, clear 4xx for bad input (recorded), merchant isolation."""

from __future__ import annotations

import copy

from sqlmodel import Session

from store import crud
from tests.api.conftest import Api
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import RegisterInput, ShipmentState

BODY = {
    "merchant_id": "acme",
    "order_id": "A-1001",
    "carrier": "generic",
    "tracking_number": "TRK1001",
    "payment": {"mode": "cod", "amount": "1299.00", "currency": "INR"},
    "customer": {"name": "Asha Rao", "phone": "+91 98765 43210", "email": "asha@example.com", "locale": "en-IN", "whatsapp_opt_in": True},
    "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
    "promised_delivery_date": "2026-11-30",
}


def test_register_starts_one_workflow_with_profile_and_no_personal_data(api: Api) -> None:
    r = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    assert r.status_code == 201, r.text
    sid = shipment_id_for("acme", "generic", "TRK1001")
    assert r.json() == {"shipment_id": sid, "workflow_id": shipment_workflow_id(sid), "status": "created"}
    [call] = api.temporal.starts
    assert call.workflow_id == shipment_workflow_id(sid) and call.signal == "register"
    reg: RegisterInput = call.arg
    assert reg.profile.merchant_id == "acme" and reg.profile.payment_mode == "cod" and reg.profile.order_value == "1299.00"
    assert reg.profile.timezone == "Asia/Kolkata" and reg.profile.has_phone and reg.profile.phone_is_mobile
    # Contact details stay in the store, never in workflow inputs or ids.
    assert "98765" not in repr(reg) and "asha@" not in repr(reg) and "MG Road" not in repr(reg)
    with Session(api.engine) as s:
        row = crud.get_shipment(s, shipment_id=sid)
        assert row is not None and row.customer_phone == "+919876543210"


def test_same_registration_again_returns_200_and_same_shipment(api: Api) -> None:
    first = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    again = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["shipment_id"] == first.json()["shipment_id"]


def test_bad_phone_is_422_naming_customer_phone_and_recorded(api: Api) -> None:
    body = copy.deepcopy(BODY)
    body["customer"]["phone"] = "12345"
    r = api.client.post("/v1/shipments", json=body, headers=api.auth(api.merchant_key))
    assert r.status_code == 422
    assert "customer.phone" in r.json()["detail"]
    assert api.temporal.starts == []
    with Session(api.engine) as s:
        assert "customer.phone" in crud.recent_refusals(s)[0].reason


def test_bad_inputs_are_4xx_with_reasons(api: Api) -> None:
    h = {**api.auth(api.merchant_key), "Content-Type": "application/json"}
    malformed = api.client.post("/v1/shipments", content=b"{not json", headers=h)
    assert malformed.status_code == 422 and "JSON" in malformed.json()["detail"]
    missing = api.client.post("/v1/shipments", json={"merchant_id": "acme"}, headers=h)
    assert missing.status_code == 422 and "order_id" in missing.json()["detail"]
    huge = api.client.post("/v1/shipments", content=b"x" * (1024 * 1024 + 1), headers=h)
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]
    nokey = api.client.post("/v1/shipments", json=BODY)
    assert nokey.status_code == 401
    wrong_scope = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.carrier_key))
    assert wrong_scope.status_code == 403 and "carrier key" in wrong_scope.json()["detail"]
    other = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.other_merchant_key))
    assert other.status_code == 403 and "globex" in other.json()["detail"]
    assert api.temporal.starts == []


def test_another_merchant_cannot_read_a_shipment(api: Api) -> None:
    sid = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key)).json()["shipment_id"]
    api.temporal.states[shipment_workflow_id(sid)] = ShipmentState(shipment_id=sid, status="in_transit")
    own = api.client.get(f"/v1/shipments/{sid}", headers=api.auth(api.merchant_key))
    assert own.status_code == 200 and own.json()["status"] == "in_transit"
    assert own.json()["notifications"] == [] and own.json()["ndr_cases"] == []
    assert api.client.get(f"/v1/shipments/{sid}", headers=api.auth(api.other_merchant_key)).status_code == 404
    assert api.client.get(f"/v1/shipments/{sid}", headers=api.auth(api.agent_key)).status_code == 200
    assert api.client.get(f"/v1/shipments/{sid}", headers=api.auth(api.carrier_key)).status_code == 403
