"""Replay safety: every recorded journey in tests/workflows/histories/ must replay against the
current ShipmentWorkflow code without a nondeterminism error. A change that alters the commands a
past history produced (an added activity or timer, reordered steps) fails here; guard it with
`workflow.patched(...)` (see docs/changing-workflows.md) and re-record with
`python -m tests.workflows.record_histories`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from ndrflow.codec import ENCODING
from tests.workflows.record_histories import (
    HISTORIES,
    JOURNEYS,
    PII_STRINGS,
    record,
    replay_converter,
    shipment_id_for_journey,
)
from workflows.ids import shipment_workflow_id
from workflows.sandbox import strict_workflow_runner
from workflows.shipment import ShipmentWorkflow

FILES = sorted(HISTORIES.glob("*.json"))


def journey_name(path: Path) -> str:
    """`normal_delivery.json`, or `normal_delivery@<patch-id>.json` for a history kept from before
    a patched change (docs/changing-workflows.md)."""
    return path.stem.split("@", 1)[0]


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(
        shipment_workflow_id(shipment_id_for_journey(journey_name(path))), path.read_text()
    )


def test_every_journey_has_a_recorded_history() -> None:
    recorded = {journey_name(p) for p in FILES}
    assert set(JOURNEYS) <= recorded, (
        "run `python -m tests.workflows.record_histories` and commit the new files"
    )
    assert recorded <= set(JOURNEYS), f"histories without a journey: {sorted(recorded - set(JOURNEYS))}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[ShipmentWorkflow], data_converter=replay_converter(), workflow_runner=strict_workflow_runner()
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=True)
    assert result.replay_failure is None


def _payloads(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every Payload object (anything with a base64 `metadata.encoding`) in a history's JSON,
    with the field path it sits at."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            found.append((path, node))
        for key, value in node.items():
            found += _payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            found += _payloads(value, path)
    return found


# Left unencrypted by design: search attributes (the server indexes them; they hold no personal
# data) and the SDK's own marker bookkeeping: local-activity markers (sequence numbers, activity
# type) and patch markers (the patch id and its deprecated flag).
CLEAR_BY_DESIGN = (
    ".searchAttributes.",
    ".markerRecordedEventAttributes.details.data.",
    ".markerRecordedEventAttributes.details.patch-data.",
)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_recorded_history_holds_no_readable_personal_data(path: Path) -> None:
    text = path.read_text()
    payloads = _payloads(json.loads(text))
    sealed = [p for where, p in payloads if base64.b64decode(p["metadata"]["encoding"]) == ENCODING]
    clear = [where for where, p in payloads if base64.b64decode(p["metadata"]["encoding"]) != ENCODING]
    assert sealed, "recorded without the codec? every input, signal and result must be sealed"
    assert [w for w in clear if not any(c in w for c in CLEAR_BY_DESIGN)] == []
    for pii in PII_STRINGS:
        assert pii not in text
        for _, p in payloads:
            assert pii.encode() not in base64.b64decode(p.get("data", ""))


# A "change" to the workflow that a developer might make without patching: run an extra timer
# before handling the first events. Same workflow type name, so the recorded history applies.
@workflow.defn(name="ShipmentWorkflow")
class ShipmentWorkflowWithUnpatchedChange(ShipmentWorkflow):
    @workflow.run
    async def run(self, inp):  # type: ignore[no-untyped-def, override]
        from datetime import timedelta

        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


@pytest.mark.parametrize("path", FILES[:1], ids=[p.stem for p in FILES[:1]])
async def test_replay_catches_an_unpatched_change(path: Path) -> None:
    # Proves the replay test can fail: the changed code issues a timer the history never saw.
    replayer = Replayer(
        workflows=[ShipmentWorkflowWithUnpatchedChange],
        data_converter=replay_converter(),
        workflow_runner=UnsandboxedWorkflowRunner(),  # a test-module class; the sandbox would re-import pytest
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(path))


async def test_recorder_output_replays_against_current_code(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Keeps the recorder itself working as the workflow changes: record every journey afresh
    # and replay it (what a developer does after an intentional, patched change).
    written = await record(time_env, list(JOURNEYS), tmp_path)
    replayer = Replayer(
        workflows=[ShipmentWorkflow], data_converter=replay_converter(), workflow_runner=strict_workflow_runner()
    )
    for path in written:
        await replayer.replay_workflow(load(path), raise_on_replay_failure=True)
