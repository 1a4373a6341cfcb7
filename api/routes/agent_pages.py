"""The support agents' dashboard at /agent: sign in with an agent key, the queue with counts per
reason and filters, one shipment's timeline with the action forms, a link to the workflow in the
Temporal UI.

Server-rendered (api/pages/agent/*.html through the shared autoescaping Environment), no
JavaScript, one local stylesheet; readable on a laptop and a phone. Every form posts with a CSRF
token bound to the session (api/agent_session.py) and a fresh action id, so a double submit
applies once. Actions go through api/agent_actions.py: the same validation, audit and Update
as `POST /v1/shipments/{id}/actions`. Failures are pages with a 4xx (503 when Temporal cannot be
reached), never a 500. Merchant and carrier keys cannot sign in.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, col, or_, select
from temporalio.service import RPCError, RPCStatusCode

from api import cases, errors
from api.agent_actions import FIELDS_FOR, ActionError, AgentActionRequest, check_action_id, perform_action
from api.agent_session import (
    SESSION_COOKIE,
    AgentSession,
    DashboardNotConfigured,
    csrf_ok,
    csrf_token,
    current_session,
    end_session,
    pre_session_nonce,
    set_pre_session,
    start_session,
)
from api.deps import Principal, SessionDep, SettingsDep, TemporalDep
from api.pages import PAGES, render
from api.routes.agents import timeline_for, workflow_url
from store import agents as agent_store
from store import crud
from store import keys as key_store
from store.models import Shipment, as_utc
from workflows.messages import AGENT_ACTIONS, ATTENTION_REASONS, ShipmentState
from workflows.shipment import ShipmentWorkflow

log = logging.getLogger("ndrflow.agents")
router = APIRouter(prefix="/agent", include_in_schema=False)

STYLESHEET = PAGES / "agent" / "agent.css"
QUEUE_PAGE_SIZE = 25
ADDRESS_FIELDS = ("line1", "line2", "landmark", "city", "state", "postal_code", "country")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
ACTION_LABELS = {
    "reattempt": "Reattempt delivery",
    "reschedule": "Reschedule",
    "update_address": "Update address or phone",
    "rto": "Return to origin",
    "resend_notification": "Resend notification",
    "note": "Add a note",
    "snooze": "Snooze",
    "resolve": "Resolve",
}


# ---- helpers --------------------------------------------------------------------------------


def _when(value: Any) -> str:
    t = _parse(value)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if t else (str(value) if value else "—")


def _ago(value: Any) -> str:
    t = _parse(value)
    if t is None:
        return ""
    secs = int((datetime.now(UTC) - t).total_seconds())
    if secs < 0:
        return "in the future"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if secs >= size:
            return f"{secs // size} {unit} ago"
    return "just now"


_parse = as_utc


def _page(
    name: str,
    *,
    request: Request,
    status: int = 200,
    agent: AgentSession | None,
    csrf: str = "",
    title: str = "",
    **context: Any,
) -> HTMLResponse:
    html = render(
        f"agent/{name}",
        agent=agent,
        csrf=csrf,
        title=title,
        when=_when,
        ago=_ago,
        reason_label=cases.reason_label,
        **context,
    )
    if 400 <= status < 500:
        # Like the API's refusals: recorded with the reason, never with the form's contents.
        errors.record(request, status, str(context.get("error") or context.get("message") or name))
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _error(
    request: Request, status: int, message: str, *, agent: AgentSession | None, csrf: str = ""
) -> HTMLResponse:
    return _page(
        "error.html", request=request, status=status, agent=agent, csrf=csrf, title="Problem", message=message
    )


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/agent/sign-in", status_code=303)


def _signed_in(request: Request, session: Session, secret_key: str) -> AgentSession | None:
    try:
        return current_session(request, session, secret_key=secret_key)
    except DashboardNotConfigured:
        return None


async def _form(request: Request) -> dict[str, str]:
    try:
        form = await request.form()
    except Exception:  # malformed body: treated as an empty form (refused by the CSRF check)
        return {}
    return {k: v.strip() for k, v in form.items() if isinstance(v, str)}


# ---- sign-in ----------------------------------------------------------------------------------


@router.get("/static/agent.css")
async def stylesheet() -> FileResponse:
    return FileResponse(
        STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/sign-in")
async def sign_in_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if not settings.secret_key:
        return _error(
            request,
            503,
            "The dashboard needs NDRFLOW_SECRET_KEY; `ndrflow up` generates one per home.",
            agent=None,
        )
    if _signed_in(request, session, settings.secret_key):
        return RedirectResponse("/agent", status_code=303)
    return _sign_in_form(request, settings, status=200, error=None)


def _sign_in_form(request: Request, settings: Any, *, status: int, error: str | None) -> HTMLResponse:
    nonce = pre_session_nonce(request)
    response = _page(
        "sign_in.html",
        request=request,
        status=status,
        agent=None,
        title="Sign in",
        error=error,
        signin_csrf=csrf_token(settings.secret_key, nonce, "signin"),
    )
    set_pre_session(response, request, nonce, public_base_url=settings.public_base_url)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    if not settings.secret_key:
        return _error(
            request,
            503,
            "The dashboard needs NDRFLOW_SECRET_KEY; `ndrflow up` generates one per home.",
            agent=None,
        )
    form = await _form(request)
    nonce = request.cookies.get("ndr_agent_signin")
    if not csrf_ok(settings.secret_key, nonce, form.get("csrf"), "signin"):
        return _sign_in_form(
            request,
            settings,
            status=403,
            error="The form expired or did not come from this page. Please try again.",
        )
    key = key_store.authenticate(session, form.get("key", ""))
    if key is None:
        return _sign_in_form(request, settings, status=401, error="That key is not valid, or it was revoked.")
    if key.scope != "agent" or key.id is None:
        log.info("dashboard sign-in refused for a %s key (id %s)", key.scope, key.id)
        return _sign_in_form(
            request,
            settings,
            status=403,
            error=f"Only agent keys can sign in here; this is a {key.scope} key.",
        )
    response = RedirectResponse("/agent", status_code=303)
    start_session(
        response,
        request,
        key_id=key.id,
        secret_key=settings.secret_key,
        public_base_url=settings.public_base_url,
    )
    log.info("dashboard sign-in: agent key %s", key.id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    agent = _signed_in(request, session, settings.secret_key)
    if agent is None:
        response: Response = _to_sign_in()
        end_session(response)
        return response
    form = await _form(request)
    if not csrf_ok(settings.secret_key, agent.nonce, form.get("csrf")):
        return _error(
            request,
            403,
            "The form expired or did not come from this page. Please try again.",
            agent=agent,
            csrf=csrf_token(settings.secret_key, agent.nonce),
        )
    response = _to_sign_in()
    end_session(response)
    return response


# ---- the queue --------------------------------------------------------------------------------


@router.get("")
async def queue(
    request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    agent = _signed_in(request, session, settings.secret_key)
    if agent is None:
        return _to_sign_in()
    csrf = csrf_token(settings.secret_key, agent.nonce)
    q = request.query_params
    raw = {k: (q.get(k) or "").strip()[:100] for k in ("reason", "carrier", "merchant")}
    page_token = (q.get("page_token") or "")[:4096] or None
    error = None
    status = 200
    page = cases.CasesPage()
    counts = cases.CaseCounts(total=0, by_reason=dict.fromkeys(ATTENTION_REASONS, 0), other=0)
    try:
        filters = cases.CaseFilters.parse(**{k: v or None for k, v in raw.items()})
        page, counts = await asyncio.gather(
            cases.list_cases(temporal, session, filters, page_size=QUEUE_PAGE_SIZE, page_token=page_token),
            cases.count_cases(temporal, filters),
        )
    except cases.FilterError as exc:
        error, status = str(exc), 422
    except RPCError as exc:
        log.warning("dashboard queue: temporal unavailable (%s)", exc)
        error, status = "Temporal cannot be reached right now; the queue will be back when it is.", 503

    def link(**changes: str | None) -> str:
        params = {**raw, **changes}
        return "/agent?" + urlencode({k: v for k, v in params.items() if v})

    return _page(
        "queue.html",
        request=request,
        status=status,
        agent=agent,
        csrf=csrf,
        title="Queue",
        error=error,
        filters=raw,
        items=page.items,
        counts=counts,
        reasons=ATTENTION_REASONS,
        next_link=link(page_token=page.next_page_token) if page.next_page_token else None,
        first_link=link() if page_token else None,
        reason_link=lambda r: link(reason=r),
        clear_link="/agent",
    )


@router.get("/find")
async def find(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Open a shipment by its id, tracking number or order id."""
    agent = _signed_in(request, session, settings.secret_key)
    if agent is None:
        return _to_sign_in()
    term = (request.query_params.get("q") or "").strip()[:64]
    matches: list[Shipment] = []
    if term:
        stmt = select(Shipment).where(
            or_(
                col(Shipment.shipment_id) == term,
                col(Shipment.tracking_number) == term,
                col(Shipment.order_id) == term,
            )
        )
        matches = list(session.exec(stmt.limit(20)).all())
    if len(matches) == 1:
        return RedirectResponse(f"/agent/shipments/{matches[0].shipment_id}", status_code=303)
    return _page(
        "find.html",
        request=request,
        status=200 if matches else 404,
        agent=agent,
        csrf=csrf_token(settings.secret_key, agent.nonce),
        title="Find",
        term=term,
        matches=matches,
    )


# ---- one shipment -----------------------------------------------------------------------------


@router.get("/shipments/{shipment_id}")
async def shipment_page(
    shipment_id: str, request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    agent = _signed_in(request, session, settings.secret_key)
    if agent is None:
        return _to_sign_in()
    row = crud.get_shipment(session, shipment_id=shipment_id) if len(shipment_id) <= 40 else None
    if row is None:
        return _error(
            request,
            404,
            f"There is no shipment {shipment_id}.",
            agent=agent,
            csrf=csrf_token(settings.secret_key, agent.nonce),
        )
    shown = request.query_params.get("action")
    return await _shipment(request, session, settings, temporal, agent, row, shown_action=shown)


async def _shipment(
    request: Request,
    session: Session,
    settings: Any,
    temporal: Any,
    agent: AgentSession,
    row: Shipment,
    *,
    status: int = 200,
    error: str | None = None,
    shown_action: str | None = None,
    retry: dict[str, str] | None = None,
) -> HTMLResponse:
    notice = None
    state: ShipmentState | None = None
    try:
        state = await temporal.get_workflow_handle(row.workflow_id).query(ShipmentWorkflow.state)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            notice = "The workflow for this shipment was not found (finished and past retention?). Showing what the store holds."
        else:
            notice = "Temporal cannot be reached right now: showing what the store holds; actions will fail until it is back."
            status = status if status != 200 else 503
    timeline = timeline_for(
        session,
        row,
        state or ShipmentState(shipment_id=row.shipment_id, status=row.status),
        workflow_url=None,
    )
    result = None
    if shown_action:
        rec = agent_store.get_action(session, action_id=shown_action[:100])
        if rec is not None and rec.shipment_id == row.shipment_id:
            result = rec
    purposes = sorted({n.get("purpose") for n in (state.notifications if state else []) if n.get("purpose")})
    open_attention = agent_store.open_attention(session, shipment_id=row.shipment_id)
    retry = retry or {}
    forms = [
        {
            "action": a,
            "label": ACTION_LABELS[a],
            "fields": sorted(FIELDS_FOR[a]),
            # A fresh id per rendered form makes a double submit one action; after a timeout the
            # same id comes back so a retry cannot apply it twice.
            "action_id": retry["action_id"] if retry.get("action") == a else str(uuid.uuid4()),
            "open": retry.get("action") == a,
        }
        for a in AGENT_ACTIONS
    ]
    return _page(
        "shipment.html",
        request=request,
        status=status,
        agent=agent,
        csrf=csrf_token(settings.secret_key, agent.nonce),
        title=f"Shipment {row.shipment_id}",
        error=error,
        notice=notice,
        row=row,
        state=state,
        timeline=timeline,
        attention=open_attention[0] if open_attention else None,
        result=result,
        forms=forms,
        purposes=purposes,
        temporal_url=workflow_url(settings, row.workflow_id),
        address_line=", ".join(str(row.address[k]) for k in ADDRESS_FIELDS if (row.address or {}).get(k)),
        today=datetime.now(UTC).date().isoformat(),
    )


@router.post("/shipments/{shipment_id}/actions")
async def shipment_action(
    shipment_id: str, request: Request, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> Response:
    agent = _signed_in(request, session, settings.secret_key)
    if agent is None:
        return _to_sign_in()
    form = await _form(request)
    csrf = csrf_token(settings.secret_key, agent.nonce)
    if not csrf_ok(settings.secret_key, agent.nonce, form.get("csrf")):
        log.info("dashboard action refused: CSRF token missing or wrong (agent key %s)", agent.key_id)
        return _error(
            request,
            403,
            "The form expired or did not come from this page. Open the shipment again and retry.",
            agent=agent,
            csrf=csrf,
        )
    row = crud.get_shipment(session, shipment_id=shipment_id) if len(shipment_id) <= 40 else None
    if row is None:
        return _error(request, 404, f"There is no shipment {shipment_id}.", agent=agent, csrf=csrf)

    action = form.get("action", "")
    data: dict[str, Any] = {"action": action, "reason": form.get("reason", "")}
    for name in ("requested_date", "phone", "until", "purpose"):
        if form.get(name):
            data[name] = form[name]
    address = {k: form[k] for k in ADDRESS_FIELDS if form.get(k)}
    if address:
        data["address"] = address
    try:
        body = AgentActionRequest.model_validate(data)
        action_id = check_action_id(form.get("action_id"))
    except ValidationError as exc:
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        return await _shipment(request, session, settings, temporal, agent, row, status=422, error=message)
    except ActionError as exc:
        return await _shipment(
            request, session, settings, temporal, agent, row, status=exc.status_code, error=exc.detail
        )

    principal = Principal(scope="agent", key_id=agent.key_id)
    try:
        await perform_action(
            session,
            temporal,
            row=row,
            principal=principal,
            body=body,
            action_id=action_id,
            source="dashboard",
        )
    except ActionError as exc:
        if exc.status_code in (409, 404) or (
            exc.status_code == 422 and agent_store.get_action(session, action_id=action_id)
        ):
            # Refused and audited: show the audited answer (post/redirect/get).
            return RedirectResponse(
                f"/agent/shipments/{row.shipment_id}?{urlencode({'action': action_id})}", status_code=303
            )
        retry = {"action": action, "action_id": action_id} if exc.status_code == 504 else None
        return await _shipment(
            request,
            session,
            settings,
            temporal,
            agent,
            row,
            status=exc.status_code,
            error=exc.detail,
            retry=retry,
        )
    except RPCError as exc:
        log.warning("dashboard action %s: temporal unavailable (%s)", action_id, exc)
        return await _shipment(
            request,
            session,
            settings,
            temporal,
            agent,
            row,
            status=503,
            error="Temporal cannot be reached; the action was not applied. Submit the form again to retry it (it applies once).",
            retry={"action": action, "action_id": action_id},
        )
    return RedirectResponse(
        f"/agent/shipments/{row.shipment_id}?{urlencode({'action': action_id})}", status_code=303
    )


__all__ = ["router", "SESSION_COOKIE"]
