"""The worker registers the shipment workflow with its read-model activity, and lets tests
replace an activity by registering a fake under the same name."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from domain.events import CarrierEvent, normalise_time
from ndrflow.config import Settings
from ndrflow.worker import all_activities, build_worker
from store.models import Shipment
from workflows import search
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import (
    SYNC_READ_MODEL,
    RegisterInput,
    ShipmentProfile,
    ShipmentWorkflowInput,
    SyncReadModelInput,
)
from workflows.shipment import ShipmentWorkflow


async def _register_with_event(
    env: WorkflowEnvironment, task_queue: str, tracking: str
) -> tuple[str, object]:
    sid = shipment_id_for("acme", "generic", tracking)
    event = CarrierEvent(
        carrier="generic",
        tracking_number=tracking,
        milestone="out_for_delivery",
        occurred_at=normalise_time("2026-11-28T09:10:00+05:30"),
        event_id="e1",
    )
    handle = await env.client.start_workflow(
        ShipmentWorkflow.run,
        ShipmentWorkflowInput(shipment_id=sid),
        id=shipment_workflow_id(sid),
        task_queue=task_queue,
        start_signal="register",
        start_signal_args=[
            RegisterInput(
                profile=ShipmentProfile(
                    shipment_id=sid, merchant_id="acme", carrier="generic", tracking_number=tracking
                ),
                registered_at=normalise_time("2026-11-27T10:00:00+00:00"),
                events=[event],
            )
        ],
        search_attributes=search.initial_attributes("acme", "generic"),
        execution_timeout=timedelta(minutes=5),
    )
    return sid, handle


async def test_worker_runs_the_workflow_and_writes_the_read_model(
    time_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    tracking = f"TRK-{task_queue[-8:]}"
    sid = shipment_id_for("acme", "generic", tracking)
    with Session(engine) as s:
        s.add(
            Shipment(
                shipment_id=sid,
                workflow_id=shipment_workflow_id(sid),
                merchant_id="acme",
                carrier="generic",
                tracking_number=tracking,
            )
        )
        s.commit()
    settings = Settings(temporal_task_queue=task_queue)
    async with build_worker(time_env.client, settings, engine):
        _, handle = await _register_with_event(time_env, task_queue, tracking)
        state = await handle.query(ShipmentWorkflow.state)  # type: ignore[attr-defined]
        assert state.status == "out_for_delivery"
        for _ in range(100):
            with Session(engine) as s:
                row = s.get(Shipment, sid)
                assert row is not None
                if row.status == "out_for_delivery":
                    break
            await time_env.sleep(0.05)
        assert row.status == "out_for_delivery"
        await handle.terminate("test over")


async def test_extra_activity_replaces_the_real_one_with_the_same_name(
    time_env: WorkflowEnvironment, task_queue: str, engine: Engine
) -> None:
    calls: list[SyncReadModelInput] = []

    @activity.defn(name=SYNC_READ_MODEL)
    def fake_sync(inp: SyncReadModelInput) -> None:
        calls.append(inp)

    settings = Settings(temporal_task_queue=task_queue)
    assert len(all_activities(settings, engine)) >= 1
    async with build_worker(time_env.client, settings, engine, extra_activities=[fake_sync]):
        _, handle = await _register_with_event(time_env, task_queue, f"TRK-{task_queue[-8:]}")
        state = await handle.query(ShipmentWorkflow.state)  # type: ignore[attr-defined]
        assert state.status == "out_for_delivery"
        for _ in range(100):
            if calls:
                break
            await time_env.sleep(0.05)
        assert calls and calls[-1].status == "out_for_delivery"
        await handle.terminate("test over")
