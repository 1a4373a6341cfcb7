"""A fake Temporal client for the agents' API and dashboard: visibility listing and counting over
in-memory executions (recording every query), the `state` query, and the `agent_action` Update
(recording every call, deduplicated by update id like the server).

The visibility filter understands exactly the query shape api/cases.py builds (clauses joined by
AND, `Name = 'value'` with doubled quotes, `Name = true|false`), so a test shows both the exact
string sent and that it selects the right workflows. Also used by the browser test, served by
uvicorn in a thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from ndrflow.config import Settings
from store import agents as agent_store
from store import keys
from store.models import Shipment
from workflows import search
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import AGENT_ACTION, AgentActionInput, AgentActionResult, ShipmentState, TimelineEntry

_KEYS = {k.name: k for k in search.ALL_KEYS}
_CLAUSE = re.compile(r"^(\w+) = (?:'((?:[^']|'')*)'|(true|false))$")


@dataclass
class FakeExecution:
    id: str
    attrs: dict[str, Any]
    start_time: datetime
    running: bool = True

    @property
    def typed_search_attributes(self) -> TypedSearchAttributes:
        return TypedSearchAttributes(
            [SearchAttributePair(_KEYS[k], v) for k, v in self.attrs.items() if v is not None]
        )


def matches(ex: FakeExecution, query: str) -> bool:
    for clause in query.split(" AND "):
        m = _CLAUSE.match(clause.strip())
        if not m:
            raise RPCError(f"invalid query: {clause!r}", RPCStatusCode.INVALID_ARGUMENT, b"")
        name, text, boolean = m.groups()
        value: Any = (boolean == "true") if boolean else text.replace("''", "'")
        if name == "ExecutionStatus":
            if (value == "Running") != ex.running:
                return False
        elif ex.attrs.get(name) != value:
            return False
    return True


class FakePage:
    def __init__(self, fake: FakeAgentTemporal, query: str, page_size: int, token: bytes | None) -> None:
        self.fake, self.query, self.page_size, self.token = fake, query, page_size, token
        self.current_page: list[FakeExecution] | None = None
        self.next_page_token: bytes | None = None

    async def fetch_next_page(self) -> None:
        if self.fake.unavailable:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        if self.token is not None and not self.token.startswith(b"page:"):
            raise RPCError("invalid page token", RPCStatusCode.INVALID_ARGUMENT, b"")
        hits = sorted(
            (e for e in self.fake.executions.values() if matches(e, self.query)),
            key=lambda e: e.start_time,
            reverse=True,
        )
        start = int(self.token[5:]) if self.token else 0
        self.current_page = hits[start : start + self.page_size]
        self.next_page_token = (
            f"page:{start + self.page_size}".encode() if start + self.page_size < len(hits) else None
        )


@dataclass
class Count:
    count: int
    groups: list[Any] = field(default_factory=list)


@dataclass
class UpdateCall:
    workflow_id: str
    name: str
    arg: AgentActionInput
    id: str | None


# What the fake workflow does with an action: returns a result or raises (like a validator).
UpdateBehaviour = Callable[["FakeAgentTemporal", str, AgentActionInput], AgentActionResult]


def default_behaviour(fake: FakeAgentTemporal, workflow_id: str, inp: AgentActionInput) -> AgentActionResult:
    """Roughly what the real workflow does: refuse resolving what needs nothing; actions that
    settle the case clear the flag (search attributes too); everything lands in the timeline."""
    st = fake.states[workflow_id]
    if inp.action == "resolve" and not st.needs_attention:
        raise WorkflowUpdateFailedError(
            ApplicationError(
                "nothing to resolve: the shipment does not need attention", type="AgentActionRefused"
            )
        )
    if inp.action == "reschedule" and inp.requested_date and inp.requested_date > "2099-01-01":
        raise WorkflowUpdateFailedError(
            ApplicationError("requested_date is outside the carrier's window", type="InvalidAgentAction")
        )
    st.timeline.append(
        TimelineEntry(
            at=inp.requested_at,
            kind="agent_action",
            summary=f"{inp.agent}: {inp.action}",
            data={"action_id": inp.action_id, "agent": inp.agent, "action": inp.action, "reason": inp.reason},
        )
    )
    if inp.action in ("reattempt", "reschedule", "update_address", "rto", "resolve", "snooze"):
        st.needs_attention, st.attention_reason, st.attention_since = False, None, None
        ex = fake.executions.get(workflow_id)
        if ex is not None:
            ex.attrs[search.NEEDS_ATTENTION.name] = False
            ex.attrs.pop(search.ATTENTION_REASON.name, None)
    return AgentActionResult(
        accepted=True,
        detail=f"{inp.action} applied",
        needs_attention=st.needs_attention,
        attention_reason=st.attention_reason,
    )


@dataclass
class FakeAgentTemporal:
    executions: dict[str, FakeExecution] = field(default_factory=dict)
    states: dict[str, ShipmentState] = field(default_factory=dict)
    list_calls: list[tuple[str, int, bytes | None]] = field(default_factory=list)
    count_calls: list[str] = field(default_factory=list)
    updates: list[UpdateCall] = field(default_factory=list)
    applied: dict[str, AgentActionResult] = field(default_factory=dict)  # update id -> first result
    behaviour: UpdateBehaviour = default_behaviour
    unavailable: bool = False
    update_error: BaseException | None = None  # raised by the next execute_update (then cleared)
    starts: list[Any] = field(default_factory=list)

    def list_workflows(
        self,
        query: str | None = None,
        *,
        page_size: int = 1000,
        next_page_token: bytes | None = None,
        **_: Any,
    ) -> FakePage:
        self.list_calls.append((query or "", page_size, next_page_token))
        return FakePage(self, query or "", page_size, next_page_token)

    async def count_workflows(self, query: str | None = None, **_: Any) -> Count:
        if self.unavailable:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        self.count_calls.append(query or "")
        return Count(sum(1 for e in self.executions.values() if matches(e, query or "")))

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return FakeHandle(self, workflow_id)

    async def start_workflow(self, *_: Any, **kw: Any) -> None:
        self.starts.append(kw)

    # -- building the world ------------------------------------------------------------------
    def add(
        self,
        engine: Engine,
        *,
        merchant: str,
        tracking: str,
        carrier: str = "generic",
        reason: str | None = None,
        status: str = "in_transit",
        started: datetime | None = None,
        customer_name: str = "Asha Rao",
        order_id: str | None = None,
        since: datetime | None = None,
    ) -> Shipment:
        """A shipment row, its running execution and its state; with `since`, also the attention
        record the workflow's record_attention activity would have written."""
        sid = shipment_id_for(merchant, carrier, tracking)
        wid = shipment_workflow_id(sid)
        row = Shipment(
            shipment_id=sid,
            workflow_id=wid,
            merchant_id=merchant,
            carrier=carrier,
            tracking_number=tracking,
            order_id=order_id or f"O-{tracking}",
            status=status,
            needs_attention=reason is not None,
            attention_reason=reason,
            customer_name=customer_name,
            customer_phone="+919876543210",
            customer_email="asha@example.com",
            customer_timezone="Asia/Kolkata",
            address={"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
        )
        with Session(engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()
            if reason and since:
                agent_store.raise_attention(s, shipment_id=sid, reason=reason, raised_at=since, detail="")
        attrs: dict[str, Any] = {
            "ShipmentStatus": status,
            "Carrier": carrier,
            "MerchantId": merchant,
            "NeedsAttention": reason is not None,
            "NdrAttempts": 0,
        }
        if reason:
            attrs["AttentionReason"] = reason
        self.executions[wid] = FakeExecution(wid, attrs, started or datetime.now(UTC))
        self.states[wid] = ShipmentState(
            shipment_id=sid,
            status=status,
            needs_attention=reason is not None,
            attention_reason=reason,
            attention_since=(since or datetime.now(UTC) - timedelta(hours=2)).isoformat() if reason else None,
            timeline=[
                TimelineEntry(
                    at="2026-11-25T08:00:00+00:00", kind="registered", summary="registered by merchant"
                )
            ],
        )
        return row


@dataclass
class FakeHandle:
    fake: FakeAgentTemporal
    workflow_id: str

    def _exists(self) -> None:
        if self.fake.unavailable:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        if self.workflow_id not in self.fake.states:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    async def query(self, _q: Any) -> ShipmentState:
        self._exists()
        return self.fake.states[self.workflow_id]

    async def describe(self) -> Any:
        self._exists()
        return type(
            "D",
            (),
            {"typed_search_attributes": self.fake.executions[self.workflow_id].typed_search_attributes},
        )()

    async def execute_update(
        self, name: str, arg: AgentActionInput, *, id: str | None = None, result_type: Any = None, **_: Any
    ) -> AgentActionResult:
        self.fake.updates.append(UpdateCall(self.workflow_id, name, arg, id))
        if self.fake.update_error is not None:
            err, self.fake.update_error = self.fake.update_error, None
            raise err
        self._exists()
        assert name == AGENT_ACTION and result_type is AgentActionResult
        if id is not None and id in self.fake.applied:  # the server dedupes by update id
            first = self.fake.applied[id]
            return AgentActionResult(**{**first.__dict__, "duplicate": True})
        result = self.fake.behaviour(self.fake, self.workflow_id, arg)
        if id is not None:
            self.fake.applied[id] = result
        return result


@dataclass
class AgentsApi:
    client: TestClient
    temporal: FakeAgentTemporal
    engine: Engine
    settings: Settings
    merchant_key: str
    other_merchant_key: str
    carrier_key: str
    agent_key: str
    agent_key_id: int

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def make_agents_api(database_url: str, tmp_path: Path, **settings: Any) -> AgentsApi:
    cfg = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        secret_key="test-secret",
        temporal_ui_url="http://127.0.0.1:8233",
        **settings,
    )
    fake = FakeAgentTemporal()
    app = create_app(cfg, temporal=fake)  # type: ignore[arg-type]
    engine = app.state.engine
    with Session(engine) as s:
        mk = keys.create_key(s, scope="merchant", merchant_id="acme")
        ok = keys.create_key(s, scope="merchant", merchant_id="globex")
        ck = keys.create_key(s, scope="carrier", carrier="generic")
        ak = keys.create_key(s, scope="agent", name="priya")
        [row] = keys.list_keys(s, scope="agent")
        assert row.id is not None
    return AgentsApi(TestClient(app), fake, engine, cfg, mk, ok, ck, ak, row.id)
