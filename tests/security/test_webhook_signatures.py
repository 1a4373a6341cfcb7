"""Carrier webhooks: only what the carrier signed (or sent its shared secret with) is accepted,
an unconfigured carrier is refused whatever is sent, and a replayed request applies once.

Schemes (carriers/README.md): generic, EasyPost and AfterShip sign the raw body with HMAC-SHA256;
Delhivery, Shiprocket and ClickPost send a static shared secret in a header (that authenticates
the sender, not the body: a captured request can be altered, which is why those carriers should
only be reachable over TLS and why every event is deduplicated).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from carriers.fake.payloads import Scan, build, encode, sign_headers, webhook
from carriers.settings import CarrierSettings
from ndrflow.config import Settings
from tests.api.conftest import Api, FakeTemporal
from tests.api.routes.test_merchants import BODY

CARRIERS = ["generic", "delhivery", "shiprocket", "clickpost", "easypost", "aftership"]
BODY_SIGNED = ["generic", "easypost", "aftership"]
SHARED_SECRET = ["delhivery", "shiprocket", "clickpost"]


def register(api: Api, carrier: str) -> None:
    r = api.client.post(
        "/v1/shipments", json={**BODY, "carrier": carrier}, headers=api.auth(api.merchant_key)
    )
    assert r.status_code == 201, r.text


def signals(api: Api) -> list:
    return [c for c in api.temporal.starts if c.signal == "carrier_events"]


def scan(event_id: str = "ev-1", milestone: str = "out_for_delivery") -> Scan:
    return Scan(tracking_number="TRK1001", milestone=milestone, event_id=event_id)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_good_bad_and_missing_credentials(api: Api, carrier: str) -> None:
    register(api, carrier)
    body, good = webhook(carrier, scan(), f"{carrier}-secret")
    _, bad = webhook(carrier, scan(), f"{carrier}-secret-but-wrong")
    url = f"/v1/carriers/{carrier}/events"
    assert api.client.post(url, content=body, headers=bad).status_code == 401
    assert api.client.post(url, content=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert signals(api) == []
    r = api.client.post(url, content=body, headers=good)
    assert r.status_code == 202, r.text
    assert len(signals(api)) == 1


@pytest.mark.parametrize("carrier", BODY_SIGNED)
def test_a_signature_does_not_cover_another_body(api: Api, carrier: str) -> None:
    register(api, carrier)
    body, headers = webhook(carrier, scan(milestone="out_for_delivery"), f"{carrier}-secret")
    forged = encode(build(carrier, scan(milestone="delivered")))
    assert forged != body
    r = api.client.post(f"/v1/carriers/{carrier}/events", content=forged, headers=headers)
    assert r.status_code == 401 and "does not match" in r.json()["detail"]
    assert signals(api) == []


@pytest.mark.parametrize("carrier", BODY_SIGNED)
def test_another_carriers_valid_signature_is_refused(api: Api, carrier: str) -> None:
    register(api, carrier)
    other = "generic" if carrier != "generic" else "easypost"
    body = encode(build(carrier, scan()))
    headers = sign_headers(other, body, f"{other}-secret")  # right scheme, other carrier's key
    assert api.client.post(f"/v1/carriers/{carrier}/events", content=body, headers=headers).status_code == 401


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_carrier_without_a_configured_secret_is_refused_whatever_is_sent(
    tmp_path, database_url: str, carrier: str
) -> None:
    # An empty secret must not mean "HMAC with an empty key" or "anything goes".
    app = create_app(
        Settings(_env_file=None, home=tmp_path / "h", database_url=database_url, secret_key="s"),
        temporal=FakeTemporal(),  # type: ignore[arg-type]
        carrier_settings=CarrierSettings(_env_file=None),
    )
    client = TestClient(app)
    body, headers = webhook(carrier, scan(), "")
    r = client.post(f"/v1/carriers/{carrier}/events", content=body, headers=headers)
    assert r.status_code == 401 and "no webhook secret is configured" in r.json()["detail"]


@pytest.mark.parametrize("carrier", CARRIERS)
def test_replaying_a_captured_signed_request_applies_once(api: Api, carrier: str) -> None:
    # Carriers do not sign a timestamp, so an old request stays validly signed forever; what
    # makes a replay harmless is the event's dedupe key (its id, or code and time).
    register(api, carrier)
    body, headers = webhook(carrier, scan("ev-replayed"), f"{carrier}-secret")
    url = f"/v1/carriers/{carrier}/events"
    first = api.client.post(url, content=body, headers=headers)
    assert first.status_code == 202 and first.json()["duplicates"] == 0
    accepted = first.json()["accepted"]
    for _ in range(3):
        again = api.client.post(url, content=body, headers=headers)
        assert again.status_code == 202
        assert again.json()["accepted"] == 0 and again.json()["duplicates"] == accepted
    assert len(signals(api)) == 1


def test_replay_before_registration_still_applies_once(api: Api) -> None:
    # Replayed while the tracking number is unregistered: kept once, delivered once at registration.
    body, headers = webhook("generic", scan("early"), "generic-secret")
    for _ in range(3):
        assert (
            api.client.post("/v1/carriers/generic/events", content=body, headers=headers).status_code == 202
        )
    register(api, "generic")
    [start] = [c for c in api.temporal.starts if c.signal == "register"]
    assert [e.event_id for e in start.arg.events] == ["early"]
