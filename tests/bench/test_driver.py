"""The driver's customer: answers the NDR question it received, whatever else the carrier sent."""

from __future__ import annotations

import asyncio
import time
from datetime import date

from bench.driver import Driver, Load, Started
from bench.journeys import JourneyFactory, Mix, Timing
from bench.outbox import Message
from bench.targets import Sent

QUICK = Timing(
    gap=(0.01, 0.01),
    reply_delay=(0.3, 0.3),
    followup_delay=(0.01, 0.01),
    reattempt_delay=(0.01, 0.01),
    dup_delay=(0.1, 0.1),
    lag=(0.0, 0.0),
)


class AskingTarget:
    """The system: the NDR question reaches the outbox right after the failed-delivery push."""

    name = "pipeline"

    def __init__(self, outbox: FakeOutbox) -> None:
        self.outbox = outbox

    async def send(self, j, i, ctx):  # type: ignore[no-untyped-def]
        st = j.steps[i]
        t = time.time()
        if st.scan is not None and st.scan.milestone == "delivery_failed" and not st.duplicate:
            await asyncio.sleep(0.02)
            self.outbox.messages.append(Message(j.customer.phone, "ndr_ask", time.time()))
        return Sent(j.index, i, st.kind, t, time.time(), True, 200)


class FakeOutbox:
    available = True

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def wait_for(self, to: str, prefix: str, after: float, timeout: float) -> Message | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.messages:
                if m.to == to and m.purpose.startswith(prefix) and m.created_at >= after:
                    return m
            await asyncio.sleep(0.01)
        return None


async def test_a_redelivered_failed_delivery_push_does_not_hide_the_question_already_asked() -> None:
    factory = JourneyFactory(
        seed=3, run_tag="drv", merchant_id="m", today=date(2026, 1, 5), mix=Mix(duplicate_rate=1.0), timing=QUICK
    )
    j = factory.make(0, kind="ndr_1")
    failed = [s for s in j.steps if s.scan is not None and s.scan.milestone == "delivery_failed"]
    assert [s.duplicate for s in failed] == [False, True]  # the carrier sent it twice
    outbox = FakeOutbox()
    driver = Driver(AskingTarget(outbox), counter=None, outbox=outbox, ask_timeout=0.5)  # type: ignore[arg-type]
    load = Load("t", "pipeline")
    load.started.append(Started(j, time.time(), "t"))
    loop = asyncio.get_running_loop()
    driver.start_journey(load, j, loop.time(), time.time())
    while driver.in_flight:
        await asyncio.sleep(0.02)
    assert load.ask_missing == 0
    assert len(load.ask_waits) == 1
