"""The NDR case inside ShipmentWorkflow on the time-skipping server, with the fake activities of
tests/workflows/fakes.py: asking, reminders and quiet hours, the merchant's rule at the cutoff,
customer replies through the `customer_reply` Update, the instruction to the carrier and what the
carrier did (or did not do) with it, and the escalations agents see.

Time only moves while the test awaits `time_env.sleep` (or a workflow result); `until` polls the
`state` query in real time while the worker runs what is due."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.events import normalise_time
from domain.instructions import EMAIL_CARRIER_OPS, SEND_CARRIER_INSTRUCTION
from tests.workflows.fakes import Fakes, ev, new_id, start, worker
from workflows import search
from workflows.messages import (
    CUSTOMER_REPLY,
    SEND_NOTIFICATION,
    CarrierEventsInput,
    CustomerReplyInput,
    CustomerReplyResult,
    ShipmentState,
)
from workflows.ndr_policy import NdrPolicy
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy

pytestmark = pytest.mark.asyncio(loop_scope="session")

TZ = "Asia/Kolkata"
IST = ZoneInfo(TZ)


async def until(handle: WorkflowHandle[Any, Any], check: Callable[[ShipmentState], bool], timeout: float = 10.0) -> ShipmentState:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st: ShipmentState = await handle.query(ShipmentWorkflow.state)
        if check(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"condition not reached; status={st.status} cases={[(c['attempt'], c['state']) for c in st.ndr_cases]} "
                f"timeline={[t.summary for t in st.timeline][-8:]}"
            )
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """For what the fake activities recorded (effects run after the state changed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the fake activities never saw it")
        await asyncio.sleep(0.05)


async def settle(handle: WorkflowHandle[Any, Any]) -> ShipmentState:
    """Give the worker a moment to run anything that is due, then read the state."""
    await asyncio.sleep(0.3)
    return await handle.query(ShipmentWorkflow.state)


async def clock_to(env: WorkflowEnvironment, hour: int, minute: int = 0) -> datetime:
    """Skip the server clock to the next hh:mm in India."""
    now = (await env.get_current_time()).astimezone(IST)
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    await env.sleep(target - now)
    return target


async def sleep_until(env: WorkflowEnvironment, when: datetime) -> None:
    now = await env.get_current_time()
    if when > now:
        await env.sleep(when - now)


def local(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(IST)


def case(st: ShipmentState, attempt: int = 1) -> dict[str, Any]:
    return next(c for c in st.ndr_cases if c["attempt"] == attempt)


def sent(st: ShipmentState, purpose: str) -> list[dict[str, Any]]:
    return [n for n in st.notifications if n["purpose"] == purpose]


async def failed_delivery(env: WorkflowEnvironment, h: WorkflowHandle[Any, Any], eid: str, reason: str = "customer_unavailable") -> datetime:
    now = await env.get_current_time()
    await h.signal("carrier_events", CarrierEventsInput(events=[ev("delivery_failed", normalise_time(now), eid, reason=reason)]))
    return now


async def scan(env: WorkflowEnvironment, h: WorkflowHandle[Any, Any], milestone: str, eid: str) -> None:
    now = await env.get_current_time()
    await h.signal("carrier_events", CarrierEventsInput(events=[ev(milestone, normalise_time(now), eid)]))


async def reply(env: WorkflowEnvironment, h: WorkflowHandle[Any, Any], **kw: Any) -> CustomerReplyResult:
    now = await env.get_current_time()
    inp = CustomerReplyInput(**{"attempt": 1, "channel": "sms", "received_at": normalise_time(now), **kw})
    return await h.execute_update(CUSTOMER_REPLY, inp, result_type=CustomerReplyResult)


async def attributes(h: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    desc = await h.describe()
    return {k.name: desc.typed_search_attributes.get(k) for k in search.ALL_KEYS}


# ---- nobody answers ------------------------------------------------------------------------


async def test_no_reply_reminders_then_the_cutoff_rule_sends_exactly_one_reattempt(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        asked = await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        st = await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        c = case(st)
        assert (c["state"], c["reason"], c["attempt"], c["ref"]) == ("asking", "customer_unavailable", 1, "K7QM")
        # Asked at 10:00: the decision waits until 09:00 tomorrow (before the carrier's next run).
        assert local(c["cutoff_at"]) == (asked + timedelta(days=1)).replace(hour=9, minute=0)
        assert fakes.routes == [(st.shipment_id, 1, True)]
        assert sent(st, "ndr_ask")[0]["channel"] == "sms"
        # The message carries the menu the reason allows, and the case's reference code.
        ctx = sent(st, "ndr_ask")[0]["context"]
        assert ctx["ndr_attempt"] == 1 and ctx["case_ref"] == "K7QM" and ctx["reason"] == "customer_unavailable"
        assert [o["number"] for o in ctx["options"]] == [1, 2, 3, 4]
        attrs = await attributes(h)
        assert (attrs["NdrState"], attrs["NdrAttempts"], attrs["ShipmentStatus"]) == ("asking", 1, "delivery_failed")

        # +2 h: the first reminder, on the next channel in the merchant's order (email).
        await time_env.sleep(timedelta(hours=2, minutes=1))
        st = await until(h, lambda s: len(sent(s, "ndr_reminder")) == 1)
        first = sent(st, "ndr_reminder")[0]
        assert first["channel"] == "email" and local(first["at"]) - asked < timedelta(hours=2, minutes=5)
        # +8 h (18:00): the second, back on SMS.
        await time_env.sleep(timedelta(hours=6))
        st = await until(h, lambda s: len(sent(s, "ndr_reminder")) == 2)
        second = sent(st, "ndr_reminder")[1]
        assert second["channel"] == "sms" and local(second["at"]).hour == 18
        assert fakes.instructions == []

        # The night passes quietly; at 09:00 the merchant's rule decides: reattempt (attempt 1).
        await time_env.sleep(timedelta(hours=14, minutes=30))
        st = await settle(h)
        assert len(sent(st, "ndr_reminder")) == 2 and fakes.instructions == []
        await time_env.sleep(timedelta(minutes=40))
        st = await until(h, lambda s: case(s)["state"] == "instructed")
        c = case(st)
        assert (c["decided_by"], c["decision_rule"] is not None) == ("merchant_rule", True)
        assert [(i.instruction.action, i.instruction.source, i.attempt) for i in fakes.instructions] == [("reattempt", "merchant_rule", 1)]
        assert fakes.instructions[0].idempotency_key == f"{st.shipment_id}:ndr1:1"
        assert c["instructions"][0]["status"] == "accepted" and c["carrier_deadline"]
        # The reply route stays open while the carrier has not acted: a "nobody came" or a late
        # answer still reaches the case (and is answered with the decision).
        assert fakes.routes == [(st.shipment_id, 1, True)]
        # Nothing else goes out later: still one instruction, no reminder after the decision.
        await time_env.sleep(timedelta(hours=3))
        st = await settle(h)
        assert len(fakes.instructions) == 1 and len(sent(st, "ndr_reminder")) == 2
        assert not st.needs_attention


async def test_reminders_wait_for_the_end_of_quiet_hours(time_env: WorkflowEnvironment, task_queue: str) -> None:
    # Asked at 15:00 with a noon cutoff: +2 h is 17:00, +8 h would be 23:00 (quiet) -> 09:00.
    policy = ShipmentPolicy(ndr=NdrPolicy(cutoff_time="12:00"))
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        asked = await clock_to(time_env, 15, 0)
        h = await start(time_env.client, task_queue, new_id(), policy=policy, timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await time_env.sleep(timedelta(hours=2, minutes=1))
        await until(h, lambda s: len(sent(s, "ndr_reminder")) == 1)
        # 23:30: nothing was sent at 23:00.
        await time_env.sleep(timedelta(hours=6, minutes=30))
        st = await settle(h)
        assert len(sent(st, "ndr_reminder")) == 1
        await sleep_until(time_env, (asked + timedelta(days=1)).replace(hour=9, minute=1))
        st = await until(h, lambda s: len(sent(s, "ndr_reminder")) == 2)
        times = [local(n["at"]) for n in sent(st, "ndr_reminder")]
        assert [(t.hour, t.day) for t in times] == [(17, asked.day), (9, (asked + timedelta(days=1)).day)]
        assert all(not (t.hour >= 21 or t.hour < 9) for t in times)
        await time_env.sleep(timedelta(hours=3))
        await until(h, lambda s: case(s)["state"] == "instructed")
        assert [i.instruction.action for i in fakes.instructions] == ["reattempt"]


# ---- the customer answers ----------------------------------------------------------------------


async def test_reply_2_then_a_date_sends_one_reschedule_and_the_delivery_closes_the_case(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        asked = await clock_to(time_env, 11, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)

        first = await reply(time_env, h, kind="choice", action="reschedule", text="2", message_id="SM1")
        assert (first.outcome, first.state, first.notify) == ("awaiting_date", "awaiting_date", "ndr_ask_date")
        # The customer is asked for the date, on the channel they wrote from.
        st = await until(h, lambda s: len(sent(s, "ndr_ask_date")) == 1)
        assert sent(st, "ndr_ask_date")[0]["channel"] == "sms"
        # They answered: no "reply 1-4" reminder while they look for a date (+2 h passes).
        await time_env.sleep(timedelta(hours=2, minutes=30))
        st = await settle(h)
        assert sent(st, "ndr_reminder") == [] and case(st)["state"] == "awaiting_date"

        day = (asked + timedelta(days=2)).date().isoformat()
        second = await reply(time_env, h, kind="date", action="reschedule", requested_date=day, text="Saturday", message_id="SM2")
        assert (second.outcome, second.action, second.requested_date) == ("decided", "reschedule", day)
        # Twilio retries the webhook: the same message id changes nothing.
        again = await reply(time_env, h, kind="date", action="reschedule", requested_date=day, text="Saturday", message_id="SM2")
        assert again.duplicate and again.outcome == "duplicate"

        st = await until(h, lambda s: case(s)["state"] == "instructed" and len(sent(s, "ndr_confirm")) == 1)
        assert [(i.instruction.action, i.instruction.requested_date, i.instruction.source) for i in fakes.instructions] == [
            ("reschedule", day, "customer")
        ]
        c = case(st)
        assert [r["text"] for r in c["responses"]] == ["2", "Saturday"]
        assert c["agreed_date"] == day and c["decided_by"] == "customer"
        # The confirmation names what was decided.
        assert sent(st, "ndr_confirm")[0]["context"]["agreed_date"] == day

        # The carrier acts on the agreed day: out for delivery, then delivered closes the case.
        await sleep_until(time_env, (asked + timedelta(days=2)).replace(hour=8))
        await scan(time_env, h, "out_for_delivery", "o1")
        st = await until(h, lambda s: case(s)["state"] == "carrier_acted")
        assert case(st)["instructions"][0]["carrier_acted_at"]
        await time_env.sleep(timedelta(hours=3))
        await scan(time_env, h, "delivered", "d1")
        st = await until(h, lambda s: case(s)["state"] == "closed")
        assert case(st)["close_reason"] == "delivered" and st.status == "delivered"
        assert fakes.routes[-1] == (st.shipment_id, 1, False)  # replies no longer route to it
        assert len(fakes.instructions) == 1 and not st.needs_attention
        # No reminder went out after the customer answered, and the rule never decided.
        assert sent(st, "ndr_reminder") == [] and c["decision_rule"] is None


async def test_reply_to_a_closed_case_is_refused_by_the_validator(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 11, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await reply(time_env, h, kind="choice", action="reattempt", text="1", message_id="SM1")
        await until(h, lambda s: case(s)["state"] == "instructed")
        await time_env.sleep(timedelta(hours=20))
        await scan(time_env, h, "delivered", "d1")
        before = await until(h, lambda s: case(s)["state"] == "closed")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await reply(time_env, h, kind="choice", action="reschedule", text="2", message_id="SM9")
        assert "closed" in str(refused.value.cause)
        # Refused in the validator: nothing reached the case or the history.
        after = await settle(h)
        assert case(after)["responses"] == case(before)["responses"]
        assert len(after.timeline) == len(before.timeline)
        with pytest.raises(WorkflowUpdateFailedError) as no_case:
            await reply(time_env, h, attempt=2, kind="choice", action="reattempt", text="1")
        assert "no NDR case for attempt 2" in str(no_case.value.cause)


async def test_i_was_home_nobody_came_is_a_suspected_fake_attempt_with_evidence(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 14, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        scan_at = await failed_delivery(time_env, h, "f1", reason="customer_unavailable")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await time_env.sleep(timedelta(minutes=25))
        text = "I was home all day, nobody came!"
        result = await reply(time_env, h, kind="dispute", action="reattempt", text=text, message_id="SM1")
        assert result.outcome == "dispute_recorded"
        st = await until(h, lambda s: s.needs_attention and case(s)["state"] == "instructed")
        assert st.attention_reason == "suspected_fake_attempt"
        c = case(st)
        [evidence] = c["evidence"]
        assert evidence["kind"] == "suspected_fake_attempt"
        assert evidence["scan_at"] == normalise_time(scan_at)
        assert local(evidence["reply_at"]) - local(evidence["scan_at"]) >= timedelta(minutes=25)
        assert evidence["text"] == text
        # The customer still wants the parcel: the reattempt goes out while agents look.
        assert [i.instruction.action for i in fakes.instructions] == ["reattempt"]
        await eventually(lambda: bool(fakes.attention))
        assert [(a.reason, a.raised) for a in fakes.attention] == [("suspected_fake_attempt", True)]
        attrs = await attributes(h)
        assert (attrs["NeedsAttention"], attrs["AttentionReason"]) == (True, "suspected_fake_attempt")


async def test_two_unclear_replies_escalate_to_agents(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 12, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        first = await reply(time_env, h, kind="unclear", text="what is this", message_id="SM1")
        assert (first.outcome, first.notify) == ("clarify", "ndr_clarify")
        st = await until(h, lambda s: len(sent(s, "ndr_clarify")) == 1)
        assert not st.needs_attention
        second = await reply(time_env, h, kind="unclear", text="??", message_id="SM2")
        assert (second.outcome, second.state) == ("escalated", "escalated")
        st = await until(h, lambda s: s.needs_attention)
        assert st.attention_reason == "unparsed_replies" and case(st)["unparsed_count"] == 2
        st = await until(h, lambda s: len(sent(s, "ndr_escalated")) == 1)  # "a person will contact you"
        assert [(a.reason, a.raised) for a in fakes.attention] == [("unparsed_replies", True)]
        assert fakes.instructions == []


# ---- the carrier's side -------------------------------------------------------------------------


async def test_third_failed_attempt_returns_to_origin_by_the_default_rule(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        for attempt in (1, 2, 3):
            await failed_delivery(time_env, h, f"f{attempt}")
            await until(h, lambda s, a=attempt: len(s.ndr_cases) == a and case(s, a)["state"] == "asking")
            await time_env.sleep(timedelta(days=1))  # nobody answers; the cutoff passes
            await until(h, lambda s, a=attempt: case(s, a)["state"] == "instructed")
        st = await settle(h)
        assert [(i.attempt, i.instruction.action) for i in fakes.instructions] == [(1, "reattempt"), (2, "reattempt"), (3, "rto")]
        assert [c["state"] for c in st.ndr_cases] == ["closed", "closed", "instructed"]
        assert [c["close_reason"] for c in st.ndr_cases[:2]] == ["superseded", "superseded"]
        # No "did it act" deadline for a return: the RTO scan is what we wait for.
        assert case(st, 3)["carrier_deadline"] is None
        await scan(time_env, h, "rto_initiated", "r1")
        st = await until(h, lambda s: case(s, 3)["state"] == "carrier_acted")
        assert (await attributes(h))["NdrAttempts"] == 3


async def test_carrier_rejects_the_instruction_escalates_and_emails_operations(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes(carrier_result=lambda inp: "rejected")
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await reply(time_env, h, kind="choice", action="reattempt", text="1", message_id="SM1")
        st = await until(h, lambda s: s.needs_attention)
        assert st.attention_reason == "carrier_rejected"
        c = case(st)
        assert c["state"] == "escalated" and c["instructions"][0]["status"] == "rejected"
        await eventually(lambda: bool(fakes.emails))
        assert [e.instruction.idempotency_key for e in fakes.emails] == [fakes.instructions[0].idempotency_key]
        assert "rejected" in fakes.emails[0].why
        await eventually(lambda: bool(fakes.attention))
        assert [(a.reason, a.raised) for a in fakes.attention] == [("carrier_rejected", True)]
        assert (await attributes(h))["AttentionReason"] == "carrier_rejected"


async def test_carrier_down_until_retries_run_out_is_carrier_unreachable(time_env: WorkflowEnvironment, task_queue: str) -> None:
    calls: list[str] = []

    def down(inp: Any) -> str:
        calls.append(inp.idempotency_key)
        return "down"

    fakes = Fakes(carrier_result=down)
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await reply(time_env, h, kind="choice", action="reattempt", text="1", message_id="SM1")
        # The activity retries with backoff (CARRIER_RETRY: 10 attempts, up to 5 min apart).
        await time_env.sleep(timedelta(hours=1))
        st = await until(h, lambda s: s.needs_attention, timeout=20)
        assert st.attention_reason == "carrier_unreachable"
        # One try inline (a local activity, in the reply's workflow task), then the activity's
        # CARRIER_RETRY (10 attempts): one instruction, the same key every time.
        assert len(calls) == 1 + 10 and len(set(calls)) == 1
        c = case(st)
        assert c["state"] == "escalated" and c["instructions"][0]["status"] == "failed"
        await eventually(lambda: bool(fakes.emails))
        assert len(fakes.emails) == 1 and fakes.emails[0].why == "carrier unreachable"


async def test_no_scan_after_an_accepted_instruction_is_carrier_did_not_act(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        asked = await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        day = (asked + timedelta(days=2)).date()
        await reply(time_env, h, kind="date", action="reschedule", requested_date=day.isoformat(), text="day after tomorrow", message_id="SM1")
        st = await until(h, lambda s: case(s)["state"] == "instructed")
        deadline = local(case(st)["carrier_deadline"])
        # End of the day after the agreed date (one grace day), customer local time.
        assert (deadline.date(), deadline.hour, deadline.minute) == (day + timedelta(days=2), 0, 0)
        await sleep_until(time_env, deadline - timedelta(minutes=10))
        st = await settle(h)
        assert not st.needs_attention
        await time_env.sleep(timedelta(minutes=20))
        st = await until(h, lambda s: s.needs_attention)
        assert st.attention_reason == "carrier_did_not_act"
        assert case(st)["state"] == "escalated" and "carrier_did_not_act" in case(st)["flags"]
        await eventually(lambda: bool(fakes.attention))
        assert [(a.reason, a.raised) for a in fakes.attention] == [("carrier_did_not_act", True)]


async def test_stop_in_the_conversation_is_an_opt_out_not_a_cancellation(time_env: WorkflowEnvironment, task_queue: str) -> None:
    fakes = Fakes()
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ)
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        result = await reply(time_env, h, kind="opt_out", text="STOP", message_id="SM1")
        assert (result.outcome, result.state, result.notify) == ("opted_out", "asking", None)
        st = await settle(h)
        assert st.opted_out == ["sms"] and "opted_out" in case(st)["flags"]
        # Reminders skip SMS from now on; at the cutoff the merchant's rule decides as if nobody
        # answered: a reattempt, never a return or a cancellation.
        await time_env.sleep(timedelta(days=1))
        st = await until(h, lambda s: case(s)["state"] == "instructed")
        assert {n["channel"] for n in sent(st, "ndr_reminder")} == {"email"}
        assert [i.instruction.action for i in fakes.instructions] == ["reattempt"]


async def test_provider_and_carrier_activities_heartbeat_so_a_dead_workers_attempt_comes_back_in_seconds(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    # A SIGKILLed worker's running attempt is retried only when a timeout runs out: without a
    # heartbeat timeout that is the whole start-to-close (60-90 s) of each send and instruction.
    fakes = Fakes(carrier_result=lambda inp: "rejected")  # rejected: the operations email runs too
    async with worker(time_env.client, task_queue, fakes):
        await clock_to(time_env, 10, 0)
        h = await start(time_env.client, task_queue, new_id(), timezone=TZ, inline=False)  # the queue path is the one that heartbeats
        await failed_delivery(time_env, h, "f1")
        await until(h, lambda s: len(sent(s, "ndr_ask")) == 1)
        await reply(time_env, h, kind="choice", action="reattempt", text="1", message_id="SM1")
        await eventually(lambda: bool(fakes.emails))
        scheduled: dict[str, set[float]] = {}
        async for e in h.fetch_history_events():
            if e.HasField("activity_task_scheduled_event_attributes"):
                a = e.activity_task_scheduled_event_attributes
                scheduled.setdefault(a.activity_type.name, set()).add(a.heartbeat_timeout.ToTimedelta().total_seconds())
    assert scheduled[SEND_NOTIFICATION] == {10.0}
    assert scheduled[SEND_CARRIER_INSTRUCTION] == {10.0}
    assert scheduled[EMAIL_CARRIER_OPS] == {10.0}
