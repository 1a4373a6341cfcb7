"""The harness starts the real stack on free ports and stops it cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import Session
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import WorkflowExecutionStatus

from ndrflow.devserver import process_alive
from store.keys import authenticate
from tests.e2e.harness import running_stack
from workflows.messages import ShipmentWorkflowInput

pytestmark = pytest.mark.e2e


async def test_stack_answers_health_with_worker_polling_usable_keys_and_resumes(tmp_path: Path) -> None:
    async with running_stack(tmp_path, completion_grace_hours=1) as st:
        r = await st.http.get("/healthz")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "temporal": "ok", "database": "ok"}

        # Settings given as keyword arguments reach the stack's settings.
        assert st.settings.completion_grace_hours == 1
        assert st.settings.public_base_url == st.base_url

        # The worker in the same loop polls the configured task queue (its first poll may lag).
        for _ in range(100):
            tq = await st.client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=st.client.namespace,
                    task_queue=TaskQueue(name=st.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            if tq.pollers:
                break
            await asyncio.sleep(0.05)
        assert len(tq.pollers) >= 1

        with Session(st.engine) as s:
            for key, scope in (
                (st.merchant_key, "merchant"),
                (st.carrier_key, "carrier"),
                (st.agent_key, "agent"),
            ):
                row = authenticate(s, key)
                assert row is not None and row.scope == scope
            assert authenticate(s, st.merchant_key).merchant_id == "acme"  # type: ignore[union-attr]
        pid = st.stack.devserver.pid  # type: ignore[union-attr]
        assert pid is not None and process_alive(pid)
        # A workflow left open (no registration needed: nothing runs it but the server).
        handle = await st.client.start_workflow(
            "ShipmentWorkflow",
            ShipmentWorkflowInput(shipment_id="shp_harness"),
            id="shipment-shp_harness",
            task_queue="nobody-polls-this",
        )
    # Everything stopped: the dev server is gone.
    assert not process_alive(pid)

    # Entering again with the same tmp_path resumes the same home and Temporal DB.
    async with running_stack(tmp_path) as st:
        assert (await st.http.get("/healthz")).status_code == 200
        desc = await st.client.get_workflow_handle(handle.id).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        await st.client.get_workflow_handle(handle.id).terminate("test over")
