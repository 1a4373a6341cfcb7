"""Keyword-only store functions that take a session. Uniqueness is enforced by constraints, so
concurrent API processes cannot register a shipment or accept a carrier event twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from domain.events import CarrierEvent
from store.models import CarrierEventLog, RefusedRequest, Shipment, utcnow


def get_shipment(session: Session, *, shipment_id: str) -> Shipment | None:
    return session.get(Shipment, shipment_id)


def find_shipment(session: Session, *, carrier: str, tracking_number: str) -> Shipment | None:
    stmt = select(Shipment).where(Shipment.carrier == carrier, Shipment.tracking_number == tracking_number)
    return session.exec(stmt).first()


def create_shipment(session: Session, *, shipment: Shipment) -> tuple[Shipment, bool]:
    """Insert, or return the row already there for (carrier, tracking number). `created` tells which."""
    existing = find_shipment(session, carrier=shipment.carrier, tracking_number=shipment.tracking_number)
    if existing is not None:
        return existing, False
    session.add(shipment)
    try:
        session.commit()
    except IntegrityError:  # another request registered it between our read and write
        session.rollback()
        existing = find_shipment(session, carrier=shipment.carrier, tracking_number=shipment.tracking_number)
        if existing is None:
            raise
        return existing, False
    return shipment, True


def record_carrier_event(
    session: Session, *, dedupe_key: str, event: CarrierEvent, shipment_id: str | None
) -> tuple[CarrierEventLog, bool]:
    """Log an accepted event once. Returns (row, is_new); a duplicate returns the first row."""
    row = CarrierEventLog(
        dedupe_key=dedupe_key,
        carrier=event.carrier,
        tracking_number=event.tracking_number,
        shipment_id=shipment_id,
        event=asdict(event),
    )
    session.add(row)
    try:
        session.commit()
        return row, True
    except IntegrityError:
        session.rollback()
        existing = session.exec(select(CarrierEventLog).where(CarrierEventLog.dedupe_key == dedupe_key)).one()
        return existing, False


def undelivered_events(session: Session, *, carrier: str, tracking_number: str) -> Sequence[CarrierEventLog]:
    stmt = (
        select(CarrierEventLog)
        .where(
            CarrierEventLog.carrier == carrier,
            CarrierEventLog.tracking_number == tracking_number,
            col(CarrierEventLog.delivered_at).is_(None),
        )
        .order_by(col(CarrierEventLog.id))
    )
    return session.exec(stmt).all()


def mark_delivered(session: Session, *, rows: Sequence[CarrierEventLog], shipment_id: str) -> None:
    now = utcnow()
    for row in rows:
        row.shipment_id = shipment_id
        row.delivered_at = now
        session.add(row)
    session.commit()


def event_from_row(row: CarrierEventLog) -> CarrierEvent:
    return CarrierEvent(**row.event)


def record_refusal(session: Session, *, method: str, path: str, status_code: int, reason: str, client: str) -> None:
    session.add(
        RefusedRequest(method=method, path=path[:300], status_code=status_code, reason=reason[:1000], client=client[:64])
    )
    session.commit()


def recent_refusals(session: Session, *, limit: int = 50) -> Sequence[RefusedRequest]:
    return session.exec(select(RefusedRequest).order_by(col(RefusedRequest.id).desc()).limit(limit)).all()


def parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def shipment_public(row: Shipment) -> dict[str, Any]:
    return {
        "shipment_id": row.shipment_id,
        "workflow_id": row.workflow_id,
        "merchant_id": row.merchant_id,
        "order_id": row.order_id,
        "carrier": row.carrier,
        "tracking_number": row.tracking_number,
        "status": row.status,
    }


def touch_last_event(session: Session, *, shipment_id: str, occurred_at: str) -> None:
    """Keep shipments.last_event_at at the newest carrier time seen (the workflow does not
    write it, to keep its history short)."""
    at = parse_dt(occurred_at)
    row = session.get(Shipment, shipment_id)
    if row is None or at is None:
        return
    if row.last_event_at is None or at > row.last_event_at:
        row.last_event_at = at
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
