"""Record representative ShipmentWorkflow journeys as history files for the replay test.

    python -m tests.workflows.record_histories            # every journey
    python -m tests.workflows.record_histories normal_delivery --out /tmp/h

Each journey runs on the time-skipping test server with fake activities and writes
`tests/workflows/histories/<name>.json` (`WorkflowHistory.to_json()`). Payloads are sealed with a
fixed test key (TEST_CODEC_KEYS, test data only), so the files hold no readable personal data
while `tests/workflows/test_replay.py` can still replay them. The workflow id of a recording is
`shipment-shp_replay_<name>`; the replay test derives it from the file name.

Adding a journey: write an `async def` taking a `Journey` context, drive the workflow through its
signals/updates (and `ctx.until(...)` to let each step be processed), decorate it with
`@journey("name", "what it shows")`, run this module, commit the new JSON file. Fake activities
for the journeys live in FAKE_ACTIVITIES (add the NDR/notification ones as those land).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from domain.events import CarrierEvent
from ndrflow.codec import EncryptionCodec, converter_for, parse_keys
from workflows.ids import shipment_workflow_id
from workflows.messages import (
    SYNC_READ_MODEL,
    CarrierEventsInput,
    RegisterInput,
    ShipmentProfile,
    ShipmentState,
    ShipmentWorkflowInput,
    SyncReadModelInput,
)
from workflows.shipment import ShipmentWorkflow

HISTORIES = Path(__file__).parent / "histories"

# A fixed AES-256 key for recorded histories: test data, never used outside tests.
TEST_CODEC_KEYS = "replay-test-1:cmVwbGF5LXRlc3Qta2V5LW5vdC1hLXNlY3JldC0wMDE="

# Identifiable strings the journeys put where carriers really put them (scan remarks and
# locations). The PII test and the history files are checked for them.
CUSTOMER_NAME = "Asha Rao"
CUSTOMER_PHONE = "+919876543210"
CUSTOMER_PHONE_LOCAL = "98765 43210"
CUSTOMER_EMAIL = "asha.rao@example.com"
CUSTOMER_ADDRESS = "12 MG Road, Indiranagar"
PII_STRINGS = (CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_PHONE_LOCAL, CUSTOMER_EMAIL, CUSTOMER_ADDRESS)


def replay_converter() -> DataConverter:
    return converter_for(EncryptionCodec(parse_keys(TEST_CODEC_KEYS)))


def shipment_id_for_journey(name: str) -> str:
    return f"shp_replay_{name}"


# ---- fake activities ---------------------------------------------------------------------------
class FakeReadModel:
    def __init__(self) -> None:
        self.calls: list[SyncReadModelInput] = []

    @activity.defn(name=SYNC_READ_MODEL)
    def sync(self, inp: SyncReadModelInput) -> None:
        self.calls.append(inp)


def fake_activities() -> list[Callable[..., Any]]:
    """Every activity the journeys' workflows call, faked. NDR journeys add theirs here."""
    return [FakeReadModel().sync]


# ---- journeys ----------------------------------------------------------------------------------
@dataclass
class Journey:
    """What a journey function gets: a client, a task queue, and helpers to drive one shipment."""

    client: Client
    task_queue: str
    shipment_id: str
    handle: WorkflowHandle[Any, Any] | None = None
    grace_seconds: float = 3600

    def profile(self, **kw: Any) -> ShipmentProfile:
        values: dict[str, Any] = dict(
            shipment_id=self.shipment_id, merchant_id="acme", carrier="generic", tracking_number="TRK1001",
            order_id="A-1001", payment_mode="cod", order_value="1299.00", locale="en-IN", timezone="Asia/Kolkata",
            has_phone=True, phone_is_mobile=True, has_email=True, whatsapp_opt_in=True,
        )
        values.update(kw)
        return ShipmentProfile(**values)

    def event(self, milestone: str, at: str, event_id: str, **kw: Any) -> CarrierEvent:
        return CarrierEvent(carrier="generic", tracking_number="TRK1001", milestone=milestone, occurred_at=at, event_id=event_id, **kw)

    async def start(self, signal: str, arg: Any) -> WorkflowHandle[Any, Any]:
        self.handle = await self.client.start_workflow(
            ShipmentWorkflow.run,
            ShipmentWorkflowInput(shipment_id=self.shipment_id, completion_grace_seconds=self.grace_seconds),
            id=shipment_workflow_id(self.shipment_id),
            task_queue=self.task_queue,
            start_signal=signal,
            start_signal_args=[arg],
        )
        return self.handle

    async def signal(self, name: str, arg: Any) -> None:
        assert self.handle is not None, "start the workflow first"
        await self.handle.signal(name, arg)

    async def events(self, *events: CarrierEvent) -> None:
        await self.signal("carrier_events", CarrierEventsInput(events=list(events)))

    async def until(self, check: Callable[[ShipmentState], bool], what: str = "condition") -> ShipmentState:
        """Wait until the workflow's state satisfies `check` (one workflow task per step keeps the
        recorded history close to what production sees)."""
        assert self.handle is not None
        for _ in range(200):
            state: ShipmentState = await self.handle.query(ShipmentWorkflow.state)
            if check(state):
                return state
            await asyncio.sleep(0.02)
        raise AssertionError(f"journey {self.shipment_id}: {what} never happened")

    async def finish(self) -> ShipmentState:
        assert self.handle is not None
        return await self.handle.result()  # the time-skipping server jumps through timers


JourneyFn = Callable[[Journey], Awaitable[None]]


@dataclass(frozen=True)
class JourneySpec:
    name: str
    description: str
    run: JourneyFn = field(repr=False)


JOURNEYS: dict[str, JourneySpec] = {}


def journey(name: str, description: str) -> Callable[[JourneyFn], JourneyFn]:
    def register(fn: JourneyFn) -> JourneyFn:
        JOURNEYS[name] = JourneySpec(name, description, fn)
        return fn

    return register


@journey("normal_delivery", "registered, picked up, in transit twice (one duplicate, one late scan), out for delivery, delivered; the grace period ends")
async def normal_delivery(j: Journey) -> None:
    await j.start("register", RegisterInput(profile=j.profile(), registered_at="2026-11-26T10:00:00.000000Z"))
    await j.events(j.event("picked_up", "2026-11-26T12:00:00.000000Z", "e1", raw_code="PUD", raw_status="Picked up from seller", location="Mumbai Hub"))
    await j.until(lambda s: s.status == "picked_up", "picked_up")
    await j.events(
        j.event("in_transit", "2026-11-27T02:00:00.000000Z", "e2", raw_code="IT", raw_status="In transit", location="Bhiwandi"),
        j.event("in_transit", "2026-11-27T20:00:00.000000Z", "e3", raw_code="IT", raw_status="Reached destination hub", location="Bengaluru Hub"),
    )
    await j.until(lambda s: s.status_at == "2026-11-27T20:00:00.000000Z", "second in_transit")
    # A duplicate and a late pickup scan: kept out of the status, one of them in the timeline.
    await j.events(
        j.event("in_transit", "2026-11-27T02:00:00.000000Z", "e2", raw_code="IT", raw_status="In transit", location="Bhiwandi"),
        j.event("picked_up", "2026-11-26T11:00:00.000000Z", "e0", raw_code="PUD", raw_status="Manifested", location="Mumbai"),
    )
    await j.until(lambda s: len(s.timeline) == 5, "late scan recorded")
    await j.events(
        j.event(
            "out_for_delivery", "2026-11-28T03:40:00.000000Z", "e4", raw_code="OFD",
            raw_status=f"Out for delivery to {CUSTOMER_NAME}, {CUSTOMER_ADDRESS}; call {CUSTOMER_PHONE_LOCAL}",
            location="Indiranagar",
        )
    )
    await j.until(lambda s: s.status == "out_for_delivery", "out_for_delivery")
    await j.events(
        j.event(
            "delivered", "2026-11-28T06:15:00.000000Z", "e5", raw_code="DL",
            raw_status=f"Delivered to {CUSTOMER_NAME} ({CUSTOMER_PHONE}, {CUSTOMER_EMAIL}) at {CUSTOMER_ADDRESS}",
            location=CUSTOMER_ADDRESS,
        )
    )
    state = await j.finish()
    assert state.status == "delivered", state.status


# ---- running -----------------------------------------------------------------------------------
async def run_journey(client: Client, spec: JourneySpec, *, task_queue: str | None = None, shipment_id: str | None = None) -> WorkflowHandle[Any, Any]:
    """Run one journey to its end with a worker on `client` (whose data converter is used)."""
    queue = task_queue or f"journey-{spec.name}"
    ctx = Journey(client=client, task_queue=queue, shipment_id=shipment_id or shipment_id_for_journey(spec.name))
    with ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[ShipmentWorkflow], activities=fake_activities(), activity_executor=pool):
            await spec.run(ctx)
    assert ctx.handle is not None
    return ctx.handle


def codec_client(client: Client, converter: DataConverter | None = None) -> Client:
    config = client.config()
    config["data_converter"] = converter or replay_converter()
    return Client(**config)


async def record(client: Client, names: Sequence[str], out_dir: Path) -> list[Path]:
    """Record `names` with the test key on `client`'s server; returns the files written."""
    sealed = codec_client(client)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        handle = await run_journey(sealed, JOURNEYS[name])
        history = await handle.fetch_history()
        path = out_dir / f"{name}.json"
        path.write_text(history.to_json() + "\n")
        written.append(path)
    return written


async def _main(names: Sequence[str], out_dir: Path) -> list[Path]:
    from temporalio.testing import WorkflowEnvironment

    from tests.conftest import register_search_attributes, venv_binary

    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=venv_binary("temporal-test-server"))
    try:
        await register_search_attributes(env.client)
        return await record(env.client, names, out_dir)
    finally:
        await env.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("journeys", nargs="*", help=f"default: all of {', '.join(JOURNEYS)}")
    parser.add_argument("--out", type=Path, default=HISTORIES, help="directory for the JSON files")
    args = parser.parse_args(argv)
    unknown = [n for n in args.journeys if n not in JOURNEYS]
    if unknown:
        parser.error(f"unknown journey(s) {', '.join(unknown)}; known: {', '.join(JOURNEYS)}")
    for path in asyncio.run(_main(args.journeys or list(JOURNEYS), args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    code = main()
    # The SDK's core runtime threads can abort the interpreter's final teardown after the test
    # server is gone; everything is written and flushed by now, so leave without it.
    sys.stdout.flush()
    os._exit(code)
