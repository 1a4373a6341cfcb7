"""The NDR policy runs inside the Temporal workflow sandbox (zoneinfo, no clock but workflow.now())
and CustomerReplyInput / CustomerReplyResult / NdrCase dicts survive the real data converter.
A minimal stand-in workflow, not ShipmentWorkflow (the lead wires the real one)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import pytest

    from workflows import ndr_policy as P
    from workflows.messages import CUSTOMER_REPLY, CustomerReplyInput, CustomerReplyResult


@workflow.defn(sandboxed=True)
class NdrCaseProbe:
    def __init__(self) -> None:
        self.cases: list[dict] = []
        self.done = False

    @workflow.run
    async def run(self, reason: str) -> list[dict]:
        step = P.open_case(attempt=1, reason=reason, now=workflow.now(), tz="Asia/Kolkata")
        P.store_case(self.cases, step.case)
        cutoff = P.decision_cutoff(workflow.now(), "Asia/Kolkata")
        assert P.reminder_times(workflow.now(), "Asia/Kolkata", cutoff=cutoff) is not None
        await workflow.wait_condition(lambda: self.done)
        return self.cases

    @workflow.query
    def case_count(self) -> int:
        return len(self.cases)

    @workflow.update(name=CUSTOMER_REPLY)
    def customer_reply(self, inp: CustomerReplyInput) -> CustomerReplyResult:
        case = P.find_case(self.cases, inp.attempt)
        assert case is not None
        step = P.apply_reply(case, inp)
        P.store_case(self.cases, step.case)
        if step.case.state == P.DECIDED:
            self.done = True
        return step.result()

    @customer_reply.validator
    def _validate(self, inp: CustomerReplyInput) -> None:
        error = P.validate_reply(P.find_case(self.cases, inp.attempt), inp)
        if error:
            raise ValueError(error)


async def test_policy_in_the_sandbox_with_real_payloads(time_env, task_queue):  # type: ignore[no-untyped-def]
    client = time_env.client
    async with Worker(client, task_queue=task_queue, workflows=[NdrCaseProbe]):
        handle = await client.start_workflow(NdrCaseProbe.run, "payment_issue", id=f"probe-{uuid.uuid4()}", task_queue=task_queue,
                                             execution_timeout=timedelta(minutes=5))
        # An update can reach the validator before run() has opened the case, and is then refused
        # ("there is no NDR case for attempt 1"): wait until the case exists.
        for _ in range(200):
            if await handle.query(NdrCaseProbe.case_count):
                break
            await asyncio.sleep(0.01)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CUSTOMER_REPLY, CustomerReplyInput(
                attempt=1, channel="sms", received_at="2026-11-26T09:30:00+00:00", kind="address", action="update_address",
                address={"line1": "12 MG Road"}), result_type=CustomerReplyResult)
        assert "not allowed for reason payment_issue" in str(refused.value.cause)
        first = await handle.execute_update(CUSTOMER_REPLY, CustomerReplyInput(
            attempt=1, channel="sms", received_at="2026-11-26T09:30:00+00:00", kind="choice", action="reschedule", message_id="SM1",
        ), result_type=CustomerReplyResult)
        assert (first.outcome, first.state) == ("awaiting_date", "awaiting_date")
        second = await handle.execute_update(CUSTOMER_REPLY, CustomerReplyInput(
            attempt=1, channel="sms", received_at="2026-11-26T09:31:00+00:00", kind="date", action="reschedule",
            requested_date="2026-11-28", text="Saturday", message_id="SM2",
        ), result_type=CustomerReplyResult)
        assert (second.outcome, second.action, second.requested_date) == ("decided", "reschedule", "2026-11-28")
        cases = await handle.result()
    assert cases[0]["state"] == "decided" and cases[0]["instructions"][0]["requested_date"] == "2026-11-28"
    assert [r["text"] for r in cases[0]["responses"]] == ["", "Saturday"]
