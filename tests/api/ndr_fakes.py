"""A fake Temporal client for NDR API tests: one in-memory shipment workflow per id that answers
the `state` query and runs the real `customer_reply` validator and state machine
(workflows.ndr_policy), so tests see what the real workflow would answer."""

from __future__ import annotations

import copy
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.ids import shipment_workflow_id
from workflows.messages import CUSTOMER_REPLY, CustomerReplyInput, ShipmentProfile, ShipmentState
from workflows.ndr_policy import apply_reply, find_case, open_case, validate_reply


class FakeWorkflow:
    def __init__(self, state: ShipmentState) -> None:
        self.state = state
        self.updates: list[tuple[str, CustomerReplyInput]] = []
        self.queries = 0


class FakeHandle:
    def __init__(self, temporal: FakeTemporal, workflow_id: str) -> None:
        self.temporal = temporal
        self.id = workflow_id

    def _wf(self) -> FakeWorkflow:
        wf = self.temporal.workflows.get(self.id)
        if wf is None:
            raise RPCError(f"workflow not found for ID: {self.id}", RPCStatusCode.NOT_FOUND, b"")
        return wf

    async def query(self, query: str, *args: Any, result_type: Any = None, **kwargs: Any) -> Any:
        assert query == "state", query
        assert result_type in (None, ShipmentState)
        wf = self._wf()
        wf.queries += 1
        return copy.deepcopy(wf.state)

    async def execute_update(self, update: str, arg: Any, *, result_type: Any = None, **kwargs: Any) -> Any:
        wf = self._wf()
        wf.updates.append((update, arg))
        assert update == CUSTOMER_REPLY, update
        assert isinstance(arg, CustomerReplyInput)
        case = find_case(wf.state.ndr_cases, arg.attempt)
        error = validate_reply(case, arg)
        if error:
            raise WorkflowUpdateFailedError(ApplicationError(error, type="InvalidCustomerReply", non_retryable=True))
        assert case is not None
        step = apply_reply(case, arg)
        wf.state.ndr_cases = [case.to_dict() if c["attempt"] == case.attempt else c for c in wf.state.ndr_cases]
        return step.result(duplicate=step.outcome == "duplicate")


class FakeTemporal:
    def __init__(self) -> None:
        self.workflows: dict[str, FakeWorkflow] = {}
        self.handles_asked: list[str] = []

    def get_workflow_handle(self, workflow_id: str, **kwargs: Any) -> FakeHandle:
        self.handles_asked.append(workflow_id)
        return FakeHandle(self, workflow_id)

    def add_shipment(
        self, shipment_id: str, *, reason: str = "customer_unavailable", attempt: int = 1, tz: str = "Asia/Kolkata",
        locale: str = "en-IN", now: Any = None, cod: bool = False,
    ) -> FakeWorkflow:
        from datetime import UTC, datetime

        profile = ShipmentProfile(shipment_id=shipment_id, merchant_id="acme", carrier="generic", tracking_number="T" + shipment_id,
                                  locale=locale, timezone=tz, payment_mode="cod" if cod else "prepaid")
        state = ShipmentState(shipment_id=shipment_id, profile=profile, status="delivery_failed")
        case = open_case(attempt=attempt, reason=reason, now=now or datetime.now(UTC), tz=tz, cod=cod).case
        state.ndr_cases.append(case.to_dict())
        wf = FakeWorkflow(state)
        self.workflows[shipment_workflow_id(shipment_id)] = wf
        return wf

    def case(self, shipment_id: str, attempt: int = 1) -> dict[str, Any]:
        wf = self.workflows[shipment_workflow_id(shipment_id)]
        return next(c for c in wf.state.ndr_cases if c["attempt"] == attempt)
