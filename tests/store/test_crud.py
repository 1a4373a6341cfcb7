"""Store behaviour on SQLite and PostgreSQL: migrations match the models, uniqueness holds."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

import store.all_models  # noqa: F401
from domain.events import CarrierEvent
from store import crud
from store.models import Shipment


def test_migrations_match_models(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def _shipment(sid: str = "shp_1", merchant: str = "acme") -> Shipment:
    return Shipment(shipment_id=sid, workflow_id=f"shipment-{sid}", merchant_id=merchant, carrier="generic", tracking_number="TRK1")


def test_create_shipment_is_unique_per_carrier_and_tracking(engine: Engine) -> None:
    with Session(engine) as s:
        row, created = crud.create_shipment(s, shipment=_shipment())
        assert created
    with Session(engine) as s:
        again, created = crud.create_shipment(s, shipment=_shipment("shp_2", "other"))
        assert not created
        assert again.shipment_id == "shp_1" and again.merchant_id == "acme"


def test_carrier_event_recorded_once_and_pending_until_delivered(engine: Engine) -> None:
    ev = CarrierEvent(carrier="generic", tracking_number="TRK9", milestone="picked_up", occurred_at="2026-11-27T05:00:00.000000Z", event_id="e1")
    with Session(engine) as s:
        _, new = crud.record_carrier_event(s, dedupe_key="generic:id:e1", event=ev, shipment_id=None)
        assert new
        _, new = crud.record_carrier_event(s, dedupe_key="generic:id:e1", event=ev, shipment_id=None)
        assert not new
        pending = crud.undelivered_events(s, carrier="generic", tracking_number="TRK9")
        assert [crud.event_from_row(r) for r in pending] == [ev]
        crud.mark_delivered(s, rows=pending, shipment_id="shp_9")
        assert crud.undelivered_events(s, carrier="generic", tracking_number="TRK9") == []


def test_refusals_are_recorded(engine: Engine) -> None:
    with Session(engine) as s:
        crud.record_refusal(s, method="POST", path="/v1/shipments", status_code=422, reason="customer.phone: not a number", client="127.0.0.1")
        rows = crud.recent_refusals(s)
        assert rows[0].status_code == 422 and "customer.phone" in rows[0].reason
