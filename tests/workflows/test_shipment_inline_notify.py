"""Notifications sent inside the workflow task that decided them (a local activity), and the fall
back to the rate-limited notify queue (workflows/shipment.py `_send_inline`). Fake activities
script the inline path: it sends, declines (no budget, provider busy), fails before sending, or
sends and then fails (the worker died before the marker was recorded)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.workflows.fakes import Fakes, ev, new_id, profile, worker
from workflows.ids import shipment_workflow_id
from workflows.messages import (
    CarrierEventsInput,
    RegisterInput,
    SendNotificationInput,
    ShipmentState,
    ShipmentWorkflowInput,
)
from workflows.ndr_policy import NdrPolicy
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy, policy_dict

pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_QUIET = ShipmentPolicy(quiet_hours="", ndr=NdrPolicy(quiet_hours=""))


async def until(handle: WorkflowHandle[Any, Any], check: Any, timeout: float = 10.0) -> ShipmentState:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st: ShipmentState = await handle.query(ShipmentWorkflow.state)
        if check(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; notifications={st.notifications}")
        await asyncio.sleep(0.05)


async def begin(client: Client, task_queue: str, *, inline: bool = True, **profile_kw: Any) -> WorkflowHandle[Any, Any]:
    sid = new_id()
    return await client.start_workflow(
        ShipmentWorkflow.run,
        ShipmentWorkflowInput(shipment_id=sid, notify_inline=inline),
        id=shipment_workflow_id(sid),
        task_queue=task_queue,
        start_signal="register",
        start_signal_args=[RegisterInput(profile=profile(sid, **profile_kw), registered_at="2026-11-27T00:00:00Z", policy=policy_dict(NO_QUIET))],
    )


async def history_counts(handle: WorkflowHandle[Any, Any]) -> tuple[list[str], list[str]]:
    """(activity types scheduled on task queues, local activity types recorded as markers)."""
    hist = await handle.fetch_history()
    scheduled, local = [], []
    for e in hist.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            data = e.marker_recorded_event_attributes.details["data"].payloads[0].data
            local.append(data.split(b'"activity_type":"', 1)[1].split(b'"', 1)[0].decode())
    return scheduled, local


async def test_a_milestone_message_goes_inline_with_the_read_model_write(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        st = await until(h, lambda s: len(s.notifications) == 1)
        assert st.notifications[0]["status"] == "sent" and [s.purpose for s in fakes.sent] == ["picked_up"]
        assert fakes.queued() == []
        scheduled, local = await history_counts(h)
        # No regular activity, and the status change reached the store inside the send's local
        # activity rather than in one of its own.
        assert "send_notification" not in scheduled
        assert local.count("send_notification_inline") == 1 and "sync_read_model" not in local
        assert [r.status for r in fakes.read_model] == ["picked_up"]


async def test_no_budget_means_the_notify_queue_sends_it_once(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes(inline_mode=lambda inp: "decline")
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        st = await until(h, lambda s: len(s.notifications) == 1)
        key = st.notifications[0]["key"]
        assert fakes.attempts == [("inline", key), ("queue", key)]
        assert len(fakes.sent) == 1 and st.notifications[0]["status"] == "sent"
        scheduled, _ = await history_counts(h)
        assert scheduled == ["send_notification"]
        # The declined local activity still wrote the read model: not written a second time.
        assert [r.status for r in fakes.read_model] == ["picked_up"]


@pytest.mark.parametrize("mode", ["error", "send_then_error"])
async def test_a_failed_local_activity_falls_back_and_the_customer_gets_one_message(
    time_env: WorkflowEnvironment, task_queue: str, mode: str
) -> None:
    # "send_then_error": the provider took it, then the local activity failed (as when the worker
    # dies before the marker is recorded). The queue's activity sees the key already sent.
    fakes = Fakes(inline_mode=lambda inp: mode)
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        st = await until(h, lambda s: len(s.notifications) == 1)
        key = st.notifications[0]["key"]
        assert fakes.attempts == [("inline", key), ("queue", key)]
        assert [s.key for s in fakes.sent] == [key]
        assert st.notifications[0]["status"] == "sent"
        # Nothing the failed local activity did counts: the read model is written on its own.
        await until(h, lambda s: True)
        assert fakes.read_model and fakes.read_model[-1].status == "picked_up"


async def test_fallback_channels_work_the_same_inline(time_env: WorkflowEnvironment, task_queue: str) -> None:
    # WhatsApp refused inline (a permanent failure is a result, not an error): SMS next, also inline.
    fakes = Fakes(channel_result=lambda inp: "failed" if inp.channel == "whatsapp" else "sent")
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue, whatsapp_opt_in=True)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T03:00:00+00:00", "c")]))
        st = await until(h, lambda s: len(s.notifications) == 2)
        assert [(s.channel, s.purpose) for s in fakes.sent] == [("whatsapp", "out_for_delivery"), ("sms", "out_for_delivery")]
        assert [n["status"] for n in st.notifications] == ["failed", "sent"]
        assert fakes.queued() == []


async def test_a_mixed_journey_never_sends_a_key_twice(time_env: WorkflowEnvironment, task_queue: str) -> None:
    # Every other message is declined inline: each message is still sent exactly once.
    calls: dict[str, int] = {}

    def mode(inp: SendNotificationInput) -> str:
        calls[inp.key] = calls.get(inp.key, 0) + 1
        return "decline" if len(calls) % 2 == 0 else "send"

    fakes = Fakes(inline_mode=mode)
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue)
        for i, (m, at) in enumerate([("picked_up", "2026-11-27T05:00:00+00:00"), ("out_for_delivery", "2026-11-28T03:00:00+00:00"),
                                      ("delivered", "2026-11-28T07:00:00+00:00")]):
            await h.signal("carrier_events", CarrierEventsInput(events=[ev(m, at, f"e{i}")]))
            await until(h, lambda s, n=i + 1: len(s.notifications) == n)
        assert [s.purpose for s in fakes.sent] == ["picked_up", "out_for_delivery", "delivered"]
        assert len({s.key for s in fakes.sent}) == 3
        assert len(fakes.queued()) == 1


async def test_inline_off_uses_only_the_queue(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue, inline=False)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        await until(h, lambda s: len(s.notifications) == 1)
        assert [p for p, _ in fakes.attempts] == ["queue"]


async def test_the_ndr_question_opens_its_reply_route_in_the_same_local_activity(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await begin(time_env.client, task_queue)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivery_failed", "2026-11-28T05:00:00+00:00", "f", "customer_unavailable")]))
        st = await until(h, lambda s: any(n["purpose"] == "ndr_ask" for n in s.notifications))
        ask = next(n for n in st.notifications if n["purpose"] == "ndr_ask")
        # The route was opened before the question was sent, and both know the case's code.
        assert fakes.routes == [(st.shipment_id, 1, True)]
        assert st.ndr_cases[0]["ref"] == "K7QM" and ask["context"]["case_ref"] == "K7QM"
        _, local = await history_counts(h)
        assert "open_reply_route" not in local


async def test_a_declined_ndr_question_still_has_its_route_open_before_the_queue_sends(time_env: WorkflowEnvironment, task_queue: str) -> None:
    for mode in ("decline", "error"):
        fakes = Fakes(inline_mode=lambda inp, m=mode: m)
        async with worker(time_env.client, task_queue, fakes):
            h = await begin(time_env.client, task_queue)
            await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivery_failed", "2026-11-28T05:00:00+00:00", "f", "customer_unavailable")]))
            st = await until(h, lambda s: any(n["purpose"] == "ndr_ask" for n in s.notifications))
            assert fakes.routes == [(st.shipment_id, 1, True)], mode
            assert [p for p, _ in fakes.attempts] == ["inline", "queue"], mode
            assert st.ndr_cases[0]["ref"] == "K7QM", mode


@pytest.mark.parametrize("first", ["accepted", "down"])
async def test_the_carrier_instruction_goes_inline_and_a_failed_try_is_retried_by_the_activity(
    time_env: WorkflowEnvironment, task_queue: str, first: str
) -> None:
    from tests.workflows.test_shipment_ndr import clock_to, failed_delivery, reply

    outcomes = [first]

    def carrier(inp: Any) -> str:
        return outcomes.pop(0) if outcomes else "accepted"

    fakes = Fakes(carrier_result=carrier)
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await begin(time_env.client, task_queue, timezone="Asia/Kolkata")
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: any(n["purpose"] == "ndr_ask" for n in s.notifications))
        await reply(time_env, h, kind="choice", action="reattempt", text="1", message_id="SM1")
        await time_env.sleep(timedelta(minutes=5))  # room for the activity's retry backoff
        st = await until(h, lambda s: s.ndr_cases[0]["state"] == "instructed")
        assert len(fakes.instructions) == 1  # one instruction reached the carrier, whatever the path
        scheduled, local = await history_counts(h)
        if first == "accepted":
            assert "send_carrier_instruction" not in scheduled and local.count("send_carrier_instruction") == 1
        else:  # the inline try failed: the regular activity, same idempotency key
            assert scheduled.count("send_carrier_instruction") == 1
        assert st.ndr_cases[0]["instructions"][0]["status"] == "accepted"
