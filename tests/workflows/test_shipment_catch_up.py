"""Catch-up batches: events that reach the workflow together (a poll of the carrier's tracking
history, events waiting for registration, pushes that arrived while the workflow was busy) are
applied in carrier-time order, and effects decided along the way that the rest of the batch made
moot are not carried out: no NDR question or carrier instruction for a parcel already delivered."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.events import normalise_time
from tests.workflows.fakes import Fakes, ev, new_id, start, worker
from workflows.messages import CarrierEventsInput, ShipmentState
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_QUIET = ShipmentPolicy(quiet_hours="")


async def until(handle, check, timeout: float = 10.0) -> ShipmentState:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st: ShipmentState = await handle.query(ShipmentWorkflow.state)
        if check(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; status={st.status} timeline={[t.summary for t in st.timeline][-8:]}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("reason", ["not_attempted", "customer_unavailable"])
async def test_failed_attempt_then_delivered_in_one_batch_sends_no_instruction_or_question(
    time_env: WorkflowEnvironment, task_queue: str, reason: str
) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET)
        batch = [
            ev("delivered", "2026-11-28T12:00:00+00:00", "c"),
            ev("delivery_failed", "2026-11-27T12:00:00+00:00", "a", reason),
            ev("out_for_delivery", "2026-11-28T04:00:00+00:00", "b"),
        ]
        await h.signal("carrier_events", CarrierEventsInput(events=batch))
        st = await until(h, lambda s: s.status == "delivered" and any(n["purpose"] == "delivered" for n in s.notifications))
        await asyncio.sleep(0.3)
        st = await h.query(ShipmentWorkflow.state)
        assert fakes.instructions == []
        assert not [p for p in fakes.purposes() if p.startswith("ndr")]
        [case] = st.ndr_cases
        assert case["state"] == "closed"
        if reason == "not_attempted":  # decided by the rule at once, then overtaken
            assert case["instructions"][0]["status"] == "not_sent"
        else:  # the question was never asked
            assert case["instructions"] == []
            assert any("ndr_ask not sent: the shipment is delivered" in t.summary for t in st.timeline)


async def test_rule_instruction_is_sent_when_nothing_overtakes_it(time_env: WorkflowEnvironment, task_queue: str) -> None:
    # The control: the same failed attempt alone goes to the carrier at once.
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivery_failed", "2026-11-27T12:00:00+00:00", "a", "not_attempted")]))
        st = await until(h, lambda s: bool(s.ndr_cases) and s.ndr_cases[0]["instructions"][0]["status"] == "accepted")
        assert [i.instruction.action for i in fakes.instructions] == ["reattempt"]
        assert st.ndr_cases[0]["state"] == "instructed"


async def test_rule_instruction_overtaken_by_out_for_delivery_in_the_same_batch_is_not_sent(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET)
        batch = [ev("delivery_failed", "2026-11-27T12:00:00+00:00", "a", "not_attempted"), ev("out_for_delivery", "2026-11-28T04:00:00+00:00", "b")]
        await h.signal("carrier_events", CarrierEventsInput(events=batch))
        st = await until(h, lambda s: bool(s.ndr_cases) and s.ndr_cases[0]["instructions"][0]["status"] != "pending")
        assert fakes.instructions == []
        [case] = st.ndr_cases
        assert case["state"] == "carrier_acted"
        assert case["instructions"][0]["status"] == "not_sent"
        assert "went out for delivery again" in case["instructions"][0]["detail"]


async def test_poll_after_a_quiet_spell_that_finds_the_whole_story_asks_and_instructs_nothing(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    # Every push was dropped; the tracking poll finds failed attempt, reattempt and delivery.
    fakes = Fakes(poll_events=[
        ev("delivery_failed", "2026-11-27T12:00:00+00:00", "a", "customer_unavailable"),
        ev("out_for_delivery", "2026-11-28T04:00:00+00:00", "b"),
        ev("delivered", "2026-11-28T09:00:00+00:00", "c"),
    ])
    policy = ShipmentPolicy(quiet_hours="", poll_after_s=3600)
    async with worker(time_env.client, task_queue, fakes):
        now = normalise_time(await time_env.get_current_time())
        h = await start(time_env.client, task_queue, new_id(), policy=policy, registered_at=now)
        await until(h, lambda s: s.registered_at is not None)
        assert fakes.polls == []
        await time_env.sleep(3700)
        st = await until(h, lambda s: s.status == "delivered")
        assert len(fakes.polls) >= 1
        await asyncio.sleep(0.3)
        assert fakes.instructions == []
        assert not [p for p in fakes.purposes() if p.startswith("ndr")]
        assert any("ndr_ask not sent" in t.summary for t in st.timeline)
