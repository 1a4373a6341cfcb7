"""An agent's action on a shipment: validated here, audited in the store, applied by the
workflow's Update `agent_action` (whose validator has the last word). Used by the API
(`POST /v1/shipments/{id}/actions`) and the dashboard's forms alike.

Exactly once per action id (the `Idempotency-Key` header, or a fresh uuid4; the dashboard puts
one in every form it renders):
- the audit row is unique on action_id, so a retried request is audited once;
- the action id is also the Temporal update id, so the server applies a retried update once;
- a retry after an answer was recorded gets the recorded answer without reaching Temporal;
- the same key with a different request is refused (409).

Answers: 200 accepted · 404 unknown shipment (another merchant's is unknown too) · 409 the
workflow refused it (state) or the key was reused · 422 bad input (here or the validator's
InvalidAgentAction) · 503/504 Temporal unreachable or slow: nothing recorded as answered, so
the same key can be retried.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from domain import phones
from store import agents as agent_store
from store.models import ApiKey, Shipment
from workflows.messages import (
    AGENT_ACTION,
    AGENT_ACTIONS,
    INVALID_AGENT_ACTION,
    AgentActionInput,
    AgentActionResult,
)

log = logging.getLogger("ndrflow.agents")

ActionName = Literal[
    "reattempt", "reschedule", "update_address", "rto", "resend_notification", "note", "snooze", "resolve"
]
ACTION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
MAX_SNOOZE = timedelta(days=30)
MAX_RESCHEDULE_DAYS = 30  # a sanity bound; the carrier's own window is the workflow's to check

# Which optional fields each action takes (reason is always required: the audit says why).
FIELDS_FOR = {
    "reattempt": set(),
    "reschedule": {"requested_date"},
    "update_address": {"address", "phone"},
    "rto": set(),
    "resend_notification": {"purpose"},
    "note": set(),
    "snooze": {"until"},
    "resolve": set(),
}
assert set(FIELDS_FOR) == set(AGENT_ACTIONS)


class AddressChange(BaseModel):
    """The parts of the address that change (at least one)."""

    model_config = ConfigDict(extra="forbid")
    line1: str | None = Field(None, min_length=1, max_length=300)
    line2: str | None = Field(None, max_length=300)
    landmark: str | None = Field(None, max_length=200)
    city: str | None = Field(None, min_length=1, max_length=100)
    state: str | None = Field(None, max_length=100)
    postal_code: str | None = Field(None, min_length=3, max_length=12)
    country: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")


class AgentActionRequest(BaseModel):
    """`AgentActionInput` without what the API fills in (agent, action_id, requested_at)."""

    model_config = ConfigDict(extra="forbid")
    action: ActionName
    reason: str = Field("", max_length=2000, description="Why (for a note: the note). Required.")
    requested_date: date | None = Field(None, description="reschedule: the new delivery date, YYYY-MM-DD")
    address: AddressChange | None = Field(None, description="update_address: the parts that change")
    phone: str | None = Field(None, max_length=32, description="update_address: the new phone (any format)")
    until: datetime | None = Field(
        None, description="snooze: until when (ISO-8601; no offset = the shipment's local time)"
    )
    purpose: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_]{1,47}$", description="resend_notification: which message"
    )


class AgentActionResponse(BaseModel):
    action_id: str
    shipment_id: str
    workflow_id: str
    action: str
    agent: str
    accepted: bool
    detail: str
    needs_attention: bool = False
    attention_reason: str | None = None
    duplicate: bool = False


class ActionError(Exception):
    def __init__(self, status_code: int, detail: str, *, action_id: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.action_id = action_id


@dataclass
class ActionOutcome:
    status_code: int
    body: AgentActionResponse


def agent_name(session: Session, principal: Principal) -> str:
    """Who, as the audit and the workflow's timeline show it: the key's name and id."""
    key = session.get(ApiKey, principal.key_id) if principal.key_id is not None else None
    name = (key.name if key is not None else "") or "agent"
    return f"{name}#{principal.key_id}"


def check_action_id(value: str | None) -> str:
    if not value:
        return str(uuid.uuid4())
    if not ACTION_ID_RE.match(value):
        raise ActionError(422, "Idempotency-Key: 1-100 letters, digits, '.', '_', ':' or '-'")
    return value


def normalise(body: AgentActionRequest, row: Shipment, *, now: datetime) -> dict[str, Any]:
    """Checks that need the shipment (its time zone, its country) and returns the parameters as
    they go to the workflow. Raises ActionError(422) naming the field."""
    if not body.reason.strip():
        what = "the note" if body.action == "note" else "why (reason)"
        raise ActionError(422, f"reason: {body.action} needs {what}")
    given = {
        f for f in ("requested_date", "address", "phone", "until", "purpose") if getattr(body, f) is not None
    }
    extra = given - FIELDS_FOR[body.action]
    if extra:
        raise ActionError(422, f"{sorted(extra)[0]}: not used by {body.action}")
    params: dict[str, Any] = {}
    tz = _zone(row.customer_timezone)
    if body.action == "reschedule":
        if body.requested_date is None:
            raise ActionError(422, "requested_date: reschedule needs a date (YYYY-MM-DD)")
        today = now.astimezone(tz).date()
        if body.requested_date < today:
            raise ActionError(
                422, f"requested_date: {body.requested_date} is in the past (today is {today} in {tz.key})"
            )
        if body.requested_date > today + timedelta(days=MAX_RESCHEDULE_DAYS):
            raise ActionError(422, f"requested_date: more than {MAX_RESCHEDULE_DAYS} days ahead")
        params["requested_date"] = body.requested_date.isoformat()
    if body.action == "update_address":
        address = body.address.model_dump(exclude_none=True) if body.address else {}
        address = {k: v.strip() for k, v in address.items() if v.strip()}
        if not address and not body.phone:
            raise ActionError(422, "address: update_address needs the changed address fields or a phone")
        if address:
            if "country" in address:
                address["country"] = address["country"].upper()
            params["address"] = address
        if body.phone:
            region = (address.get("country") or (row.address or {}).get("country") or "IN").upper()
            try:
                params["phone"] = phones.normalize(body.phone, region)
            except ValueError as exc:
                raise ActionError(422, f"phone: {exc}") from None
    if body.action == "snooze":
        if body.until is None:
            raise ActionError(422, "until: snooze needs a time (ISO-8601 with offset)")
        until = body.until if body.until.tzinfo else body.until.replace(tzinfo=tz)
        if until <= now:
            raise ActionError(422, "until: must be in the future")
        if until - now > MAX_SNOOZE:
            raise ActionError(422, f"until: at most {MAX_SNOOZE.days} days ahead")
        params["until"] = until.astimezone(UTC).isoformat()
    if body.action == "resend_notification" and body.purpose:
        params["purpose"] = body.purpose
    return params


async def perform_action(
    session: Session,
    temporal: Client,
    *,
    row: Shipment,
    principal: Principal,
    body: AgentActionRequest,
    action_id: str,
    source: str = "api",
    now: datetime | None = None,
) -> ActionOutcome:
    now = now or datetime.now(UTC)
    params = normalise(body, row, now=now)
    agent = agent_name(session, principal)
    reason = body.reason.strip()
    record, created = agent_store.begin_action(
        session,
        record=agent_store.AgentActionRecord(
            action_id=action_id,
            shipment_id=row.shipment_id,
            agent=agent,
            agent_key_id=principal.key_id,
            action=body.action,
            reason=reason,
            params=params,
            source=source,
            requested_at=now,
        ),
    )
    if not created:
        if (record.shipment_id, record.action, record.reason, record.params) != (
            row.shipment_id,
            body.action,
            reason,
            params,
        ):
            raise ActionError(
                409,
                f"Idempotency-Key {action_id!r} was already used for a different action",
                action_id=action_id,
            )
        if record.status in agent_store.FINAL_STATUSES:
            return _replay(record)
        # Audited but never answered (Temporal was down, or the call timed out): apply it now;
        # the update id makes the server apply it once even if the first call got through.

    inp = AgentActionInput(
        action=body.action,
        agent=agent,
        reason=reason,
        requested_date=params.get("requested_date"),
        address=params.get("address"),
        phone=params.get("phone"),
        until=params.get("until"),
        purpose=params.get("purpose"),
        action_id=action_id,
        requested_at=record.requested_at.astimezone(UTC).isoformat(),
    )
    handle = temporal.get_workflow_handle(row.workflow_id)
    try:
        result: AgentActionResult = await handle.execute_update(
            AGENT_ACTION, inp, id=action_id, result_type=AgentActionResult
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause) or "refused"
        status = 422 if getattr(cause, "type", None) == INVALID_AGENT_ACTION else 409
        _refuse(session, action_id, status, f"the workflow refused {body.action}: {message}")
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ActionError(
            504,
            f"the workflow did not answer in time; retry with Idempotency-Key {action_id}",
            action_id=action_id,
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if "complete" in (exc.message or "").lower() or row.closed:
                _refuse(
                    session,
                    action_id,
                    409,
                    f"shipment {row.shipment_id} is finished: its workflow takes no more actions",
                )
            _refuse(session, action_id, 404, f"workflow for shipment {row.shipment_id!r} not found")
        if exc.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION):
            _refuse(session, action_id, 409, f"the workflow refused {body.action}: {exc.message}")
        log.warning(
            "agent action %s on %s: temporal unavailable (%s)", action_id, row.shipment_id, exc.status
        )
        raise

    response = AgentActionResponse(
        action_id=action_id,
        shipment_id=row.shipment_id,
        workflow_id=row.workflow_id,
        action=body.action,
        agent=agent,
        accepted=result.accepted,
        detail=result.detail,
        needs_attention=result.needs_attention,
        attention_reason=result.attention_reason,
        duplicate=result.duplicate or not created,
    )
    if not result.accepted:
        _refuse(
            session,
            action_id,
            409,
            f"the workflow refused {body.action}: {result.detail}",
            result=asdict(result),
        )
    agent_store.finish_action(
        session,
        action_id=action_id,
        status=agent_store.ACCEPTED,
        detail=result.detail,
        http_status=200,
        result=response.model_dump(),
    )
    log.info("agent action %s %s on %s by %s: accepted", action_id, body.action, row.shipment_id, agent)
    return ActionOutcome(200, response)


def _refuse(
    session: Session, action_id: str, status: int, detail: str, *, result: dict[str, Any] | None = None
) -> None:
    agent_store.finish_action(
        session,
        action_id=action_id,
        status=agent_store.REJECTED,
        detail=detail,
        http_status=status,
        result=result or {},
    )
    raise ActionError(status, detail, action_id=action_id)


def _replay(record: agent_store.AgentActionRecord) -> ActionOutcome:
    if record.status != agent_store.ACCEPTED:
        raise ActionError(record.http_status or 409, record.detail, action_id=record.action_id)
    body = AgentActionResponse(**{**record.result, "duplicate": True})
    return ActionOutcome(record.http_status or 200, body)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")
