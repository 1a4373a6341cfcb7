"""The engine baseline: a skeleton shipment workflow that makes the same Temporal calls as
ShipmentWorkflow for the same journey, with empty bodies.

What "the same" means is not written by hand: bench/shape.py reads a real journey's history and
records, per incoming message, the commands the real workflow issued (upserts, local activities,
activities, timers, children). This workflow replays those commands for every message it gets:
same signal-with-start and signals from the client, same updates for customer replies, same
number of local activities, activities and timers, on the same dev server, a separate task queue
and the same worker options (ndrflow.worker.worker_tuning). Like the real workflow it applies
messages that queued up while it was busy as one batch (one search-attribute upsert and one
read-model write per batch; activities and timers per message).

The activities only note when they ran (for the latency ratios): no store, no providers.

Run as its own process, like the real worker runs in its own (`ndrflow up`):

    python -m bench.baseline --address 127.0.0.1:7233 --task-queue bl --plans plans.json --log act.jsonl
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from bench import plans
    from bench.shape import classify_activity, lookup

BASELINE_WORKFLOW = "BaselineShipmentWorkflow"
BASELINE_CHILD = "BaselineChildWorkflow"
ACTIVITY = "bl_activity"
LOCAL_ACTIVITY = "bl_local"
TIMEOUT = timedelta(seconds=30)

# The same search attributes the real workflow keeps (registered on the dev server by `ndrflow up`).
SHIPMENT_STATUS = SearchAttributeKey.for_keyword("ShipmentStatus")
CARRIER = SearchAttributeKey.for_keyword("Carrier")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
NDR_STATE = SearchAttributeKey.for_keyword("NdrState")
NDR_ATTEMPTS = SearchAttributeKey.for_int("NdrAttempts")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
ATTENTION_REASON = SearchAttributeKey.for_keyword("AttentionReason")

# Only so that a late scan does not move the skeleton's status back (completion is counted on
# ShipmentStatus='delivered'); a copy of domain.taxonomy's ranks, kept tiny on purpose.
RANK = {
    "created": 0,
    "picked_up": 2,
    "in_transit": 3,
    "out_for_delivery": 4,
    "delivery_failed": 4,
    "delivered": 10,
}


def notify_queue(task_queue: str) -> str:
    """The baseline's twin of ndrflow's rate-limited provider queue (NDRFLOW_NOTIFY_TASK_QUEUE)."""
    return f"{task_queue}-notify"


@dataclass
class BaselineInput:
    shipment_id: str
    kind: str  # which plan (bench/shape.py) to replay: normal, ndr_1, ...
    merchant_id: str
    carrier: str


# ---- activities: note the time and return ---------------------------------------------------
# (time, workflow_id, trigger, name, "act"|"la", shipment status after the batch). The benchmark
# tails this log: activity start times give the latencies, the status says when a journey is
# done (the real pipeline is read from its read model, not from Temporal visibility, so neither
# side's completion polling loads the dev server).
ACTIVITY_LOG: list[tuple[float, str, str, str, str, str]] = []


@activity.defn(name=ACTIVITY)
def bl_activity(arg: dict[str, Any]) -> None:
    ACTIVITY_LOG.append((time.time(), arg["wid"], arg["key"], arg["name"], "act", arg.get("status", "")))


@activity.defn(name=LOCAL_ACTIVITY)
def bl_local(arg: dict[str, Any]) -> None:
    ACTIVITY_LOG.append((time.time(), arg["wid"], arg["key"], arg["name"], "la", arg.get("status", "")))


# ---- workflows ----------------------------------------------------------------------------------
@workflow.defn(name=BASELINE_CHILD)
class BaselineChildWorkflow:
    @workflow.run
    async def run(self, arg: dict[str, Any]) -> None:
        return None


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineShipmentWorkflow:
    def __init__(self) -> None:
        self._inbox: list[tuple[str, dict[str, Any], int | None]] = []
        self._done: set[int] = set()
        self._tickets = 0
        self._timers: list[asyncio.Task[None]] = []
        self._status = "created"
        self._triggers: dict[str, list[list[Any]]] = {}
        self._inp: BaselineInput | None = None
        # Like the real handler (bench/shape.py `update_at_once`): answer in the accepting task
        # and let the main loop run what the reply caused, or answer once that has run.
        self._update_at_once = False

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        data = self._decode(args)
        self._inbox.append((str(data.get("_key") or f"signal:{name}"), data, None))

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> dict[str, Any]:
        data = self._decode(args)
        ticket = self._tickets
        self._tickets += 1
        self._inbox.append((str(data.get("_key") or f"update:{name}#1"), data, ticket))
        if not self._update_at_once:
            await workflow.wait_condition(lambda: ticket in self._done)
        return {"accepted": True}

    @workflow.run
    async def run(self, inp: BaselineInput) -> None:
        self._inp = inp
        plan = plans.PLANS.get(inp.kind) or plans.PLANS.get("normal") or {"triggers": {}}
        self._triggers = plan["triggers"]
        self._update_at_once = bool(plan.get("update_at_once"))
        await self._perform([("start", {}, None)])
        while True:
            await workflow.wait_condition(lambda: bool(self._inbox))
            batch, self._inbox = self._inbox, []
            await self._perform(batch)
            self._done.update(t for _, _, t in batch if t is not None)

    # ---- replaying commands -------------------------------------------------------------
    async def _perform(self, batch: list[tuple[str, dict[str, Any], int | None]]) -> None:
        before = self._status
        for _, data, _ in batch:
            for m in data.get("milestones", ()):
                if RANK.get(m, -1) >= RANK.get(self._status, 0):
                    self._status = m
        upserted = False
        local_done: set[str] = set()
        for key, _, _ in batch:
            cmds = lookup(self._triggers, key)
            i = 0
            while i < len(cmds):
                cmd = cmds[i]
                op = cmd[0]
                if op == "upsert":
                    if not upserted:
                        self._upsert()
                        upserted = True
                elif op == "la":
                    # A batch writes the read model once (like the real workflow), but every
                    # message's notification or instruction is its own local activity.
                    if cmd[1] not in local_done or classify_activity(cmd[1]) != "other":
                        local_done.add(cmd[1])
                        await workflow.execute_local_activity(
                            LOCAL_ACTIVITY,
                            self._arg(key, cmd[1]),
                            start_to_close_timeout=TIMEOUT,
                            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
                        )
                elif op == "act":
                    group = [cmd]
                    while i + 1 < len(cmds) and cmds[i + 1][0] == "act" and cmds[i + 1][2] == cmd[2]:
                        i += 1
                        group.append(cmds[i])
                    await asyncio.gather(
                        *(
                            workflow.execute_activity(
                                ACTIVITY,
                                self._arg(key, c[1]),
                                start_to_close_timeout=TIMEOUT,
                                task_queue=notify_queue(workflow.info().task_queue)
                                if c[3:] == ["notify"]
                                else None,
                            )
                            for c in group
                        )
                    )
                elif op == "timer":
                    self._timers.append(asyncio.create_task(workflow.sleep(float(cmd[1]))))
                elif op == "cancel_timer":
                    live = [t for t in self._timers if not t.done()]
                    if live:
                        live[0].cancel()
                    self._timers = live[1:]
                elif op == "child":
                    await workflow.start_child_workflow(
                        BASELINE_CHILD,
                        {},
                        id=f"{workflow.info().workflow_id}-child-{workflow.info().get_current_history_length()}",
                        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    )
                i += 1
        # Completion is counted on ShipmentStatus='delivered': never miss it, even if a plan
        # attributed the real workflow's upsert to another message.
        if self._status != before and self._status == "delivered" and not upserted:
            self._upsert()

    def _upsert(self) -> None:
        assert self._inp is not None
        workflow.upsert_search_attributes(
            [
                SHIPMENT_STATUS.value_set(self._status),
                NDR_ATTEMPTS.value_set(0),
                NEEDS_ATTENTION.value_set(False),
                CARRIER.value_set(self._inp.carrier),
                MERCHANT_ID.value_set(self._inp.merchant_id),
                NDR_STATE.value_unset(),
                ATTENTION_REASON.value_unset(),
            ]
        )

    def _arg(self, key: str, name: str) -> dict[str, Any]:
        return {"wid": workflow.info().workflow_id, "key": key, "name": name, "status": self._status}

    @staticmethod
    def _decode(args: Sequence[RawValue]) -> dict[str, Any]:
        if not args:
            return {}
        value = workflow.payload_converter().from_payload(args[0].payload, dict)
        return value if isinstance(value, dict) else {}


# ---- the worker process -------------------------------------------------------------------------
async def serve(
    address: str, namespace: str, task_queue: str, plans_path: str, log_path: str, notify_per_second: float
) -> None:
    import json
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    from ndrflow.worker import activity_executor_for, worker_tuning

    plans.load(plans_path)
    client = await Client.connect(address, namespace=namespace)
    options = worker_tuning()
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BaselineShipmentWorkflow, BaselineChildWorkflow],
        activities=[bl_activity, bl_local],
        activity_executor=activity_executor_for(options),
        **options,
    )
    # Like ndrflow's notify worker (activities.notify.notify_worker): its own queue, default worker
    # options, and the server-enforced rate limit providers impose.
    notify = Worker(
        client,
        task_queue=notify_queue(task_queue),
        activities=[bl_activity],
        activity_executor=activity_executor_for(options),
        max_task_queue_activities_per_second=notify_per_second,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    written = 0

    def flush() -> None:
        nonlocal written
        entries = ACTIVITY_LOG[written:]
        if entries:
            with open(log_path, "a") as f:
                f.writelines(json.dumps(e) + "\n" for e in entries)
            written += len(entries)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.2)
            flush()

    async with worker, notify:
        task = asyncio.create_task(flusher())
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
    flush()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--plans", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--notify-per-second", type=float, default=10.0)
    a = p.parse_args()
    asyncio.run(serve(a.address, a.namespace, a.task_queue, a.plans, a.log, a.notify_per_second))


if __name__ == "__main__":
    main()
