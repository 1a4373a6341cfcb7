"""Support agents' API (agent key): the queue of shipments that need a person, one shipment's
whole timeline (its merchant may read it too), actions applied through the workflow, and the
carrier codes nobody has mapped yet. The dashboard (`/agent`) renders the same data."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import BaseModel
from temporalio.service import RPCError, RPCStatusCode

from api import cases
from api.agent_actions import (
    ActionError,
    AgentActionRequest,
    AgentActionResponse,
    check_action_id,
    perform_action,
)
from api.deps import AgentAuth, MerchantOrAgentAuth, Principal, SessionDep, SettingsDep, TemporalDep
from api.timeline import build_timeline
from store import agents as agent_store
from store import crud
from store.carriers import unknown_code_counts
from store.models import Shipment
from workflows.messages import ShipmentState
from workflows.shipment import ShipmentWorkflow

router = APIRouter(tags=["agents"])


class CaseItemOut(BaseModel):
    shipment_id: str
    workflow_id: str
    reason: str | None
    since: str | None
    detail: str = ""
    merchant_id: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    order_id: str | None = None
    status: str | None = None
    ndr_state: str | None = None
    ndr_attempts: int | None = None
    last_event_at: str | None = None
    started_at: str | None = None


class CasesOut(BaseModel):
    items: list[CaseItemOut]
    next_page_token: str | None = None


class CaseCountsOut(BaseModel):
    total: int
    by_reason: dict[str, int]
    other: int


class TimelineOut(BaseModel):
    shipment_id: str
    workflow_id: str
    status: str
    needs_attention: bool
    attention_reason: str | None = None
    attention_since: str | None = None
    workflow_url: str | None = None
    items: list[dict[str, Any]]


class UnknownCodeOut(BaseModel):
    carrier: str
    code: str
    count: int
    first_seen: str
    last_seen: str


class UnknownCodesOut(BaseModel):
    items: list[UnknownCodeOut]


def _filters(**kw: Any) -> cases.CaseFilters:
    try:
        return cases.CaseFilters.parse(**kw)
    except cases.FilterError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/v1/cases", response_model=CasesOut, responses={401: {}, 403: {}, 422: {}})
async def list_cases(
    principal: AgentAuth,
    session: SessionDep,
    temporal: TemporalDep,
    needs_attention: bool = True,
    reason: Annotated[str | None, Query(max_length=48)] = None,
    carrier: Annotated[str | None, Query(max_length=32)] = None,
    merchant: Annotated[str | None, Query(max_length=64)] = None,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
    page_size: Annotated[int, Query(ge=1, le=cases.MAX_PAGE_SIZE)] = cases.DEFAULT_PAGE_SIZE,
) -> CasesOut:
    """Running shipment workflows that need a person, newest first, joined with the store."""
    filters = _filters(needs_attention=needs_attention, reason=reason, carrier=carrier, merchant=merchant)
    try:
        page = await cases.list_cases(temporal, session, filters, page_size=page_size, page_token=page_token)
    except cases.FilterError as exc:
        raise HTTPException(422, str(exc)) from None
    return CasesOut(
        items=[CaseItemOut(**asdict(i)) for i in page.items], next_page_token=page.next_page_token
    )


@router.get("/v1/cases/counts", response_model=CaseCountsOut, responses={401: {}, 403: {}, 422: {}})
async def case_counts(
    principal: AgentAuth,
    temporal: TemporalDep,
    carrier: Annotated[str | None, Query(max_length=32)] = None,
    merchant: Annotated[str | None, Query(max_length=64)] = None,
) -> CaseCountsOut:
    """How many running workflows need a person, per attention reason (for the dashboard)."""
    counts = await cases.count_cases(temporal, _filters(carrier=carrier, merchant=merchant))
    return CaseCountsOut(total=counts.total, by_reason=counts.by_reason, other=counts.other)


@router.get("/v1/shipments/{shipment_id}/timeline", response_model=TimelineOut, responses={404: {}})
async def shipment_timeline(
    shipment_id: str,
    principal: MerchantOrAgentAuth,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> TimelineOut:
    """Carrier events, messages with delivery status, replies, decisions, instructions, agent
    actions and attention, in one list ordered by time."""
    row = load_shipment(session, principal, shipment_id)
    state = await query_state(temporal, row)
    return timeline_for(session, row, state, workflow_url=workflow_url(settings, row.workflow_id))


@router.post(
    "/v1/shipments/{shipment_id}/actions",
    response_model=AgentActionResponse,
    responses={404: {}, 409: {}, 422: {}, 503: {}, 504: {}},
)
async def shipment_action(
    shipment_id: str,
    body: AgentActionRequest,
    principal: AgentAuth,
    session: SessionDep,
    temporal: TemporalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)] = None,
) -> AgentActionResponse:
    """Apply an agent's action through the workflow (Update `agent_action`); audited once per
    Idempotency-Key (a retried request gets the first answer)."""
    row = load_shipment(session, principal, shipment_id)
    try:
        action_id = check_action_id(idempotency_key)
        outcome = await perform_action(
            session, temporal, row=row, principal=principal, body=body, action_id=action_id, source="api"
        )
    except ActionError as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    return outcome.body


@router.get("/v1/carriers/unknown-codes", response_model=UnknownCodesOut, responses={401: {}, 403: {}})
async def unknown_codes(
    principal: AgentAuth, session: SessionDep, carrier: Annotated[str | None, Query(max_length=32)] = None
) -> UnknownCodesOut:
    """Carrier status codes we could not map, most frequent first (someone should extend the tables)."""
    rows = unknown_code_counts(session, carrier=carrier or None)
    return UnknownCodesOut(
        items=[
            UnknownCodeOut(
                carrier=r.carrier,
                code=r.code,
                count=r.count,
                first_seen=r.first_seen.isoformat(),
                last_seen=r.last_seen.isoformat(),
            )
            for r in rows
        ]
    )


# ---- shared with the dashboard ------------------------------------------------------------


def load_shipment(session: Any, principal: Principal, shipment_id: str) -> Shipment:
    row = crud.get_shipment(session, shipment_id=shipment_id) if len(shipment_id) <= 40 else None
    # Another merchant's shipment is "not found", so ids cannot be probed.
    if row is None or (principal.scope == "merchant" and row.merchant_id != principal.merchant_id):
        raise HTTPException(404, f"shipment {shipment_id!r} not found")
    return row


async def query_state(temporal: Any, row: Shipment) -> ShipmentState:
    try:
        return await temporal.get_workflow_handle(row.workflow_id).query(ShipmentWorkflow.state)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, f"workflow for shipment {row.shipment_id!r} not found") from None
        raise


def timeline_for(
    session: Any, row: Shipment, state: ShipmentState, *, workflow_url: str | None
) -> TimelineOut:
    items = build_timeline(
        state,
        actions=agent_store.actions_for(session, shipment_id=row.shipment_id),
        attention=agent_store.attention_history(session, shipment_id=row.shipment_id),
    )
    return TimelineOut(
        shipment_id=row.shipment_id,
        workflow_id=row.workflow_id,
        status=state.status,
        needs_attention=state.needs_attention,
        attention_reason=state.attention_reason,
        attention_since=state.attention_since,
        workflow_url=workflow_url,
        items=items,
    )


def workflow_url(settings: Any, workflow_id: str) -> str | None:
    from urllib.parse import quote

    base = (settings.temporal_ui_url or "").rstrip("/")
    if not base:
        return None
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
