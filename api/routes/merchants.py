"""Merchants register shipments and read them back (merchant key; agents may read any)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import MerchantAuth, MerchantOrAgentAuth, SessionDep, SettingsDep, TemporalDep
from api.schemas import ShipmentCreate, ShipmentCreated, ShipmentView
from channels.settings import ChannelSettings
from domain import phones
from domain.events import normalise_time
from ndrflow.ndr_settings import get_ndr_settings
from ndrflow.tracking_settings import get_tracking_settings
from store import crud
from store.models import Shipment
from workflows import search
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import RegisterInput, ShipmentProfile, ShipmentState, ShipmentWorkflowInput
from workflows.ndr_policy import NdrPolicy
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy, policy_dict

router = APIRouter(prefix="/v1/shipments", tags=["merchants"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ShipmentCreated,
    responses={200: {"model": ShipmentCreated, "description": "Already registered: the same shipment"}, 409: {}, 422: {}},
)
async def register_shipment(
    body: ShipmentCreate, principal: MerchantAuth, session: SessionDep, temporal: TemporalDep, settings: SettingsDep, response: Response
) -> ShipmentCreated:
    if body.merchant_id != principal.merchant_id:
        raise HTTPException(403, f"this key belongs to merchant {principal.merchant_id!r}, not {body.merchant_id!r}")
    phone = None
    if body.customer.phone is not None:
        # Local formats ("98765 43210") are read in the delivery address's country when the
        # merchant gave one, else in the merchant's default region.
        region = body.address.country if "country" in body.address.model_fields_set else channel_settings().policy_for(body.merchant_id).default_region
        try:
            phone = phones.normalize(body.customer.phone, region)
        except ValueError as exc:
            raise HTTPException(422, f"customer.phone: {exc}") from None
    sid = shipment_id_for(body.merchant_id, body.carrier, body.tracking_number)
    row = Shipment(
        shipment_id=sid,
        workflow_id=shipment_workflow_id(sid),
        merchant_id=body.merchant_id,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
        order_id=body.order_id,
        customer_name=body.customer.name,
        customer_phone=phone,
        customer_email=body.customer.email,
        customer_locale=body.customer.locale.replace("_", "-"),
        customer_timezone=phones.timezone_for(phone, body.address.country),
        whatsapp_opt_in=body.customer.whatsapp_opt_in,
        address=body.address.model_dump(exclude_none=True),
        payment_mode=body.payment.mode,
        payment_amount=body.payment.amount,
        payment_currency=body.payment.currency,
        promised_delivery_date=body.promised_delivery_date.isoformat() if body.promised_delivery_date else None,
    )
    stored, created = crud.create_shipment(session, shipment=row)
    if stored.merchant_id != body.merchant_id:
        raise HTTPException(409, f"carrier {body.carrier!r} tracking number {body.tracking_number!r} is registered by another merchant")
    if not created and stored.shipment_id != sid:
        raise HTTPException(409, "tracking number already registered under another shipment")

    # Events that arrived before this registration travel with it; marked delivered only after
    # the signal succeeded, so a failure here is retried by the merchant's retry.
    pending = crud.undelivered_events(session, carrier=stored.carrier, tracking_number=stored.tracking_number)
    profile, events = profile_for(stored), [crud.event_from_row(r) for r in pending]
    session.commit()  # hand the connection back to the pool before waiting on Temporal
    await start_or_signal(
        temporal,
        settings,
        stored,
        "register",
        RegisterInput(
            profile=profile,
            registered_at=normalise_time(datetime.now(UTC)),
            events=events,
            policy=policy_dict(shipment_policy_for(stored.merchant_id, request_settings=settings)),
        ),
    )
    crud.mark_delivered(session, rows=pending, shipment_id=stored.shipment_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return ShipmentCreated(shipment_id=stored.shipment_id, workflow_id=stored.workflow_id, status=stored.status)


@router.get("/{shipment_id}", response_model=ShipmentView, responses={404: {}})
async def get_shipment(shipment_id: str, principal: MerchantOrAgentAuth, session: SessionDep, temporal: TemporalDep) -> ShipmentView:
    row = crud.get_shipment(session, shipment_id=shipment_id)
    session.commit()  # release the connection while we query the workflow
    # Another merchant's shipment is "not found", so ids cannot be probed.
    if row is None or (principal.scope == "merchant" and row.merchant_id != principal.merchant_id):
        raise HTTPException(404, f"shipment {shipment_id!r} not found")
    handle: WorkflowHandle[Any, Any] = temporal.get_workflow_handle(row.workflow_id)
    try:
        state: ShipmentState = await handle.query(ShipmentWorkflow.state)
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, f"workflow for shipment {shipment_id!r} not found") from None
        raise
    return _view(row, state, desc)


def _view(row: Shipment, state: ShipmentState, desc: Any) -> ShipmentView:
    public = crud.shipment_public(row)
    public["status"] = state.status
    return ShipmentView(
        **public,
        last_event_at=state.last_event_at,
        needs_attention=state.needs_attention,
        attention_reason=state.attention_reason,
        timeline=[dict(at=t.at, kind=t.kind, summary=t.summary, **t.data) for t in state.timeline],
        search_attributes=_search_attributes(desc.typed_search_attributes),
        notifications=state.notifications,
        ndr_cases=state.ndr_cases,
        closed=row.closed,
    )


def _search_attributes(typed: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in search.ALL_KEYS:
        value = typed.get(key)
        if value is not None:
            out[key.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def profile_for(row: Shipment) -> ShipmentProfile:
    phone_is_mobile = bool(row.customer_phone) and phones.is_mobile(row.customer_phone or "")
    return ShipmentProfile(
        shipment_id=row.shipment_id,
        merchant_id=row.merchant_id,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        order_id=row.order_id,
        payment_mode=row.payment_mode,
        order_value=row.payment_amount,
        currency=row.payment_currency,
        locale=row.customer_locale,
        timezone=row.customer_timezone,
        has_phone=bool(row.customer_phone),
        phone_is_mobile=phone_is_mobile,
        has_email=bool(row.customer_email),
        whatsapp_opt_in=row.whatsapp_opt_in,
        promised_delivery_date=row.promised_delivery_date,
    )


async def start_or_signal(temporal: Any, settings: Any, row: Shipment, signal: str, arg: Any) -> None:
    """Signal-with-start: whichever of registration and first carrier event comes first starts it.

    A completed workflow is not restarted (REJECT_DUPLICATE): its shipment reached a terminal
    milestone and its grace period passed; the caller records the late message instead.
    """
    try:
        await temporal.start_workflow(
            ShipmentWorkflow.run,
            ShipmentWorkflowInput(
                shipment_id=row.shipment_id,
                completion_grace_seconds=settings.completion_grace_hours * 3600,
                max_history_events=settings.max_history_events,
                notify_task_queue=channel_settings().notify_task_queue,
                notify_inline=channel_settings().notify_inline,
            ),
            id=row.workflow_id,
            task_queue=settings.temporal_task_queue,
            start_signal=signal,
            start_signal_args=[arg],
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search.initial_attributes(row.merchant_id, row.carrier),
        )
    except WorkflowAlreadyStartedError:
        raise WorkflowClosed(row.shipment_id) from None


class WorkflowClosed(Exception):
    pass


@lru_cache
def channel_settings() -> ChannelSettings:
    return ChannelSettings()


def shipment_policy_for(merchant_id: str, *, request_settings: Any = None) -> ShipmentPolicy:
    """The snapshot a new shipment's workflow decides by (see workflows/shipment_policy.py)."""
    notify = channel_settings().policy_for(merchant_id)
    ndr_settings = get_ndr_settings()
    tracking = get_tracking_settings()
    quiet = notify.quiet_hours or ""
    return ShipmentPolicy(
        notify=notify,
        quiet_hours=quiet,
        ndr=NdrPolicy(quiet_hours=quiet, max_days=ndr_settings.reattempt_max_days),
        ndr_rules=ndr_settings.rules_for(merchant_id),
        stale_after_s=tracking.effective_stale_after_s(),
        poll_after_s=tracking.poll_after_s,
    )
