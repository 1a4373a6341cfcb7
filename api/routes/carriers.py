"""Carriers push tracking events (carrier key bound to that carrier, or the carrier's own
webhook signature). Events are logged once, then delivered to the shipment's workflow, or kept
until the merchant registers the tracking number."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import ValidationError

from api.deps import OptionalPrincipal, SessionDep, SettingsDep, TemporalDep
from api.routes.merchants import WorkflowClosed, start_or_signal
from api.schemas import CarrierEventsIn, EventsAccepted
from domain.events import CarrierEvent, normalise_time
from domain.status import event_dedupe_key
from domain.taxonomy import parse_milestone, parse_ndr_reason
from store import crud
from store.models import CarrierEventLog
from workflows.messages import CarrierEventsInput

router = APIRouter(prefix="/v1/carriers", tags=["carriers"])


def parse_generic(raw: bytes) -> list[CarrierEvent]:
    try:
        body = CarrierEventsIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        raise HTTPException(422, f"invalid generic carrier payload: {problems}") from None
    events = []
    for e in body.events:
        milestone = parse_milestone(e.status)
        events.append(
            CarrierEvent(
                carrier="generic",
                tracking_number=e.tracking_number,
                milestone=milestone.value,
                occurred_at=normalise_time(e.occurred_at.replace("Z", "+00:00")),
                event_id=e.event_id,
                ndr_reason=(parse_ndr_reason(e.ndr_reason) or parse_ndr_reason("unknown")).value if milestone.value == "delivery_failed" else None,
                raw_code=e.raw_code or (e.status if milestone.value == "unknown" else None),
                raw_status=e.raw_status,
                location=e.location,
                attempt=e.attempt,
            )
        )
    return events


@router.post(
    "/{carrier}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses={401: {}, 403: {}, 404: {}, 413: {}, 422: {}},
)
async def carrier_events(
    carrier: str, request: Request, principal: OptionalPrincipal, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> EventsAccepted:
    raw = await request.body()
    if carrier != "generic":
        raise HTTPException(404, f"unknown carrier {carrier!r}")
    if principal is None:
        raise HTTPException(401, "missing carrier API key: send `Authorization: Bearer <key>`")
    if principal.scope != "carrier" or principal.carrier != carrier:
        raise HTTPException(403, f"this key cannot post events for carrier {carrier!r}")
    events = parse_generic(raw)
    return await accept_events(session, temporal, settings, carrier, events)


async def accept_events(session, temporal, settings, carrier: str, events: list[CarrierEvent]) -> EventsAccepted:  # type: ignore[no-untyped-def]
    duplicates = pending = unknown = 0
    by_tracking: dict[str, list[tuple[CarrierEventLog, CarrierEvent]]] = defaultdict(list)
    for ev in events:
        if ev.milestone == "unknown":
            unknown += 1
        key = event_dedupe_key(ev.carrier, ev.event_id, ev.raw_code, ev.occurred_at, ev.milestone)
        row, new = crud.record_carrier_event(session, dedupe_key=key, event=ev, shipment_id=None)
        if not new and row.delivered_at is not None:
            duplicates += 1
            continue
        by_tracking[ev.tracking_number].append((row, ev))

    for tracking, items in by_tracking.items():
        shipment = crud.find_shipment(session, carrier=carrier, tracking_number=tracking)
        if shipment is None:
            # Kept until registration; registration delivers undelivered rows. Nothing else to do:
            # a registration racing with us reads these rows after our commit, or we saw its row.
            pending += len(items)
            continue
        rows = [r for r, _ in items]
        try:
            await start_or_signal(
                temporal,
                settings,
                shipment,
                "carrier_events",
                CarrierEventsInput(events=[e for _, e in items], received_at=normalise_time(datetime.now(UTC))),
            )
        except WorkflowClosed:
            pass  # the shipment's workflow finished long ago: the event stays in the log only
        crud.mark_delivered(session, rows=rows, shipment_id=shipment.shipment_id)
    return EventsAccepted(accepted=len(events) - duplicates, duplicates=duplicates, pending_registration=pending, unknown_codes=unknown)
