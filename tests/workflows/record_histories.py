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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.events import CarrierEvent, normalise_time
from ndrflow.codec import EncryptionCodec, converter_for, parse_keys
from tests.workflows.fakes import Fakes
from workflows.ids import shipment_workflow_id
from workflows.messages import (
    CUSTOMER_REPLY,
    CarrierEventsInput,
    CustomerReplyInput,
    CustomerReplyResult,
    RegisterInput,
    ShipmentProfile,
    ShipmentState,
    ShipmentWorkflowInput,
)
from workflows.ndr_policy import NdrPolicy
from workflows.sandbox import strict_workflow_runner
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy, policy_dict

HISTORIES = Path(__file__).parent / "histories"

# A fixed AES-256 key for recorded histories: test data, never used outside tests.
TEST_CODEC_KEYS = "replay-test-1:cmVwbGF5LXRlc3Qta2V5LW5vdC1hLXNlY3JldC0wMDE="

# Identifiable strings the journeys put where carriers and customers really put them (scan
# remarks, locations, reply text, a changed address). The PII test and the files are checked.
CUSTOMER_NAME = "Asha Rao"
CUSTOMER_PHONE = "+919876543210"
CUSTOMER_PHONE_LOCAL = "98765 43210"
CUSTOMER_EMAIL = "asha.rao@example.com"
CUSTOMER_ADDRESS = "12 MG Road, Indiranagar"
PII_STRINGS = (CUSTOMER_NAME, CUSTOMER_PHONE, CUSTOMER_PHONE_LOCAL, CUSTOMER_EMAIL, CUSTOMER_ADDRESS)
TZ = "Asia/Kolkata"

# Quiet hours off: a recording must not depend on the hour of day it was made at.
POLICY = ShipmentPolicy(quiet_hours=None, ndr=NdrPolicy(quiet_hours=""))


def replay_converter() -> DataConverter:
    return converter_for(EncryptionCodec(parse_keys(TEST_CODEC_KEYS)))


def shipment_id_for_journey(name: str) -> str:
    return f"shp_replay_{name}"


def fake_activities(fakes: Fakes | None = None) -> list[Callable[..., Any]]:
    """Every activity the shipment workflow calls, faked (tests/workflows/fakes.py)."""
    return (fakes or Fakes()).all()


# ---- journeys ----------------------------------------------------------------------------------
@dataclass
class Journey:
    """What a journey function gets: the environment, and helpers to drive one shipment."""

    env: WorkflowEnvironment
    client: Client
    task_queue: str
    shipment_id: str
    fakes: Fakes = field(default_factory=Fakes)
    handle: WorkflowHandle[Any, Any] | None = None
    grace_seconds: float = 3600
    started_at: datetime | None = None

    def profile(self, **kw: Any) -> ShipmentProfile:
        values: dict[str, Any] = dict(
            shipment_id=self.shipment_id,
            merchant_id="acme",
            carrier="generic",
            tracking_number="TRK1001",
            order_id="A-1001",
            payment_mode="cod",
            order_value="1299.00",
            locale="en-IN",
            timezone=TZ,
            has_phone=True,
            phone_is_mobile=True,
            has_email=True,
            whatsapp_opt_in=True,
        )
        values.update(kw)
        return ShipmentProfile(**values)

    def at(self, hours: float) -> str:
        """A carrier time `hours` after the journey started (the test server's clock)."""
        assert self.started_at is not None
        return normalise_time(self.started_at + timedelta(hours=hours))

    def local_date(self, days: int) -> str:
        assert self.started_at is not None
        return (self.started_at.astimezone(ZoneInfo(TZ)).date() + timedelta(days=days)).isoformat()

    def event(self, milestone: str, hours: float, event_id: str, **kw: Any) -> CarrierEvent:
        return CarrierEvent(
            carrier="generic",
            tracking_number="TRK1001",
            milestone=milestone,
            occurred_at=self.at(hours),
            event_id=event_id,
            **kw,
        )

    async def start(self, **profile_kw: Any) -> WorkflowHandle[Any, Any]:
        self.started_at = await self.env.get_current_time()
        self.handle = await self.client.start_workflow(
            ShipmentWorkflow.run,
            ShipmentWorkflowInput(shipment_id=self.shipment_id, completion_grace_seconds=self.grace_seconds),
            id=shipment_workflow_id(self.shipment_id),
            task_queue=self.task_queue,
            start_signal="register",
            start_signal_args=[
                RegisterInput(
                    profile=self.profile(**profile_kw), registered_at=self.at(0), policy=policy_dict(POLICY)
                )
            ],
            execution_timeout=timedelta(days=60),
        )
        return self.handle

    async def events(self, *events: CarrierEvent) -> None:
        assert self.handle is not None, "start the workflow first"
        await self.handle.signal("carrier_events", CarrierEventsInput(events=list(events)))

    async def reply(
        self, attempt: int, kind: str, action: str | None = None, **kw: Any
    ) -> CustomerReplyResult:
        assert self.handle is not None
        now = normalise_time(await self.env.get_current_time())
        inp = CustomerReplyInput(
            attempt=attempt, channel=kw.pop("channel", "sms"), received_at=now, kind=kind, action=action, **kw
        )
        return await self.handle.execute_update(CUSTOMER_REPLY, inp, result_type=CustomerReplyResult)

    async def skip(self, hours: float) -> None:
        await self.env.sleep(timedelta(hours=hours))

    async def until(self, check: Callable[[ShipmentState], bool], what: str = "condition") -> ShipmentState:
        """Wait until the workflow's state satisfies `check` (one workflow task per step keeps the
        recorded history close to what production sees)."""
        assert self.handle is not None
        for _ in range(300):
            state: ShipmentState = await self.handle.query(ShipmentWorkflow.state)
            if check(state):
                return state
            await asyncio.sleep(0.02)
        raise AssertionError(f"journey {self.shipment_id}: {what} never happened")

    async def case_state(self, attempt: int, *states: str) -> ShipmentState:
        return await self.until(
            lambda s: len(s.ndr_cases) >= attempt and s.ndr_cases[attempt - 1]["state"] in states,
            f"NDR case {attempt} in {'/'.join(states)}",
        )

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


@journey(
    "normal_delivery",
    "picked up, in transit twice (a duplicate and a late scan), out for delivery, delivered; grace period ends",
)
async def normal_delivery(j: Journey) -> None:
    await j.start()
    await j.events(
        j.event(
            "picked_up", 2, "e1", raw_code="PUD", raw_status="Picked up from seller", location="Mumbai Hub"
        )
    )
    await j.until(lambda s: s.status == "picked_up", "picked_up")
    await j.events(
        j.event("in_transit", 16, "e2", raw_code="IT", raw_status="In transit", location="Bhiwandi"),
        j.event(
            "in_transit",
            34,
            "e3",
            raw_code="IT",
            raw_status="Reached destination hub",
            location="Bengaluru Hub",
        ),
    )
    await j.until(lambda s: s.status_at == j.at(34), "second in_transit")
    await j.events(
        j.event(
            "in_transit", 16, "e2", raw_code="IT", raw_status="In transit", location="Bhiwandi"
        ),  # duplicate
        j.event("picked_up", 1, "e0", raw_code="PUD", raw_status="Manifested", location="Mumbai"),  # late
    )
    await j.until(lambda s: sum(t.kind == "carrier_event" for t in s.timeline) == 4, "late scan recorded")
    await j.events(
        j.event(
            "out_for_delivery",
            44,
            "e4",
            raw_code="OFD",
            raw_status=f"Out for delivery to {CUSTOMER_NAME}",
            location="Indiranagar",
        )
    )
    await j.until(lambda s: s.status == "out_for_delivery", "out_for_delivery")
    await j.events(
        j.event(
            "delivered",
            47,
            "e5",
            raw_code="DL",
            raw_status=f"Delivered to {CUSTOMER_NAME}",
            location="Indiranagar",
        )
    )
    state = await j.finish()
    assert state.status == "delivered", state.status


@journey(
    "ndr_answered",
    "delivery fails (customer unavailable); the customer picks 2 then a date by SMS; the carrier gets one reschedule; delivered",
)
async def ndr_answered(j: Journey) -> None:
    await j.start()
    await j.events(
        j.event("picked_up", 2, "e1"), j.event("in_transit", 16, "e2"), j.event("out_for_delivery", 40, "e3")
    )
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(
        j.event(
            "delivery_failed",
            43,
            "e4",
            ndr_reason="customer_unavailable",
            raw_code="EOD-74",
            raw_status=f"Consignee {CUSTOMER_NAME} not available at {CUSTOMER_ADDRESS}; called {CUSTOMER_PHONE_LOCAL}",
        )
    )
    await j.case_state(1, "asking")
    first = await j.reply(1, "choice", "reschedule", text="2", message_id="SM-r1")
    assert first.outcome == "awaiting_date", first
    second = await j.reply(
        1,
        "date",
        "reschedule",
        requested_date=j.local_date(2),
        time_hint="after 17:00",
        message_id="SM-r2",
        text=f"Saturday after 5pm please, call me on {CUSTOMER_PHONE} or mail {CUSTOMER_EMAIL}",
    )
    assert second.outcome == "decided", second
    await j.case_state(1, "instructed")
    await j.skip(30)
    await j.events(j.event("out_for_delivery", 70, "e5"))
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(
        j.event("delivered", 72, "e6", raw_status=f"Delivered to {CUSTOMER_NAME} at {CUSTOMER_ADDRESS}")
    )
    state = await j.finish()
    assert state.status == "delivered" and [i.instruction.action for i in j.fakes.instructions] == [
        "reschedule"
    ]


@journey(
    "ndr_unanswered",
    "delivery fails; nobody answers: two reminders, the cutoff, the merchant's default rule (reattempt); delivered",
)
async def ndr_unanswered(j: Journey) -> None:
    await j.start()
    await j.events(j.event("picked_up", 2, "e1"), j.event("out_for_delivery", 30, "e2"))
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(j.event("delivery_failed", 33, "e3", ndr_reason="customer_unreachable", raw_code="EOD-11"))
    await j.case_state(1, "asking")
    await j.skip(30)  # past both reminders and the next morning's cutoff
    await j.case_state(1, "instructed", "decided")
    await j.events(j.event("out_for_delivery", 60, "e4"))
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(j.event("delivered", 62, "e5"))
    state = await j.finish()
    assert state.status == "delivered"
    assert [i.instruction.action for i in j.fakes.instructions] == ["reattempt"]
    assert "ndr_reminder" in j.fakes.purposes()


@journey(
    "rto",
    "first failure: the customer changes the address; second failure: the customer asks for return; RTO delivered",
)
async def rto(j: Journey) -> None:
    await j.start()
    await j.events(j.event("picked_up", 2, "e1"), j.event("out_for_delivery", 30, "e2"))
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(j.event("delivery_failed", 33, "e3", ndr_reason="address_issue", raw_code="EOD-6"))
    await j.case_state(1, "asking")
    await j.reply(
        1,
        "address",
        "update_address",
        address={"line1": CUSTOMER_ADDRESS, "city": "Bengaluru", "postal_code": "560038"},
        text=f"my address is {CUSTOMER_ADDRESS}, Bengaluru 560038",
        message_id="SM-a1",
    )
    await j.case_state(1, "instructed")
    await j.events(j.event("out_for_delivery", 56, "e4"))
    await j.until(lambda s: s.status == "out_for_delivery")
    await j.events(j.event("delivery_failed", 58, "e5", ndr_reason="customer_refused", raw_code="EOD-3"))
    await j.case_state(2, "asking")
    await j.reply(2, "rto", "rto", text="4", message_id="SM-a2")
    await j.case_state(2, "instructed")
    await j.events(j.event("rto_initiated", 70, "e6"), j.event("rto_in_transit", 80, "e7"))
    await j.until(lambda s: s.status == "rto_in_transit")
    await j.events(j.event("rto_delivered", 120, "e8"))
    state = await j.finish()
    assert state.status == "rto_delivered"
    assert [i.instruction.action for i in j.fakes.instructions] == ["update_address", "rto"]


# ---- running -----------------------------------------------------------------------------------
async def run_journey(
    env: WorkflowEnvironment,
    spec: JourneySpec,
    *,
    client: Client | None = None,
    task_queue: str | None = None,
    shipment_id: str | None = None,
) -> WorkflowHandle[Any, Any]:
    """Run one journey to its end with a worker on `client` (default: the environment's; its data
    converter is the one used)."""
    client = client or env.client
    queue = task_queue or f"journey-{spec.name}"
    ctx = Journey(
        env=env,
        client=client,
        task_queue=queue,
        shipment_id=shipment_id or shipment_id_for_journey(spec.name),
    )
    with ThreadPoolExecutor(8) as pool:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[ShipmentWorkflow],
            activities=fake_activities(ctx.fakes),
            activity_executor=pool,
            workflow_runner=strict_workflow_runner(),
        ):
            await spec.run(ctx)
    assert ctx.handle is not None
    return ctx.handle


def codec_client(client: Client, converter: DataConverter | None = None) -> Client:
    config = client.config()
    config["data_converter"] = converter or replay_converter()
    return Client(**config)


async def record(env: WorkflowEnvironment, names: Sequence[str], out_dir: Path) -> list[Path]:
    """Record `names` with the test key on `env`'s server; returns the files written."""
    sealed = codec_client(env.client)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        handle = await run_journey(env, JOURNEYS[name], client=sealed)
        history = await handle.fetch_history()
        path = out_dir / f"{name}.json"
        path.write_text(history.to_json() + "\n")
        written.append(path)
    return written


async def _main(names: Sequence[str], out_dir: Path) -> list[Path]:
    from tests.conftest import register_search_attributes, venv_binary

    written: list[Path] = []
    for name in names:  # one server per journey, as the tests do: nothing holds another's clock
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=venv_binary("temporal-test-server")
        )
        try:
            await register_search_attributes(env.client)
            written += await record(env, [name], out_dir)
        finally:
            await env.shutdown()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
