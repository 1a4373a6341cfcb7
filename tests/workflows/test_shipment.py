"""ShipmentWorkflow on the time-skipping server: ordering, duplicates, late scans, completion."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.events import CarrierEvent
from workflows.ids import shipment_workflow_id
from workflows.messages import (
    SYNC_READ_MODEL,
    CarrierEventsInput,
    RegisterInput,
    ShipmentProfile,
    ShipmentWorkflowInput,
    SyncReadModelInput,
)
from workflows.shipment import ShipmentWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


class FakeReadModel:
    def __init__(self) -> None:
        self.calls: list[SyncReadModelInput] = []

    @activity.defn(name=SYNC_READ_MODEL)
    def sync(self, inp: SyncReadModelInput) -> None:
        self.calls.append(inp)


def ev(status: str, at: str, event_id: str | None = None, **kw) -> CarrierEvent:  # type: ignore[no-untyped-def]
    return CarrierEvent(carrier="generic", tracking_number="TRK1", milestone=status, occurred_at=at, event_id=event_id, **kw)


async def start(client: Client, task_queue: str, sid: str, signal: str, arg, grace: float = 3600):  # type: ignore[no-untyped-def]
    return await client.start_workflow(
        ShipmentWorkflow.run,
        ShipmentWorkflowInput(shipment_id=sid, completion_grace_seconds=grace),
        id=shipment_workflow_id(sid),
        task_queue=task_queue,
        start_signal=signal,
        start_signal_args=[arg],
    )


async def wait_for_status(handle, status: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(100):
        if (await handle.query(ShipmentWorkflow.state)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"status never became {status}")


def profile(sid: str) -> ShipmentProfile:
    return ShipmentProfile(shipment_id=sid, merchant_id="acme", carrier="generic", tracking_number="TRK1")


@pytest.fixture
def worker_parts():  # type: ignore[no-untyped-def]
    return FakeReadModel(), ThreadPoolExecutor(4)


async def test_out_of_order_and_duplicate_events_never_move_status_backwards(time_env: WorkflowEnvironment, task_queue: str, worker_parts) -> None:
    rm, pool = worker_parts
    sid = f"shp_{uuid.uuid4().hex[:10]}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=[rm.sync], activity_executor=pool):
        handle = await start(time_env.client, task_queue, sid, "register", RegisterInput(profile=profile(sid), registered_at="2026-11-27T00:00:00.000000Z"))
        await handle.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T03:40:00.000000Z", "e3")]))
        await wait_for_status(handle, "out_for_delivery")
        # A late pickup scan and an in-transit scan arrive after out_for_delivery, plus a duplicate.
        await handle.signal(
            "carrier_events",
            CarrierEventsInput(
                events=[
                    ev("picked_up", "2026-11-27T05:00:00.000000Z", "e1"),
                    ev("in_transit", "2026-11-27T12:00:00.000000Z", "e2"),
                    ev("out_for_delivery", "2026-11-28T03:40:00.000000Z", "e3"),
                ]
            ),
        )
        state = await handle.query(ShipmentWorkflow.state)
        assert state.status == "out_for_delivery"
        carrier_entries = [t for t in state.timeline if t.kind == "carrier_event"]
        assert [t.data["milestone"] for t in carrier_entries] == ["picked_up", "in_transit", "out_for_delivery"]
        assert [t.data["applied"] for t in carrier_entries] == [False, False, True]
        # The read model saw the status and never a backwards move.
        assert rm.calls[-1].status == "out_for_delivery"
        assert all(c.status in ("created", "out_for_delivery") for c in rm.calls)


async def test_unknown_code_is_kept_but_does_not_change_status(time_env: WorkflowEnvironment, task_queue: str, worker_parts) -> None:
    rm, pool = worker_parts
    sid = f"shp_{uuid.uuid4().hex[:10]}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=[rm.sync], activity_executor=pool):
        handle = await start(time_env.client, task_queue, sid, "carrier_events", CarrierEventsInput(events=[ev("in_transit", "2026-11-27T05:00:00.000000Z", "a")]))
        await handle.signal("carrier_events", CarrierEventsInput(events=[ev("unknown", "2026-11-27T09:00:00.000000Z", "b", raw_code="XYZ")]))
        state = await handle.query(ShipmentWorkflow.state)
        assert state.status == "in_transit"
        assert state.timeline[-1].data["raw_code"] == "XYZ"
        assert state.timeline[-1].data["applied"] is False


async def test_events_before_registration_then_register_fills_profile(time_env: WorkflowEnvironment, task_queue: str, worker_parts) -> None:
    rm, pool = worker_parts
    sid = f"shp_{uuid.uuid4().hex[:10]}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=[rm.sync], activity_executor=pool):
        handle = await start(time_env.client, task_queue, sid, "carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00.000000Z", "p")]))
        await handle.signal("register", RegisterInput(profile=profile(sid), registered_at="2026-11-27T06:00:00.000000Z"))
        state = await handle.query(ShipmentWorkflow.state)
        assert state.profile is not None and state.profile.merchant_id == "acme"
        assert state.status == "picked_up"
        # Whether picked_up is also notified depends on whether both signals landed in one
        # workflow task (the profile is known then), and the message may be a quiet-hours
        # deferral: this test is about the profile, so it reads the other entries only.
        assert [t.kind for t in state.timeline if t.kind != "notification"] == ["carrier_event", "registered"]


async def test_terminal_status_completes_after_grace_and_is_never_left(time_env: WorkflowEnvironment, task_queue: str, worker_parts) -> None:
    rm, pool = worker_parts
    sid = f"shp_{uuid.uuid4().hex[:10]}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=[rm.sync], activity_executor=pool):
        handle = await start(time_env.client, task_queue, sid, "register", RegisterInput(profile=profile(sid), registered_at="2026-11-27T00:00:00.000000Z"), grace=3600)
        await handle.signal("carrier_events", CarrierEventsInput(events=[ev("delivered", "2026-11-28T05:00:00.000000Z", "d")]))
        # A late out-for-delivery scan after delivery stays in the timeline only.
        await handle.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T06:00:00.000000Z", "o")]))
        result = await handle.result()  # time skips through the grace period
        assert result.status == "delivered"
        assert result.late_events == 1
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED
        assert rm.calls[-1].closed is True and rm.calls[-1].status == "delivered"
        # Search attributes were kept current.
        sa = desc.typed_search_attributes
        from workflows import search

        assert sa.get(search.SHIPMENT_STATUS) == "delivered"
        assert sa.get(search.MERCHANT_ID) == "acme"


async def test_continue_as_new_carries_state(time_env: WorkflowEnvironment, task_queue: str, worker_parts) -> None:
    rm, pool = worker_parts
    sid = f"shp_{uuid.uuid4().hex[:10]}"
    async with Worker(time_env.client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=[rm.sync], activity_executor=pool):
        handle = await time_env.client.start_workflow(
            ShipmentWorkflow.run,
            ShipmentWorkflowInput(shipment_id=sid, max_history_events=30),
            id=shipment_workflow_id(sid),
            task_queue=task_queue,
            start_signal="register",
            start_signal_args=[RegisterInput(profile=profile(sid), registered_at="2026-11-27T00:00:00.000000Z")],
        )
        for i in range(12):
            await handle.signal("carrier_events", CarrierEventsInput(events=[ev("in_transit", f"2026-11-27T{i:02d}:00:00.000000Z", f"t{i}")]))
            await asyncio.sleep(0.1)  # one workflow task per scan, so history grows past the limit
        # Find the latest run and check state survived.
        latest = time_env.client.get_workflow_handle(shipment_workflow_id(sid))
        state = await latest.query(ShipmentWorkflow.state)
        assert len([t for t in state.timeline if t.kind == "carrier_event"]) == 12
        assert state.profile is not None
        desc = await latest.describe()
        assert desc.run_id != handle.result_run_id, "history limit of 30 events should have continued as new"
