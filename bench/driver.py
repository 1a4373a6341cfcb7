"""Offering journeys at a rate, and knowing when they are done.

Open loop: journeys start at the offered rate (counted in journey events per second) whatever
the system's state, each journey sends its steps at their offsets (one after the other, never
overlapping), so a slow system builds a backlog instead of slowing the generator down. A journey
is done when the system has applied its final scan: the read model says `delivered` (pipeline)
or the skeleton's ShipmentStatus search attribute does (baseline).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.journeys import Journey, JourneyFactory
from bench.outbox import Outbox
from bench.targets import JourneyCtx, Sent

ASK_TIMEOUT = 20.0  # a customer gives up waiting for the NDR message (then answers anyway)


class Target(Protocol):
    name: str

    async def send(self, j: Journey, i: int, ctx: JourneyCtx) -> Sent | None: ...


# merchants → {(merchant, tracking number): when the system applied the journey's final scan}
Counter_ = Callable[[list[str]], Awaitable[dict[tuple[str, str], float]]]


@dataclass
class Started:
    journey: Journey
    t_wall: float
    label: str  # the phase step it belongs to (ramp step index or phase name)


@dataclass
class StepResult:
    label: str
    merchant: str
    target_rate: float
    t_start: float
    t_end: float
    journeys: int = 0
    events: int = 0
    completed_at_eval: int = 0  # journeys done in time
    eval_at: float = 0.0
    call_p90: float | None = None
    lag_p90: float | None = None
    ok: bool | None = None

    @property
    def achieved_rate(self) -> float:
        return self.events / max(1e-9, self.t_end - self.t_start)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "target_events_per_s": round(self.target_rate, 1),
            "achieved_events_per_s": round(self.achieved_rate, 1),
            "journeys": self.journeys,
            "applied_in_time": self.completed_at_eval,
            "call_p90_s": None if self.call_p90 is None else round(self.call_p90, 3),
            "apply_lag_p90_s": None if self.lag_p90 is None else round(self.lag_p90, 3),
            "kept_up": self.ok,
        }


@dataclass
class Load:
    name: str
    target: str
    started: list[Started] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    completions: list[tuple[float, int]] = field(default_factory=list)  # (when polled, journeys done)
    done: dict[tuple[str, str], float] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    t_begin: float = 0.0
    t_load_end: float = 0.0
    t_end: float = 0.0
    ask_waits: list[float] = field(default_factory=list)
    ask_missing: int = 0
    drained: bool = False
    cpu: dict[str, float] = field(default_factory=dict)
    paused_s: float = 0.0  # ramp: time between steps waiting for an earlier step's verdict

    def merchants(self) -> list[str]:
        return [s.merchant for s in self.steps]

    def journeys(self) -> int:
        return len(self.started)

    def events(self) -> int:
        return sum(s.journey.events for s in self.started)

    def completed(self) -> int:
        return len(self.done)

    def overshoots(self, label: str | None = None) -> list[float | None]:
        """Per journey (of one step, or all): how much later than planned its final scan was
        applied (seconds; None = not done). Includes slow API calls, which push every later
        step back, and the time the system took to apply the last scan."""
        out: list[float | None] = []
        for s in self.started:
            if label is not None and s.label != label:
                continue
            j = s.journey
            done = self.done.get((j.merchant_id, j.tracking_number))
            out.append(None if done is None else done - (s.t_wall + j.steps[j.final_step].at))
        return out

    def apply_lags(self) -> list[float]:
        """Final scan accepted (call returned) → applied by the workflow, seconds."""
        final_sent = {}
        by_index = {s.journey.index: s.journey for s in self.started}
        for x in self.sent:
            j = by_index.get(x.journey)
            if j is not None and x.step == j.final_step and x.ok:
                final_sent[(j.merchant_id, j.tracking_number)] = x.t_done
        return [max(0.0, self.done[k] - t) for k, t in final_sent.items() if k in self.done]


class Driver:
    def __init__(
        self,
        target: Target,
        counter: Counter_,
        outbox: Outbox | None,
        on_tick: Callable[[Load, str], None] | None = None,
        ask_timeout: float = ASK_TIMEOUT,
    ) -> None:
        self.target = target
        # How long a customer waits for the NDR message before answering anyway (the chaos run
        # waits longer: a killed worker delays the message by its heartbeat timeout and more).
        self.ask_timeout = ask_timeout
        self.counter = counter
        self.outbox = outbox
        self.on_tick = on_tick
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- one journey --------------------------------------------------------------------
    def start_journey(self, load: Load, j: Journey, t0_loop: float, t0_wall: float) -> None:
        """Run one journey in the background from (event-loop time, wall time) `t0_*` (its steps
        are offsets from there). The caller records it in `load.started`; `in_flight` and
        `drain` see it until its last step was sent."""
        self._spawn(self._journey(load, j, t0_loop, t0_wall))

    @property
    def in_flight(self) -> int:
        """Journeys started here whose steps are not all sent yet."""
        return len(self._tasks)

    async def _journey(self, load: Load, j: Journey, t0_loop: float, t0_wall: float) -> None:
        loop = asyncio.get_running_loop()
        ctx = JourneyCtx(t0_wall=t0_wall)
        shift = 0.0
        last_failed_push: float | None = None
        for i, st in enumerate(j.steps):
            due = t0_loop + st.at + shift
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if (
                st.kind == "reply"
                and st.wait_for_ask
                and self.outbox is not None
                and self.outbox.available
                and self.target.name == "pipeline"
            ):
                # The customer answers the message they got: wait for it, then take the delay.
                prev = j.steps[i - 1].at if i else 0.0
                think = st.at - prev
                asked_from = time.time()
                msg = await self.outbox.wait_for(
                    j.customer.phone, "ndr", after=(last_failed_push or t0_wall) - 0.05, timeout=self.ask_timeout
                )
                if msg is None:
                    msg = await self.outbox.wait_for(
                        j.customer.email, "ndr", after=(last_failed_push or t0_wall) - 0.05, timeout=0.5
                    )
                if msg is None:
                    load.ask_missing += 1
                else:
                    load.ask_waits.append(time.time() - asked_from)
                    wanted = loop.time() + think
                    shift = max(shift, wanted - (t0_loop + st.at))
                    await asyncio.sleep(think)
            sent = await self.target.send(j, i, ctx)
            if sent is not None:
                load.sent.append(sent)
                # A redelivered push asks nothing new: the question answers the first one (which
                # may already be in the outbox when the redelivery goes out).
                if st.scan is not None and st.scan.milestone == "delivery_failed" and not st.duplicate:
                    last_failed_push = sent.t_sent

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- offering load ------------------------------------------------------------------
    async def offer(
        self,
        load: Load,
        factory: JourneyFactory,
        first_index: int,
        rate: float,
        duration: float,
        label: str,
        max_in_flight: int = 4000,
        stop: asyncio.Event | None = None,
    ) -> tuple[StepResult, int]:
        """Start journeys at `rate` events/s for `duration` s. Returns the step and next index."""
        loop = asyncio.get_running_loop()
        step = StepResult(
            label=label, merchant=factory.merchant_id, target_rate=rate, t_start=time.time(), t_end=0.0
        )
        load.steps.append(step)
        start = loop.time()
        tokens = 0.0
        last = start
        index = first_index
        pending = factory.make(index)
        while True:
            now = loop.time()
            if now - start >= duration or (stop is not None and stop.is_set()):
                break
            tokens += (now - last) * rate
            last = now
            while tokens >= pending.events and len(self._tasks) < max_in_flight:
                tokens -= pending.events
                load.started.append(Started(pending, time.time(), label))
                step.journeys += 1
                step.events += pending.events
                self.start_journey(load, pending, loop.time(), time.time())
                index += 1
                pending = factory.make(index)
            await asyncio.sleep(0.01)
        step.t_end = time.time()
        return step, index

    async def register_only(
        self, load: Load, journeys: Iterable[Journey], concurrency: int, until: Callable[[], bool]
    ) -> None:
        """Closed loop: `concurrency` senders register shipments back to back (open shipments)."""
        it = iter(journeys)

        async def worker() -> None:
            for j in it:
                if until():
                    return
                load.started.append(Started(j, time.time(), "fill"))
                sent = await self.target.send(j, 0, JourneyCtx(t0_wall=time.time()))
                if sent is not None:
                    load.sent.append(sent)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    # ---- completion -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def tracking(self, load: Load, interval: float = 0.5):  # type: ignore[no-untyped-def]
        async def poll() -> None:
            while True:
                merchants = load.merchants()
                if merchants:
                    try:
                        load.done.update(await self.counter(merchants))
                        load.completions.append((time.time(), len(load.done)))
                    except Exception:  # noqa: BLE001 - a busy store misses one sample
                        pass
                if self.on_tick:
                    self.on_tick(load, "")
                await asyncio.sleep(interval)

        task = asyncio.create_task(poll())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                load.done.update(await self.counter(load.merchants()))
                load.completions.append((time.time(), len(load.done)))

    async def drain(self, load: Load, timeout: float) -> bool:
        """Wait for every journey's steps to be sent and every journey to be done."""
        deadline = time.time() + timeout
        while self._tasks and time.time() < deadline:
            await asyncio.sleep(0.2)
        while time.time() < deadline:
            if (
                load.completions
                and load.completed() >= load.journeys()
                and load.completions[-1][0] > time.time() - 1.5
            ):
                load.drained = True
                break
            await asyncio.sleep(0.25)
        return load.drained

    async def abandon(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t


def completion_rate(load: Load, t_from: float, t_to: float) -> float:
    """Journey events whose journey was completed between two times, per second."""
    if t_to <= t_from:
        return 0.0
    events = {(s.journey.merchant_id, s.journey.tracking_number): s.journey.events for s in load.started}
    total = sum(events.get(k, 0) for k, t in load.done.items() if t_from <= t < t_to)
    return total / (t_to - t_from)
