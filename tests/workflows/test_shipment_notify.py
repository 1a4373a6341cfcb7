"""Milestone notifications inside ShipmentWorkflow (time-skipping server, fake activities):
one message per notified milestone, quiet hours across midnight, what is still true after a
deferral, fallback on failure and on failure callbacks, opt-outs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.events import normalise_time
from tests.workflows.fakes import Fakes, ev, new_id, start, worker
from workflows.messages import CarrierEventsInput, NotificationStatusInput, ShipmentState
from workflows.notify_policy import MerchantPolicy, PurposeRule, default_rules
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def until(handle, check, timeout: float = 10.0) -> ShipmentState:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st: ShipmentState = await handle.query(ShipmentWorkflow.state)
        if check(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached; status={st.status} deferred={st.deferred} timeline={[t.summary for t in st.timeline][-6:]} notifications={[(n['purpose'], n['channel'], n['status']) for n in st.notifications]}")
        await asyncio.sleep(0.05)


NO_QUIET = ShipmentPolicy(quiet_hours="")


async def test_each_notified_milestone_sends_exactly_one_message(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        sid = new_id()
        h = await start(time_env.client, task_queue, sid, policy=NO_QUIET)
        events = [ev("picked_up", "2026-11-27T05:00:00+00:00", "a"), ev("in_transit", "2026-11-27T09:00:00+00:00", "b"),
                  ev("out_for_delivery", "2026-11-28T03:00:00+00:00", "c")]
        await h.signal("carrier_events", CarrierEventsInput(events=events))
        await h.signal("carrier_events", CarrierEventsInput(events=[events[2]]))  # the carrier resends
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivered", "2026-11-28T07:00:00+00:00", "d")]))
        st = await until(h, lambda s: len(s.notifications) == 3)
        # whatsapp is first in the default order but the customer did not opt in: SMS.
        assert fakes.purposes("sms") == ["picked_up", "out_for_delivery", "delivered"]
        assert fakes.purposes() == ["picked_up", "out_for_delivery", "delivered"]  # no in_transit spam
        assert [n["status"] for n in st.notifications] == ["sent"] * 3
        assert all(n["provider_message_id"] for n in st.notifications)


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Asia/Seoul"])
async def test_quiet_hours_defer_overnight_and_send_only_what_is_still_true(time_env: WorkflowEnvironment, task_queue: str, tz: str) -> None:
    fakes = Fakes()
    rules = default_rules()
    for p in ("out_for_delivery", "delivered"):
        rules[p] = PurposeRule(channels=["sms", "email"], fan_out=True)
    policy = ShipmentPolicy(quiet_hours="21:00-09:00", notify=MerchantPolicy(rules=rules))
    async with worker(time_env.client, task_queue, fakes):
        # Move the clock to 22:30 local time.
        now = await time_env.get_current_time()
        local = now.astimezone(ZoneInfo(tz))
        target = local.replace(hour=22, minute=30, second=0, microsecond=0)
        if target <= local:
            target += timedelta(days=1)
        await time_env.sleep(target - local)
        sid = new_id()
        h = await start(time_env.client, task_queue, sid, policy=policy, timezone=tz)
        t0 = await time_env.get_current_time()
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", normalise_time(t0), "ofd")]))
        st = await until(h, lambda s: len(s.deferred) == 1 and len(s.notifications) == 1)
        assert fakes.purposes("email") == ["out_for_delivery"]  # email is never deferred
        assert fakes.purposes("sms") == []
        # Delivered at 02:00 local: still quiet.
        await time_env.sleep(timedelta(hours=3, minutes=30))
        t1 = await time_env.get_current_time()
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivered", normalise_time(t1), "dl")]))
        st = await until(h, lambda s: len(s.deferred) == 2)
        due = datetime.fromisoformat(st.deferred[0]["due"].replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
        assert (due.hour, due.minute) == (9, 0)
        # 09:00 local: only "delivered" goes out by SMS; the stale "out for delivery" does not.
        await time_env.sleep(timedelta(hours=7, minutes=5))
        st = await until(h, lambda s: not s.deferred and fakes.purposes("sms") != [])
        assert fakes.purposes("sms") == ["delivered"]
        assert fakes.purposes("email") == ["out_for_delivery", "delivered"]
        assert any("no longer true" in t.summary for t in st.timeline)


async def test_fallback_whatsapp_to_sms_to_email_on_failure_and_callbacks(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes(channel_result=lambda inp: "failed" if inp.channel == "whatsapp" else "sent")
    async with worker(time_env.client, task_queue, fakes):
        sid = new_id()
        h = await start(time_env.client, task_queue, sid, policy=NO_QUIET, whatsapp_opt_in=True)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T03:00:00+00:00", "c")]))
        st = await until(h, lambda s: len(s.notifications) == 2)
        assert [(s.channel, s.purpose) for s in fakes.sent] == [("whatsapp", "out_for_delivery"), ("sms", "out_for_delivery")]
        sms = st.notifications[1]
        # The carrier network later reports the SMS undelivered: email, once.
        await h.signal("notification_status", NotificationStatusInput(key=sms["key"], channel="sms", status="undelivered", error_code="30003"))
        await h.signal("notification_status", NotificationStatusInput(key=sms["key"], channel="sms", status="undelivered", error_code="30003"))
        st = await until(h, lambda s: len(s.notifications) == 3)
        await asyncio.sleep(0.3)
        assert [s.channel for s in fakes.sent] == ["whatsapp", "sms", "email"]
        assert st.notifications[1]["status"] == "undelivered" and st.notifications[1]["error_code"] == "30003"


async def test_all_channels_failing_asks_agents(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes(channel_result=lambda inp: "failed")
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        st = await until(h, lambda s: s.needs_attention)
        assert st.attention_reason == "channels_failed"
        assert [s.channel for s in fakes.sent] == ["sms", "email"]
        assert fakes.attention[-1].reason == "channels_failed" and fakes.attention[-1].raised


async def test_opted_out_channel_is_not_used_again(time_env: WorkflowEnvironment, task_queue: str) -> None:
    # The send activity finds an SMS opt-out in the store and skips: email instead, and SMS is
    # not tried again for the next milestone.
    fakes = Fakes(channel_result=lambda inp: "skipped" if inp.channel == "sms" else "sent",
                  channel_reason=lambda inp: "opted_out" if inp.channel == "sms" else None)
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("picked_up", "2026-11-27T05:00:00+00:00", "a")]))
        await until(h, lambda s: len(s.notifications) == 2)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T03:00:00+00:00", "b")]))
        st = await until(h, lambda s: len(s.notifications) == 3)
        assert [(s.channel, s.purpose) for s in fakes.sent] == [("sms", "picked_up"), ("email", "picked_up"), ("email", "out_for_delivery")]
        assert st.opted_out == ["sms"]


async def test_late_63016_retries_whatsapp_as_a_template_then_falls_back(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        h = await start(time_env.client, task_queue, new_id(), policy=NO_QUIET, whatsapp_opt_in=True)
        await h.signal("carrier_events", CarrierEventsInput(events=[ev("out_for_delivery", "2026-11-28T03:00:00+00:00", "c")]))
        st = await until(h, lambda s: len(s.notifications) == 1)
        wa = st.notifications[0]
        # Twilio reports later that the free-form message was outside the 24 h session.
        await h.signal("notification_status", NotificationStatusInput(key=wa["key"], channel="whatsapp", status="failed", error_code="63016"))
        st = await until(h, lambda s: len(s.notifications) == 2)
        assert [(s.channel, s.context.get("whatsapp_force_template")) for s in fakes.sent] == [("whatsapp", None), ("whatsapp", True)]
        # The template fails too: next channel, once.
        await h.signal("notification_status", NotificationStatusInput(key=st.notifications[1]["key"], channel="whatsapp", status="undelivered"))
        st = await until(h, lambda s: len(s.notifications) == 3)
        assert [s.channel for s in fakes.sent] == ["whatsapp", "whatsapp", "sms"]
        assert fakes.sent[2].occurrence == fakes.sent[0].occurrence
