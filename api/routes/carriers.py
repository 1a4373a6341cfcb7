"""Carriers push tracking events (carrier key bound to that carrier, or the carrier's own
webhook signature). Events are logged once, then delivered to the shipment's workflow, or kept
until the merchant registers the tracking number."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import OptionalPrincipal, SessionDep, SettingsDep, TemporalDep
from api.routes.merchants import WorkflowClosed, start_or_signal
from api.schemas import EventsAccepted
from carriers import registry
from carriers.base import COUNTED_PROBLEMS, Problem, WebhookAuthError, WebhookFormatError, WebhookRequest
from domain.events import CarrierEvent, normalise_time
from domain.status import event_dedupe_key
from store import crud
from store.carriers import record_unknown_code
from store.models import CarrierEventLog
from workflows.messages import CarrierEventsInput

router = APIRouter(prefix="/v1/carriers", tags=["carriers"])


@router.post(
    "/{carrier}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EventsAccepted,
    responses={401: {}, 403: {}, 404: {}, 413: {}, 422: {}},
    summary="Tracking events in the carrier's own format",
    description=(
        "Authenticated by a carrier API key bound to this carrier (`Authorization: Bearer`), or by the "
        "carrier's own webhook scheme: generic `X-Ndrflow-Signature: sha256=<hex HMAC of the raw body>`, "
        "EasyPost `X-Hmac-Signature`, AfterShip `aftership-hmac-sha256`, ClickPost `webhook_key`, "
        "Delhivery/Shiprocket shared-secret header. See carriers/README.md."
    ),
)
async def carrier_events(
    carrier: str, request: Request, principal: OptionalPrincipal, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> EventsAccepted:
    raw = await request.body()
    try:
        registry.get_adapter(carrier)
    except KeyError:
        raise HTTPException(404, f"unknown carrier {carrier!r}; known: {', '.join(sorted(registry.ADAPTERS))}") from None
    req = WebhookRequest(body=raw, headers={k.lower(): v for k, v in request.headers.items()}, query=dict(request.query_params))
    if principal is not None:
        if principal.scope != "carrier" or principal.carrier != carrier:
            raise HTTPException(403, f"this key cannot post events for carrier {carrier!r}")
    else:
        try:
            registry.verify_webhook(carrier, req, request.app.state.carrier_settings)
        except WebhookAuthError as exc:
            raise HTTPException(401, f"{carrier} webhook not authenticated: {exc}") from None
    try:
        events, problems = registry.parse_webhook(carrier, req)
    except WebhookFormatError as exc:
        raise HTTPException(422, f"invalid {carrier} payload: {exc}") from None
    return await accept_events(session, temporal, settings, carrier, events, problems)


async def accept_events(session, temporal, settings, carrier: str, events: list[CarrierEvent], problems: Sequence[Problem] = ()) -> EventsAccepted:  # type: ignore[no-untyped-def]
    """Log each event once, count the push's unknown codes, signal the events to their workflows."""
    # The store work runs on a thread: a commit may wait for SQLite's write lock (the worker
    # writes too), and on the event loop that wait would stall every request and, under
    # `ndrflow up`, the worker sharing the loop (the benchmark's p99 showed it). The session is
    # used by one thread at a time.
    counts, signals = await asyncio.to_thread(_log_events, session, carrier, events, problems)
    for shipment, items in signals:
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
        await asyncio.to_thread(_mark_signalled, session, shipment, items)
    duplicates, pending, unknown = counts
    return EventsAccepted(accepted=len(events) - duplicates, duplicates=duplicates, pending_registration=pending, unknown_codes=unknown)


def _log_events(session, carrier: str, events: list[CarrierEvent], problems: Sequence[Problem]):  # type: ignore[no-untyped-def]
    """Log each event once and count unknown codes; returns the counts and, per known shipment,
    the events still to signal. Commits, so no connection is held while Temporal is called."""
    duplicates = pending = unknown = new_events = 0
    by_tracking: dict[str, list[tuple[CarrierEventLog, CarrierEvent]]] = defaultdict(list)
    for ev in events:
        if ev.milestone == "unknown":
            unknown += 1
        key = event_dedupe_key(ev.carrier, ev.event_id, ev.raw_code, ev.occurred_at, ev.milestone)
        row, new = crud.record_carrier_event(session, dedupe_key=key, event=ev, shipment_id=None)
        new_events += new
        if not new and row.delivered_at is not None:
            duplicates += 1
            continue
        by_tracking[ev.tracking_number].append((row, ev))

    # Unknown codes are counted per sighting, not per delivery: a carrier re-sending the same push
    # (Delhivery retries once, others more, we may have failed to signal) logs nothing new and is
    # not counted again. Counted before signalling, so a signal failure does not lose the count.
    if new_events:
        for problem in problems:
            if problem.code in COUNTED_PROBLEMS and problem.raw_code:
                record_unknown_code(session, carrier, problem.raw_code)

    signals = []
    for tracking, items in by_tracking.items():
        shipment = crud.find_shipment(session, carrier=carrier, tracking_number=tracking)
        if shipment is None:
            # Kept until registration; registration delivers undelivered rows. Nothing else to do:
            # a registration racing with us reads these rows after our commit, or we saw its row.
            pending += len(items)
            continue
        signals.append((shipment, items))
    # Hand the connection back to the pool before waiting on Temporal.
    session.commit()
    return (duplicates, pending, unknown), signals


def _mark_signalled(session, shipment, items) -> None:  # type: ignore[no-untyped-def]
    crud.mark_delivered(session, rows=[r for r, _ in items], shipment_id=shipment.shipment_id)
    crud.touch_last_event(session, shipment_id=shipment.shipment_id, occurred_at=max(e.occurred_at for _, e in items))
