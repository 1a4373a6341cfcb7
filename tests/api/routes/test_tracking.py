"""The public tracking page (api/routes/tracking.py): status and milestones in the customer's
language, no personal data, and always a page (404, 429, 503), never a 500."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.routes import tracking
from api.tracking_text import MILESTONES, TEXT
from channels.settings import ChannelSettings
from domain.taxonomy import Milestone
from store.models import CarrierEventLog, Shipment
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import ShipmentState, TimelineEntry

SID = shipment_id_for("acme", "delhivery", "DLV778899")
PII = (
    "Asha Rao",
    "+919876543210",
    "98765",
    "asha@example.com",
    "12 MG Road",
    "560001",
    "Indiranagar 4th Cross",
)


@dataclass
class FakeTemporal:
    states: dict[str, ShipmentState] = field(default_factory=dict)
    fail: Exception | None = None
    queries: int = 0

    def get_workflow_handle(self, workflow_id: str) -> Any:
        fake = self

        class Handle:
            async def query(self, name: str, **kw: Any) -> ShipmentState:
                fake.queries += 1
                assert name == "state" and kw.get("rpc_timeout") is not None
                if fake.fail is not None:
                    raise fake.fail
                return fake.states[workflow_id]

        return Handle()


def scan(at: str, milestone: str, location: str | None = None, raw: str = "") -> TimelineEntry:
    return TimelineEntry(
        at=at,
        kind="carrier_event",
        summary=raw or milestone,
        data={"milestone": milestone, "location": location, "raw_status": raw, "applied": True},
    )


def state(status: str = "out_for_delivery", ndr_cases: list | None = None) -> ShipmentState:
    return ShipmentState(
        shipment_id=SID,
        status=status,
        last_event_at="2026-11-28T03:40:00.000000Z",
        timeline=[
            TimelineEntry(at="2026-11-26T05:00:00.000000Z", kind="registered", summary="registered by acme"),
            scan("2026-11-26T10:00:00.000000Z", "picked_up", "Mumbai Hub"),
            scan("2026-11-27T08:30:00.000000Z", "in_transit", "Bengaluru Sort Centre"),
            scan(
                "2026-11-28T03:40:00.000000Z",
                "out_for_delivery",
                "Indiranagar 4th Cross",
                raw="OFD - Asha Rao",
            ),
            scan("2026-11-28T03:41:00.000000Z", "unknown", "X", raw="Receiver Asha Rao 9876543210"),
            TimelineEntry(
                at="2026-11-28T03:45:00.000000Z", kind="notification", summary="sms to +919876543210"
            ),
        ],
        ndr_cases=ndr_cases or [],
    )


def add_shipment(engine: Engine, **kw: Any) -> None:
    row = Shipment(
        shipment_id=SID,
        workflow_id=shipment_workflow_id(SID),
        merchant_id="acme",
        carrier="delhivery",
        tracking_number="DLV778899",
        order_id="A-1001",
        status=kw.pop("status", "in_transit"),
        customer_name="Asha Rao",
        customer_phone="+919876543210",
        customer_email="asha@example.com",
        customer_locale=kw.pop("customer_locale", "hi-IN"),
        customer_timezone="Asia/Kolkata",
        address={"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
        promised_delivery_date="2026-11-30",
        last_event_at=datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        **kw,
    )
    with Session(engine) as s:
        s.add(row)
        s.commit()


def make_client(engine: Engine, temporal: FakeTemporal | None, **settings: Any) -> TestClient:
    app = FastAPI()
    app.state.engine = engine
    app.state.temporal = temporal
    app.state.settings = SimpleNamespace(home=None, public_base_url="http://t")
    app.state.channel_settings = ChannelSettings(
        notify_policy='{"merchants": {"acme": {"merchant_name": "Acme Fashions"}}}'
    )
    app.state.tracking_settings = tracking.TrackingSettings(**settings)
    app.include_router(tracking.router)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def temporal() -> FakeTemporal:
    return FakeTemporal(states={shipment_workflow_id(SID): state()})


def test_status_and_milestones_in_the_customers_language_without_personal_data(
    engine: Engine, temporal: FakeTemporal
) -> None:
    add_shipment(engine)
    r = make_client(engine, temporal).get(f"/t/{SID}")
    assert r.status_code == 200 and r.headers["content-language"] == "hi"
    html = r.text
    assert '<html lang="hi">' in html
    assert "डिलीवरी के लिए निकला" in html  # headline: out for delivery, from the workflow
    assert (
        html.index("डिलीवरी के लिए निकला") < html.index("रास्ते में") < html.index("पिकअप हो गया")
    )  # newest first
    assert "Mumbai Hub" in html and "Bengaluru Sort Centre" in html  # hub scans keep their place
    assert "Acme Fashions" in html and "Delhivery" in html and "DLV778899" in html
    assert "शनि, 28 नव॰, 9:10 am" in html  # 03:40 UTC, shown in the customer's zone (Asia/Kolkata)
    for secret in PII:
        assert secret not in html, secret  # doorstep location, carrier free text, contacts: never
    assert "/r/" not in html  # never the self-service credential
    assert r.headers["cache-control"].startswith("public") and "noindex" in r.headers["x-robots-tag"]
    assert "Content-Security-Policy" in r.headers


def test_lang_query_switches_language(engine: Engine, temporal: FakeTemporal) -> None:
    add_shipment(engine)
    html = make_client(engine, temporal).get(f"/t/{SID}?lang=ko").text
    assert "배송 출발" in html and '<html lang="ko">' in html
    assert "배송 조회" in html


def test_unknown_or_malformed_ids_get_a_404_page(engine: Engine, temporal: FakeTemporal) -> None:
    client = make_client(engine, temporal)
    for path in (
        f"/t/{shipment_id_for('x', 'y', 'z')}",
        "/t/shp_short",
        "/t/" + SID.upper(),
        "/t/%3Cscript%3E",
        "/t/" + "a" * 300,
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "text/html" in r.headers["content-type"] and "We could not find this parcel" in r.text
    assert temporal.queries == 0


def test_when_the_workflow_cannot_answer_the_store_still_gives_the_status(engine: Engine) -> None:
    add_shipment(engine, status="in_transit", customer_locale="en-IN")
    with Session(engine) as s:
        for i, (at, m, loc) in enumerate(
            [
                ("2026-11-26T10:00:00Z", "picked_up", "Mumbai Hub"),
                ("2026-11-27T08:30:00Z", "in_transit", "Pune"),
            ]
        ):
            s.add(
                CarrierEventLog(
                    dedupe_key=f"k{i}",
                    carrier="delhivery",
                    tracking_number="DLV778899",
                    shipment_id=SID,
                    event={"milestone": m, "occurred_at": at, "location": loc, "raw_status": "Asha Rao"},
                )
            )
        s.commit()
    down = FakeTemporal(fail=RuntimeError("temporal is down"))
    r = make_client(engine, down).get(f"/t/{SID}")
    assert r.status_code == 200
    assert "On the way" in r.text and "Picked up" in r.text and "Pune" in r.text
    assert "last status we know" in r.text
    assert "Expected by Monday, 30 November 2026" in r.text
    assert "Asha Rao" not in r.text


def test_views_are_cached_briefly_and_clients_that_hammer_get_429(
    engine: Engine, temporal: FakeTemporal
) -> None:
    add_shipment(engine)
    client = make_client(engine, temporal, tracking_rate_per_minute=3, tracking_cache_seconds=60)
    assert [client.get(f"/t/{SID}").status_code for _ in range(3)] == [200, 200, 200]
    assert temporal.queries == 1  # the other two came from the cache
    r = client.get(f"/t/{SID}")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "Too many requests" in r.text or "बहुत" in r.text


def test_ndr_notice_without_the_link(engine: Engine) -> None:
    add_shipment(engine, customer_locale="en")
    t = FakeTemporal(
        states={
            shipment_workflow_id(SID): state(
                "delivery_failed",
                ndr_cases=[{"attempt": 1, "state": "asking", "reason": "customer_unavailable"}],
            )
        }
    )
    html = make_client(engine, t).get(f"/t/{SID}").text
    assert "Delivery attempt failed" in html and "We sent you a message with options" in html
    assert "/r/" not in html


def test_anything_unexpected_is_a_503_page_not_a_500(temporal: FakeTemporal) -> None:
    class Broken:
        def connect(self) -> None:
            raise RuntimeError("database exploded")

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("database exploded")

    client = make_client(Broken(), temporal)  # type: ignore[arg-type]
    r = client.get(f"/t/{SID}")
    assert r.status_code == 503 and "Tracking is unavailable just now" in r.text


def test_every_language_has_every_text() -> None:
    for lang in TEXT:
        assert set(TEXT[lang]) == set(TEXT["en"]), lang
        assert set(MILESTONES[lang]) == {m.value for m in Milestone}, lang
