"""ShipmentWorkflow: one durable workflow per shipment, from registration to a terminal milestone.

Started by whichever comes first, the merchant's registration or a carrier event (both use
signal-with-start), so arrival order never matters. Carrier events are signals, deduplicated here
(the server does not dedupe signal-with-start across requests). Customer replies and agent
actions are Updates with validators. All effects are activities.

Shape: one loop. Handlers only change state (through the pure functions in workflows/*_policy.py)
and queue effects; the loop runs the queued effects, then sleeps on one durable timer until the
earliest deadline (a deferred message, an NDR reminder or cutoff, the carrier's deadline, the
stale-tracking check, the end of a snooze or of the grace period) or until a message arrives.
All state lives in `ShipmentState` so continue-as-new carries it over.

The NDR case lives inside this workflow rather than in a child: replies, agent actions and
carrier scans all change the same case and the same status, and one history keeps them ordered
without cross-workflow signalling. Its rules are in workflows/ndr_policy.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain.events import CarrierEvent, normalise_time
    from domain.instructions import (
        EMAIL_CARRIER_OPS,
        POLL_CARRIER_TRACKING,
        SEND_CARRIER_INSTRUCTION,
        EmailCarrierOpsInput,
        Instruction,
        InstructionResult,
        PollTrackingInput,
        SendInstructionInput,
    )
    from domain.status import decide, event_dedupe_key
    from domain.taxonomy import TERMINAL_MILESTONES, Milestone, parse_milestone
    from workflows import ndr_policy as ndr
    from workflows import notify_policy as notify
    from workflows import search
    from workflows.ids import shipment_id_from_workflow_id
    from workflows.messages import (
        AGENT_ACTION,
        AGENT_ACTIONS,
        CLOSE_REPLY_ROUTE,
        CUSTOMER_REPLY,
        INVALID_AGENT_ACTION,
        OPEN_REPLY_ROUTE,
        RECORD_ATTENTION,
        SEND_NOTIFICATION,
        SEND_NOTIFICATION_INLINE,
        SYNC_READ_MODEL,
        AgentActionInput,
        AgentActionResult,
        CarrierEventsInput,
        CloseReplyRouteInput,
        CustomerReplyInput,
        CustomerReplyResult,
        InlineSendInput,
        InlineSendResult,
        NotificationStatusInput,
        OpenReplyRouteInput,
        OpenReplyRouteResult,
        RecordAttentionInput,
        RegisterInput,
        SendNotificationInput,
        SendNotificationResult,
        ShipmentState,
        ShipmentWorkflowInput,
        SyncReadModelInput,
        TimelineEntry,
    )
    from workflows.shipment_policy import ShipmentPolicy, load_policy

SHORT = timedelta(seconds=30)
# Bounded so a long-lived shipment cannot grow its dedupe list without limit (carriers resend
# recent events, not months-old ones); continue-as-new carries it over.
MAX_SEEN_KEYS = 500
# Providers and carriers are retried with backoff for a while; after that the failure is data
# (next channel, escalation), not an endless retry that hides the problem from agents.
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2), maximum_attempts=8)
CARRIER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=10)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
# Provider and carrier activities heartbeat (activities/heartbeat.py): an attempt lost with its
# worker is retried after this, not after its whole start-to-close timeout. Activity options are
# not part of replay, so histories recorded without it still replay.
HEARTBEAT = timedelta(seconds=10)


@workflow.defn
class ShipmentWorkflow:
    def __init__(self) -> None:
        self.state: ShipmentState | None = None
        self._pending: list[CarrierEvent] = []
        self._effects: list[tuple[str, dict[str, Any]]] = []
        self._dirty = False
        self._policy: ShipmentPolicy | None = None
        self._notify_queue = ""
        self._timer: asyncio.Future[None] | None = None
        self._timer_at: datetime | None = None
        self._timer_fired = False
        # What was last written to search attributes and the read model: unchanged values are
        # not written again (each write is a history event).
        self._published: dict[str, Any] = {}
        self._synced: tuple[Any, ...] | None = None
        # PATCH_FEWER_EVENTS: decided once per run (see `run`).
        self._lean = False
        self._notify_inline = False
        self._instruct_inline_ok = False
        self._closed_routes: set[int] = set()
        # Reply-route writes waiting to ride with this workflow task's next inline send.
        self._route_ops: list[tuple[int, bool]] = []

    # ---- messages -----------------------------------------------------------------------
    @workflow.signal
    def register(self, inp: RegisterInput) -> None:
        st = self._st()
        if st.profile is None:
            st.timeline.append(TimelineEntry(at=inp.registered_at, kind="registered", summary="registered by merchant"))
            st.registered_at = inp.registered_at
        st.profile = inp.profile
        if inp.policy is not None:
            st.policy = inp.policy
            self._policy = None
        self._pending.extend(inp.events)
        self._dirty = True

    @workflow.signal
    def carrier_events(self, inp: CarrierEventsInput) -> None:
        self._pending.extend(inp.events)

    @workflow.signal
    def notification_status(self, inp: NotificationStatusInput) -> None:
        """A provider's delivery callback: a failure moves the message to the next channel once."""
        st = self._st()
        for rec in st.notifications:
            if rec["key"] == inp.key:
                rec["status"] = inp.status
                if inp.error_code:
                    rec["error_code"] = inp.error_code
                if notify.is_failure(inp.status) and not rec.get("fell_back"):
                    rec["fell_back"] = True
                    self._queue("fallback", key=inp.key)
                self._dirty = True
                return

    @workflow.update(name=CUSTOMER_REPLY)
    def customer_reply(self, reply: CustomerReplyInput) -> CustomerReplyResult:
        st = self._st()
        case = ndr.find_case(st.ndr_cases, reply.attempt)
        assert case is not None  # the validator refused anything else
        step = ndr.apply_reply(case, reply)
        duplicate = step.outcome == "duplicate"
        if not duplicate:
            if reply.kind == "opt_out":
                self._opt_out(reply.channel)
            elif reply.kind == "opt_in":
                self._opt_in(reply.channel)
            self._timeline(reply.received_at, "reply", f"customer replied by {reply.channel}: {step.outcome}",
                           attempt=reply.attempt, kind_of_reply=reply.kind, action=reply.action,
                           requested_date=reply.requested_date, text=reply.text[: ndr.MAX_TEXT_KEPT])
            self._after_step(step, reply_channel=reply.channel)
        return step.result(duplicate=duplicate)

    @customer_reply.validator
    def _validate_reply(self, reply: CustomerReplyInput) -> None:
        error = ndr.validate_reply(ndr.find_case(self._st().ndr_cases, reply.attempt), reply)
        if error:
            raise ValueError(error)

    @workflow.update(name=AGENT_ACTION)
    def agent_action(self, inp: AgentActionInput) -> AgentActionResult:
        st = self._st()
        if inp.action_id and inp.action_id in st.agent_action_ids:
            return AgentActionResult(True, "this action was applied before", st.needs_attention, st.attention_reason, duplicate=True)
        if inp.action_id:
            st.agent_action_ids.append(inp.action_id)
        now = workflow.now()
        detail = self._apply_agent_action(inp, now)
        self._timeline(normalise_time(now), "agent_action", f"{inp.agent}: {inp.action}" + (f" ({inp.reason})" if inp.reason else ""),
                       agent=inp.agent, action=inp.action, reason=inp.reason, requested_date=inp.requested_date, until=inp.until,
                       action_id=inp.action_id or None)
        self._dirty = True
        return AgentActionResult(True, detail, st.needs_attention, st.attention_reason)

    @agent_action.validator
    def _validate_agent_action(self, inp: AgentActionInput) -> None:
        error = _agent_action_error(self._st(), inp)
        if error:
            bad_input, message = error
            if bad_input:
                # The API answers 422 for bad input, 409 for a state the action does not fit.
                raise ApplicationError(message, type=INVALID_AGENT_ACTION)
            raise ValueError(message)

    @workflow.query
    def state(self) -> ShipmentState:
        return self._st()

    # ---- main loop ----------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ShipmentWorkflowInput) -> ShipmentState:
        if inp.state is not None:
            self.state = inp.state
        st = self._st(inp.shipment_id)
        self._notify_queue = inp.notify_task_queue
        # Every change that shortens a journey's history sits behind this one patch (one marker
        # event per run); histories recorded before it replay the old way.
        self._lean = workflow.patched(PATCH_FEWER_EVENTS)
        self._notify_inline = self._lean and inp.notify_inline
        self._instruct_inline_ok = self._lean and inp.instruct_inline
        if self._lean:
            self._seed_published(fresh=inp.state is None)
        if st.registered_at is None:
            st.registered_at = normalise_time(workflow.now())
        grace = timedelta(seconds=inp.completion_grace_seconds)

        while True:
            self._arm_timer(self._next_wakeup(grace))
            await workflow.wait_condition(lambda: bool(self._pending) or bool(self._effects) or self._dirty or self._timer_fired)
            self._timer_fired = False
            await self._apply_pending()
            await self._run_timers()
            await self._run_effects()
            if self._dirty:
                self._dirty = False
                self._publish()
                await self._sync_read_model(closed=False)
            if st.terminal_at is not None and workflow.now() >= _parse(st.terminal_at) + grace and not self._busy() and not st.deferred:
                break
            if self._should_continue_as_new(inp) and not self._busy():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(_replace_state(inp, st))

        await workflow.wait_condition(workflow.all_handlers_finished)
        self._close_open_case("shipment finished")
        await self._run_effects()
        await self._sync_read_model(closed=True)
        return st

    def _busy(self) -> bool:
        return bool(self._pending or self._effects)

    def _arm_timer(self, wake: datetime | None) -> None:
        """One durable timer for the earliest deadline, kept across messages: re-arming on every
        signal would add a start and a cancel event to history each time. A later deadline waits
        for the running timer (which then wakes the loop once, harmlessly); only an earlier one
        replaces it."""
        if wake is None:
            return
        running = self._timer is not None and not self._timer.done()
        if running and self._timer_at is not None and self._timer_at <= wake:
            return
        if running:
            assert self._timer is not None
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.ensure_future(self._sleep_until(wake))

    async def _sleep_until(self, wake: datetime) -> None:
        try:
            await workflow.sleep(max(wake - workflow.now(), timedelta(seconds=1)))
        except asyncio.CancelledError:
            return
        self._timer_fired = True

    # ---- carrier events -----------------------------------------------------------------
    async def _apply_pending(self) -> None:
        st = self._st()
        batch, self._pending = self._pending, []
        # Carriers send batches in any order: apply in carrier-time order.
        batch.sort(key=lambda e: e.occurred_at)
        for ev in batch:
            key = event_dedupe_key(ev.carrier, ev.event_id, ev.raw_code, ev.occurred_at, ev.milestone)
            if key in st.seen_event_keys:
                continue
            st.seen_event_keys.append(key)
            del st.seen_event_keys[:-MAX_SEEN_KEYS]
            milestone = parse_milestone(ev.milestone)
            verdict = decide(parse_milestone(st.status), st.status_at, milestone, ev.occurred_at)
            if st.terminal_at is not None and not verdict.applies:
                st.late_events += 1
            st.timeline.append(
                TimelineEntry(
                    at=ev.occurred_at,
                    kind="carrier_event",
                    summary=ev.raw_status or milestone.value,
                    data={
                        "milestone": milestone.value,
                        "ndr_reason": ev.ndr_reason,
                        "raw_code": ev.raw_code,
                        "raw_status": ev.raw_status,
                        "location": ev.location,
                        "event_id": ev.event_id,
                        "applied": verdict.applies,
                        "note": verdict.why,
                    },
                )
            )
            if st.last_event_at is None or ev.occurred_at > st.last_event_at:
                st.last_event_at = ev.occurred_at
            st.heard_at = normalise_time(workflow.now())
            self._dirty = True
            # A fresh scan answers "no tracking update": clear that flag.
            if st.attention_reason == ATTN_STALE:
                self._clear_attention("new carrier scan")
            if not verdict.applies:
                continue
            st.status = milestone.value
            st.status_at = ev.occurred_at
            if milestone in TERMINAL_MILESTONES and st.terminal_at is None:
                st.terminal_at = normalise_time(workflow.now())
            self._on_milestone(milestone, ev, key)

    def _on_milestone(self, milestone: Milestone, ev: CarrierEvent, event_key: str) -> None:
        st = self._st()
        now = workflow.now()
        case = ndr.current_case(st.ndr_cases)
        if milestone is Milestone.delivery_failed:
            attempt = len(st.ndr_cases) + 1
            if case is not None:
                self._after_step(ndr.on_new_attempt(case, now))
            self._open_case(attempt, ev)
            return
        if case is not None and case.state != ndr.CLOSED:
            self._after_step(ndr.on_milestone(case, milestone.value, now))
        purpose = notify.purpose_for_milestone(self._pol().notify, milestone.value)
        if purpose:
            self._queue("notify", purpose=purpose, occurrence=event_key)

    # ---- NDR ------------------------------------------------------------------------------
    def _open_case(self, attempt: int, ev: CarrierEvent) -> None:
        st = self._st()
        prof = st.profile
        pol = self._pol()
        step = ndr.open_case(
            attempt=attempt,
            reason=ev.ndr_reason or "unknown",
            now=workflow.now(),
            tz=prof.timezone if prof else "UTC",
            cod=bool(prof and prof.payment_mode == "cod"),
            order_value=prof.order_value if prof else "0",
            event_at=ev.occurred_at,
            rules=pol.ndr_rules,
            policy=pol.ndr,
        )
        self._timeline(normalise_time(workflow.now()), "decision", f"NDR case {attempt} opened ({step.case.reason}): {step.outcome}",
                       attempt=attempt, reason=step.case.reason)
        if step.case.waiting:
            self._queue("route", attempt=attempt, open=True)
        self._after_step(step)

    def _after_step(self, step: ndr.Step, *, reply_channel: str | None = None) -> None:
        """Store the case and queue what the pure state machine asked for."""
        st = self._st()
        ndr.store_case(st.ndr_cases, step.case)
        self._dirty = True
        case = step.case
        if step.instruction is not None:
            seq = case.instructions[-1]["seq"]
            self._timeline(normalise_time(workflow.now()), "decision",
                           f"decided {step.instruction.action} ({step.instruction.source})",
                           attempt=case.attempt, action=step.instruction.action, requested_date=step.instruction.requested_date)
            self._queue("instruct", attempt=case.attempt, seq=seq, instruction=step.instruction)
        if step.notify:
            # Answer on the channel the customer wrote from, when we can message on it.
            self._queue("notify", purpose=step.notify, occurrence=f"ndr{case.attempt}:{len(case.responses)}:{step.outcome}",
                        case_attempt=case.attempt, prefer=reply_channel)
        if step.escalate:
            self._raise_attention(step.escalate, step.detail or case.escalation_reason or "")
        if case.state in (ndr.CLOSED, ndr.CARRIER_ACTED):
            self._queue("route", attempt=case.attempt, open=False)
            if st.attention_reason in CASE_ATTENTION and case.state == ndr.CARRIER_ACTED:
                self._clear_attention("carrier acted")

    def _close_open_case(self, why: str) -> None:
        case = ndr.current_case(self._st().ndr_cases)
        if case is not None and case.state != ndr.CLOSED:
            self._after_step(ndr.close_case(case, workflow.now(), why))

    # ---- agent actions ---------------------------------------------------------------------
    def _apply_agent_action(self, inp: AgentActionInput, now: datetime) -> str:
        st = self._st()
        a = inp.action
        if a == "note":
            return "noted"
        if a == "snooze":
            st.snoozed_until = inp.until
            st.snoozed_reason = st.attention_reason
            self._clear_attention(f"snoozed by {inp.agent} until {inp.until}", raise_again_later=True)
            return f"snoozed until {inp.until}"
        if a == "resolve":
            case = ndr.current_case(st.ndr_cases)
            if case is not None and case.state == ndr.ESCALATED:
                self._after_step(ndr.close_case(case, now, f"resolved by agent {inp.agent}"))
            self._clear_attention(f"resolved by {inp.agent}")
            return "resolved"
        if a == "resend_notification":
            purpose = inp.purpose or (st.notifications[-1]["purpose"] if st.notifications else None)
            if purpose is None:
                return "nothing to resend"
            case = ndr.current_case(st.ndr_cases)
            attempt = case.attempt if purpose.startswith("ndr") and case else None
            self._queue("notify", purpose=purpose, occurrence=f"resend:{inp.action_id or len(st.timeline)}", case_attempt=attempt)
            return f"resending {purpose}"
        # reattempt | reschedule | update_address | rto: through the NDR path to the carrier.
        case = ndr.current_case(st.ndr_cases)
        if case is None or case.state == ndr.CLOSED:
            case = ndr.NdrCase(attempt=len(st.ndr_cases) + 1, reason="other", state=ndr.ESCALATED,
                               opened_at=normalise_time(now), escalation_reason="agent")
        action = "update_phone" if a == "update_address" and inp.phone and not inp.address else a
        instruction = Instruction(action=action, requested_date=inp.requested_date, phone=inp.phone, address=inp.address,
                                  comments=inp.reason, source="agent")
        self._after_step(ndr.decide_by_agent(case, instruction, now, who=inp.agent))
        self._clear_attention(f"{a} by {inp.agent}")
        return f"{a} forwarded to the carrier"

    # ---- attention ----------------------------------------------------------------------------
    def _raise_attention(self, reason: str, detail: str = "") -> None:
        st = self._st()
        if st.needs_attention and st.attention_reason == reason:
            return
        now = normalise_time(workflow.now())
        st.needs_attention, st.attention_reason, st.attention_since = True, reason, now
        st.snoozed_until = None
        self._timeline(now, "attention", f"needs attention: {reason}", reason=reason, detail=detail)
        self._queue("attention", reason=reason, raised=True, detail=detail)
        self._dirty = True

    def _clear_attention(self, why: str, *, raise_again_later: bool = False) -> None:
        st = self._st()
        if not st.needs_attention:
            return
        reason = st.attention_reason or ""
        now = normalise_time(workflow.now())
        st.needs_attention, st.attention_reason, st.attention_since = False, None, None
        st.attention_cleared_at = now
        if not raise_again_later:
            st.snoozed_until = None
        self._timeline(now, "attention", f"attention cleared: {why}", reason=reason)
        self._queue("attention", reason=reason, raised=False, detail=why)
        self._dirty = True

    # ---- timers ---------------------------------------------------------------------------
    def _deadlines(self, grace: timedelta) -> list[tuple[datetime, str]]:
        st = self._st()
        out: list[tuple[datetime, str]] = []
        for d in st.deferred:
            out.append((_parse(d["due"]), "deferred"))
        case = ndr.current_case(st.ndr_cases)
        if case is not None and case.waiting:
            if case.cutoff_at:
                out.append((_parse(case.cutoff_at), "cutoff"))
            for t in self._reminder_times(case)[case.reminders_sent:]:
                out.append((t, "reminder"))
        if case is not None and case.state == ndr.INSTRUCTED and case.carrier_deadline:
            out.append((_parse(case.carrier_deadline), "carrier_deadline"))
        if st.snoozed_until:
            out.append((_parse(st.snoozed_until), "snooze"))
        if st.terminal_at is None:
            stale = self._stale_at()
            if stale is not None and not st.needs_attention:
                out.append((stale, "stale"))
            poll = self._poll_at()
            if poll is not None:
                out.append((poll, "poll"))
        else:
            # Deferred messages (quiet hours) keep the workflow alive past its grace period.
            out.append((_parse(st.terminal_at) + grace, "grace"))
        return out

    def _next_wakeup(self, grace: timedelta) -> datetime | None:
        # Everything already due was handled by _run_timers; a deadline still in the past (the
        # grace period while deferred messages wait) must not spin the loop.
        now = workflow.now()
        future = [t for t, _ in self._deadlines(grace) if t > now]
        return min(future) if future else None

    async def _run_timers(self) -> None:
        st = self._st()
        now = workflow.now()
        # Deferred messages whose quiet hours ended: send only what is still true.
        due = [d for d in st.deferred if _parse(d["due"]) <= now]
        if due:
            st.deferred = [d for d in st.deferred if _parse(d["due"]) > now]
            keep = notify.after_deferral([d["purpose"] for d in due], st.status)
            for d in due:
                if d["purpose"] in keep:
                    self._queue("send", purpose=d["purpose"], occurrence=d["occurrence"], channel=d["channel"],
                                context=d["context"], order=d["order"])
                else:
                    self._timeline(normalise_time(now), "notification", f"{d['purpose']} not sent: no longer true after quiet hours",
                                   purpose=d["purpose"], channel=d["channel"])
            self._dirty = True
        case = ndr.current_case(st.ndr_cases)
        if case is not None and case.waiting:
            if case.cutoff_at and _parse(case.cutoff_at) <= now:
                step = ndr.decide_by_rule(case, ndr.rule_decision(case, self._pol().ndr_rules), now)
                self._timeline(normalise_time(now), "decision", f"no answer by the cutoff: {step.detail}", attempt=case.attempt)
                self._after_step(step)
            else:
                times = self._reminder_times(case)
                if case.reminders_sent < len(times) and times[case.reminders_sent] <= now:
                    ndr.note_reminder(case)
                    ndr.store_case(st.ndr_cases, case)
                    self._queue("notify", purpose=ndr.NOTIFY_REMINDER, occurrence=f"ndr{case.attempt}:reminder{case.reminders_sent}",
                                case_attempt=case.attempt, rotate=case.reminders_sent)
                    self._dirty = True
        if case is not None and case.state == ndr.INSTRUCTED and case.carrier_deadline and _parse(case.carrier_deadline) <= now:
            self._after_step(ndr.carrier_did_not_act(case, now))
        if st.snoozed_until and _parse(st.snoozed_until) <= now:
            reason = st.snoozed_reason
            st.snoozed_until, st.snoozed_reason = None, None
            if reason:
                self._raise_attention(reason, "snooze ended")
        if st.terminal_at is None:
            stale = self._stale_at()
            if stale is not None and stale <= now and not st.needs_attention:
                self._raise_attention(ATTN_STALE, f"no tracking event since {st.last_event_at or st.registered_at} ({st.status})")
            poll = self._poll_at()
            if poll is not None and poll <= now:
                st.polled_at = normalise_time(now)
                self._queue("poll")
                self._dirty = True

    def _reminder_times(self, case: ndr.NdrCase) -> list[datetime]:
        if not case.asked_at:
            return []
        # Reminders are for silence: a customer who answered ("2", an unclear text) has been asked
        # the follow-up question already; only an opt-out/opt-in is not an answer.
        answered = any(r.get("kind") not in ("opt_out", "opt_in") for r in case.responses)
        if answered and workflow.patched(PATCH_NO_REMINDER_AFTER_AN_ANSWER):
            return []
        prof = self._st().profile
        return ndr.reminder_times(_parse(case.asked_at), prof.timezone if prof else "UTC",
                                  cutoff=_parse(case.cutoff_at) if case.cutoff_at else None, policy=self._pol().ndr)

    def _stale_at(self) -> datetime | None:
        st = self._st()
        limit = self._pol().stale_after_s.get(st.status)
        if not limit:
            return None
        # An agent who resolved or snoozed the flag gets a full period before it comes back.
        since = max((x for x in (st.heard_at, st.registered_at, st.attention_cleared_at) if x), default=None)
        return _parse(since) + timedelta(seconds=limit) if since else None

    def _poll_at(self) -> datetime | None:
        """Carriers drop webhooks: after a quiet spell, ask the carrier's tracking API."""
        st = self._st()
        every = self._pol().poll_after_s
        if not every or not st.profile or st.profile.carrier not in self._pol().pollable_carriers:
            return None
        base = max(x for x in (st.heard_at, st.registered_at, st.polled_at) if x)
        return _parse(base) + timedelta(seconds=every)

    # ---- effects ------------------------------------------------------------------------------
    def _queue(self, kind: str, **args: Any) -> None:
        self._effects.append((kind, args))

    async def _run_effects(self) -> None:
        # Effects may queue more effects (a failed send queues its fallback): drain until empty.
        while self._effects:
            kind, args = self._effects.pop(0)
            if kind == "notify":
                await self._notify(**args)
            elif kind == "send":
                await self._send(**args)
            elif kind == "fallback":
                await self._fallback(args["key"])
            elif kind == "instruct":
                await self._instruct(**args)
            elif kind == "attention":
                await self._record_attention(**args)
            elif kind == "route":
                await self._reply_route(**args)
            elif kind == "poll":
                await self._poll()
        await self._flush_routes()

    async def _notify(self, purpose: str, occurrence: str, case_attempt: int | None = None, prefer: str | None = None, rotate: int = 0) -> None:
        st = self._st()
        if st.profile is None:
            # Events before registration: nobody to tell yet (the registration brings the profile).
            return
        if (case_attempt is not None and purpose.startswith("ndr") and not notify.still_true(purpose, st.status)
                and workflow.patched(PATCH_MOOT_NDR_EFFECTS)):
            # A catch-up batch (poll, events waiting for registration) opened the case and then
            # moved past it: no question about a failed delivery for a parcel already delivered.
            self._timeline(normalise_time(workflow.now()), "notification", f"{purpose} not sent: the shipment is {st.status}",
                           purpose=purpose, attempt=case_attempt)
            return
        # Built now, not when queued: the case's reference code arrives with its reply route.
        case = ndr.find_case(st.ndr_cases, case_attempt) if case_attempt is not None else None
        context = ndr_context(case) if case is not None else {}
        pol = self._pol()
        plan = notify.plan(pol.notify, purpose, st.profile, exclude=st.opted_out)
        if not plan.order:
            self._timeline(normalise_time(workflow.now()), "notification", f"{purpose}: no usable channel", purpose=purpose)
            return
        order = list(plan.order)
        send_now = list(plan.send_now)
        if prefer in order and not (len(send_now) > 1):
            send_now = [prefer]
        elif rotate and len(order) > 1 and len(send_now) == 1:
            # Reminders go out on the next channel in the merchant's order.
            send_now = [order[rotate % len(order)]]
        for channel in send_now:
            # An answer to the customer's own message goes now: they are awake and waiting.
            await self._send(purpose=purpose, occurrence=occurrence, channel=channel, context=context, order=order,
                             answering=prefer is not None)

    async def _send(self, purpose: str, occurrence: str, channel: str, context: dict[str, Any], order: list[str],
                    answering: bool = False) -> None:
        st = self._st()
        now = workflow.now()
        tz = st.profile.timezone if st.profile else "UTC"
        defer_to = None if answering else notify.send_after(now, channel, tz, self._pol().quiet_hours)
        if defer_to is not None:
            st.deferred.append({"purpose": purpose, "occurrence": occurrence, "channel": channel, "context": context,
                                "order": order, "due": normalise_time(defer_to)})
            self._timeline(normalise_time(now), "notification", f"{purpose} by {channel} deferred to {normalise_time(defer_to)} (quiet hours)",
                           purpose=purpose, channel=channel)
            self._dirty = True
            return
        inp = SendNotificationInput(shipment_id=st.shipment_id, purpose=purpose, occurrence=occurrence, channel=channel, context=context)
        # Inline first (one history event); None -> the rate-limited notify queue, same key.
        sent_inline = await self._send_inline(inp) if self._notify_inline else None
        try:
            result: SendNotificationResult = sent_inline or await workflow.execute_activity(
                SEND_NOTIFICATION,
                inp,
                result_type=SendNotificationResult,
                task_queue=self._notify_queue or None,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=SEND_RETRY,
            )
        except ActivityError as err:
            result = SendNotificationResult(key=inp.key, channel=channel, status="failed", error_code="activity_failed", reason=str(err.cause or err))
        rec = {
            "key": result.key,
            "channel": channel,
            "purpose": purpose,
            "occurrence": occurrence,
            "status": result.status,
            "provider_message_id": result.provider_message_id,
            "error_code": result.error_code,
            "reason": result.reason,
            "at": normalise_time(workflow.now()),
            "order": order,
            "context": context,
        }
        st.notifications.append(rec)
        if result.reason == "opted_out":
            self._opt_out(channel)
        self._timeline(rec["at"], "notification", f"{purpose} by {channel}: {result.status}", purpose=purpose, channel=channel,
                       status=result.status, error_code=result.error_code)
        self._dirty = True
        if notify.is_failure(result.status):
            rec["fell_back"] = True
            await self._fallback(result.key)

    async def _send_inline(self, inp: SendNotificationInput) -> SendNotificationResult | None:
        """Send inside this workflow task: a local activity is one marker event, where a regular
        activity costs its own three plus the three of the workflow task its completion wakes.

        It runs the same `send_sync` as the queue's activity (one exactly-once row per key) and
        sends only a fresh row while the provider budget shared with the notify queue has room
        (store/send_budget.py). None means "not sent here": no budget, a row an earlier attempt
        touched, a provider 429/5xx, or this local activity failed or timed out. The caller then
        schedules the regular activity on the rate-limited notify queue with the same key, which
        returns a recorded result, waits out an attempt in flight, or reconciles before sending:
        whatever happened here, the customer gets the message once.

        No retries here (a retry policy would hold the workflow task; the queue retries with
        backoff). The read-model write this workflow task would make anyway rides along."""
        st = self._st()
        sync_key, sync = self._read_model_update(closed=False)
        ride = sync if sync_key != self._synced else None
        ops = list(self._route_ops)
        try:
            out: InlineSendResult = await workflow.execute_local_activity(
                SEND_NOTIFICATION_INLINE,
                InlineSendInput(
                    send=inp, budget=self._notify_queue, sync=ride,
                    open_routes=[OpenReplyRouteInput(shipment_id=st.shipment_id, attempt=a) for a, o in ops if o],
                    close_routes=[CloseReplyRouteInput(shipment_id=st.shipment_id, attempt=a) for a, o in ops if not o],
                ),
                result_type=InlineSendResult,
                start_to_close_timeout=INLINE_SEND_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except FailureError as err:
            # A local activity's failure or timeout arrives as ActivityError or as its bare cause
            # (ApplicationError, TimeoutError), depending on the path through the SDK.
            if isinstance(err, CancelledError):
                raise
            # Nothing it did counts: the routes are written now (before the queue sends a message
            # that may name one; idempotent), the read model at the end of the workflow task.
            await self._flush_routes()
            return None
        # The store writes ran before the send, whatever became of the send.
        if ride is not None and out.synced:
            self._synced = sync_key
        if out.routes_written:
            self._route_ops = self._route_ops[len(ops):]
            for (attempt, _), route in zip([op for op in ops if op[1]], out.routes, strict=True):
                self._route_opened(attempt, route)
                if route.ref and inp.context.get("ndr_attempt") == attempt and not inp.context.get("case_ref"):
                    inp.context["case_ref"] = route.ref  # what the activity sent (activities/notify.py _fill_case_ref)
            self._closed_routes.update(a for a, o in ops if not o)
        return out.result

    async def _fallback(self, key: str) -> None:
        st = self._st()
        rec = next((r for r in st.notifications if r["key"] == key), None)
        if rec is None or not self._pol().notify.fallback:
            return
        if rec["channel"] == "whatsapp" and rec.get("error_code") == WHATSAPP_OUTSIDE_SESSION and not rec.get("template_tried"):
            # Twilio 63016 (reported late): outside the 24 h session, retry once as an approved
            # Content template before moving to the next channel.
            rec["template_tried"] = True
            await self._send(purpose=rec["purpose"], occurrence=rec["occurrence"] + ":tpl", channel="whatsapp",
                             context={**(rec.get("context") or {}), "whatsapp_force_template": True}, order=rec.get("order") or [])
            return
        base = rec["occurrence"].removesuffix(":tpl")
        same = [r for r in st.notifications if r["purpose"] == rec["purpose"] and r["occurrence"].removesuffix(":tpl") == base]
        tried = {r["channel"] for r in same} | set(st.opted_out)
        nxt = notify.next_fallback_channel(rec.get("order") or [], tried)
        if nxt is None:
            if all(notify.is_failure(r["status"]) for r in same):
                self._raise_attention(ATTN_CHANNELS, f"{rec['purpose']}: every channel failed ({', '.join(sorted(r['channel'] for r in same))})")
            return
        context = {k: v for k, v in (rec.get("context") or {}).items() if k != "whatsapp_force_template"}
        await self._send(purpose=rec["purpose"], occurrence=base, channel=nxt, context=context, order=rec.get("order") or [])

    async def _instruct(self, attempt: int, seq: int, instruction: Instruction) -> None:
        st = self._st()
        prof = st.profile
        case = ndr.find_case(st.ndr_cases, attempt)
        if case is None or prof is None:
            return
        moot = _moot_instruction(case, seq)
        if moot and workflow.patched(PATCH_MOOT_NDR_EFFECTS):
            # Decided and overtaken in the same catch-up batch: the carrier never hears of it.
            for ins in case.instructions:
                if ins["seq"] == seq:
                    ins.update(status="not_sent", detail=moot, answered_at=normalise_time(workflow.now()))
            ndr.store_case(st.ndr_cases, case)
            self._timeline(normalise_time(workflow.now()), "instruction", f"{instruction.action} not sent to {prof.carrier}: {moot}",
                           attempt=attempt, action=instruction.action, status="not_sent")
            return
        inp = SendInstructionInput(
            shipment_id=st.shipment_id,
            carrier=prof.carrier,
            tracking_number=prof.tracking_number,
            attempt=attempt,
            idempotency_key=ndr.instruction_key(st.shipment_id, attempt, seq),
            instruction=instruction,
        )
        now_iso = normalise_time(workflow.now())
        inline = await self._instruct_inline(inp) if self._instruct_inline_ok else None  # None -> the activity below
        try:
            result: InstructionResult = inline or await workflow.execute_activity(
                SEND_CARRIER_INSTRUCTION, inp, result_type=InstructionResult,
                start_to_close_timeout=timedelta(seconds=90), heartbeat_timeout=HEARTBEAT, retry_policy=CARRIER_RETRY,
            )
        except ActivityError as err:
            step = ndr.record_instruction_failure(case, seq, str(err.cause or err), workflow.now())
            self._timeline(now_iso, "instruction", f"{instruction.action} could not reach {prof.carrier}", attempt=attempt, status="failed")
            self._after_step(step)
            await self._email_ops(inp, "carrier unreachable")
            return
        step = ndr.record_instruction_result(case, seq, result, workflow.now(), tz=prof.timezone, policy=self._pol().ndr)
        self._timeline(normalise_time(workflow.now()), "instruction", f"{instruction.action} sent to {prof.carrier}: {result.status}",
                       attempt=attempt, action=instruction.action, status=result.status, requested_date=instruction.requested_date,
                       carrier_reference=result.carrier_reference, detail=result.detail)
        self._after_step(step)
        if result.status != "accepted":
            await self._email_ops(inp, f"carrier answered {result.status}: {result.detail}")

    async def _instruct_inline(self, inp: SendInstructionInput) -> InstructionResult | None:
        """The carrier call inside this workflow task, as a local activity (1 history event where
        the activity costs 3 plus the 3 of the workflow task its completion wakes).

        One attempt, never retried here. On any failure or timeout the caller runs the regular
        activity with CARRIER_RETRY and the same idempotency key, which is exactly a retry as
        today: the carrier_instructions row returns an answer already recorded, a Delhivery
        upload id already stored is followed up rather than resubmitted, and the carrier gets
        the same key. The attempts never overlap: the activity is scheduled only after this one
        has ended (an async local activity is cancelled at its timeout, which is longer than the
        carrier HTTP timeout)."""
        try:
            result: InstructionResult = await workflow.execute_local_activity(
                SEND_CARRIER_INSTRUCTION, inp, result_type=InstructionResult,
                start_to_close_timeout=INLINE_INSTRUCT_TIMEOUT, retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except FailureError as err:
            if isinstance(err, CancelledError):
                raise
            return None
        return result

    async def _email_ops(self, inp: SendInstructionInput, why: str) -> None:
        """The carrier's operations desk gets the instruction by email when its API will not take it."""
        try:
            await workflow.execute_activity(
                EMAIL_CARRIER_OPS, EmailCarrierOpsInput(instruction=inp, why=why), result_type=InstructionResult,
                start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT, retry_policy=SEND_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("could not email the carrier's operations desk")

    async def _record_attention(self, reason: str, raised: bool, detail: str = "") -> None:
        st = self._st()
        await workflow.execute_local_activity(
            RECORD_ATTENTION,
            RecordAttentionInput(shipment_id=st.shipment_id, reason=reason, raised=raised, at=normalise_time(workflow.now()), detail=detail),
            start_to_close_timeout=SHORT, retry_policy=STORE_RETRY,
        )

    async def _reply_route(self, attempt: int, open: bool) -> None:
        """Replies find their case through the store: opened when we ask, closed when we stop waiting."""
        if self._lean and not open and (attempt in self._closed_routes or (attempt, False) in self._route_ops):
            return  # closed earlier in this run (carrier acted, then delivered): a no-op write
        if self._notify_inline:
            # Written by this workflow task's next inline send, in the same local activity and
            # before the message (which may carry the route's reference), or by _flush_routes at
            # the end of the effects, or before a send that has to go through the queue.
            self._route_ops.append((attempt, open))
            return
        await self._reply_route_now(attempt, open)

    async def _flush_routes(self) -> None:
        ops, self._route_ops = self._route_ops, []
        for attempt, open in ops:
            await self._reply_route_now(attempt, open)

    async def _reply_route_now(self, attempt: int, open: bool) -> None:
        st = self._st()
        if not open:
            await workflow.execute_local_activity(
                CLOSE_REPLY_ROUTE, CloseReplyRouteInput(shipment_id=st.shipment_id, attempt=attempt),
                result_type=int, start_to_close_timeout=SHORT, retry_policy=STORE_RETRY,
            )
            self._closed_routes.add(attempt)
            return
        route: OpenReplyRouteResult = await workflow.execute_local_activity(
            OPEN_REPLY_ROUTE, OpenReplyRouteInput(shipment_id=st.shipment_id, attempt=attempt),
            result_type=OpenReplyRouteResult, start_to_close_timeout=SHORT, retry_policy=STORE_RETRY,
        )
        self._route_opened(attempt, route)

    def _route_opened(self, attempt: int, route: OpenReplyRouteResult) -> None:
        st = self._st()
        case = ndr.find_case(st.ndr_cases, attempt)
        if route.ref and case is not None and not case.ref:
            case.ref = route.ref
            ndr.store_case(st.ndr_cases, case)

    async def _poll(self) -> None:
        st = self._st()
        if st.profile is None:
            return
        try:
            events: list[CarrierEvent] = await workflow.execute_activity(
                POLL_CARRIER_TRACKING,
                PollTrackingInput(shipment_id=st.shipment_id, carrier=st.profile.carrier, tracking_number=st.profile.tracking_number),
                result_type=list[CarrierEvent], start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError:
            return
        self._pending.extend(events)

    # ---- state helpers ----------------------------------------------------------------------
    def _opt_out(self, channel: str) -> None:
        st = self._st()
        if channel in ("sms", "whatsapp", "email") and channel not in st.opted_out:
            st.opted_out.append(channel)

    def _opt_in(self, channel: str) -> None:
        st = self._st()
        st.opted_out = [c for c in st.opted_out if c != channel]

    def _timeline(self, at: str, kind: str, summary: str, **data: Any) -> None:
        self._st().timeline.append(TimelineEntry(at=at, kind=kind, summary=summary, data={k: v for k, v in data.items() if v is not None}))
        self._dirty = True

    def _publish(self) -> None:
        st = self._st()
        st.timeline.sort(key=lambda t: t.at)
        changed = [u for u in search.updates_for(st) if self._published.get(u.key.name, _UNSET) != u.value]
        if self._lean and all(u.key.name == search.LAST_EVENT_AT.name for u in changed):
            # A scan that changes nothing but the time (the 2nd..nth in_transit) is not worth an
            # event: LastEventAt goes out with the next real change, and the agents' list shows
            # the store's shipments.last_event_at, which the API keeps at the newest scan.
            changed = []
        if changed:
            workflow.upsert_search_attributes(changed)
            self._published.update({u.key.name: u.value for u in changed})

    async def _sync_read_model(self, *, closed: bool) -> None:
        synced, update = self._read_model_update(closed=closed)
        if synced == self._synced:
            return
        self._synced = synced
        await workflow.execute_local_activity(
            SYNC_READ_MODEL,
            update,
            start_to_close_timeout=SHORT,
            retry_policy=STORE_RETRY,
        )

    def _read_model_update(self, *, closed: bool) -> tuple[tuple[Any, ...], SyncReadModelInput]:
        st = self._st()
        case = ndr.current_case(st.ndr_cases)
        # last_event_at is written by the API as events arrive; the workflow syncs what only it
        # knows, and only when it changed.
        synced = (st.status, case.state if case else None, st.needs_attention, st.attention_reason, closed)
        return synced, SyncReadModelInput(
            shipment_id=st.shipment_id,
            status=st.status,
            last_event_at=st.last_event_at,
            ndr_state=case.state if case else None,
            needs_attention=st.needs_attention,
            attention_reason=st.attention_reason,
            closed=closed,
        )

    def _seed_published(self, *, fresh: bool) -> None:
        """Start from what is already written, so the first workflow task writes only changes:
        the search attributes the API set when it started the workflow (workflow.info() holds
        them, deterministically), and for a first run the read-model row the registration
        inserted (store.models.Shipment defaults: created, no case, no attention, open)."""
        attrs = workflow.info().typed_search_attributes
        for key in search.ALL_KEYS:
            self._published[key.name] = attrs.get(key)  # None: not set, the same as unset
        if fresh:
            self._synced = ("created", None, False, None, False)

    def _should_continue_as_new(self, inp: ShipmentWorkflowInput) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > inp.max_history_events

    def _pol(self) -> ShipmentPolicy:
        if self._policy is None:
            self._policy = load_policy(self._st().policy)
        return self._policy

    def _st(self, shipment_id: str | None = None) -> ShipmentState:
        if self.state is None:
            # Handlers can run before `run` starts (signal-with-start); the id comes from the
            # workflow id so they never need the input.
            self.state = ShipmentState(shipment_id=shipment_id or shipment_id_from_workflow_id(workflow.info().workflow_id))
        return self.state


_UNSET = object()

# Attention reasons raised by the workflow itself (the NDR ones come from workflows/ndr_policy.py).
ATTN_STALE = "no_tracking_update"
ATTN_CHANNELS = "channels_failed"
WHATSAPP_OUTSIDE_SESSION = "63016"
CASE_ATTENTION = frozenset({ndr.ATTN_CARRIER_DID_NOT_ACT, ndr.ATTN_CARRIER_REJECTED, ndr.ATTN_CARRIER_UNREACHABLE})

# Fewer history events per journey (issue 7, docs/performance.md): notifications sent inline as a
# local activity carrying the read-model write, no re-write of what the start or an earlier
# workflow task already wrote. Histories recorded before this change replay the old way.
PATCH_FEWER_EVENTS = "fewer-events-inline-notify"
# Longer than a provider call (Twilio/SendGrid timeouts: 10 s) plus the store; past it the queue
# takes over and the row's lease keeps the two from both sending.
INLINE_SEND_TIMEOUT = timedelta(seconds=20)
# Longer than a carrier HTTP call (10 s) and its store writes; a slower carrier (Delhivery's
# upload polling) is finished by the regular activity, which follows the stored upload id up.
INLINE_INSTRUCT_TIMEOUT = timedelta(seconds=25)

# Reminders stop once the customer answered. Histories recorded before this change replay the old way.
PATCH_NO_REMINDER_AFTER_AN_ANSWER = "ndr-no-reminder-after-an-answer"


# Effects decided inside a batch of events that the rest of the batch made moot are dropped
# (replay-safe: histories recorded before this change still replay the old way).
PATCH_MOOT_NDR_EFFECTS = "moot-ndr-effects-in-catch-up-batch"


def _moot_instruction(case: ndr.NdrCase, seq: int) -> str | None:
    """Why an instruction that has not left yet should not be sent, or None.

    Events reaching the workflow together (a tracking poll after a quiet spell, events waiting
    for the registration, pushes that arrived while it was busy) are applied in carrier-time
    order: a failed attempt can open a case and the merchant's rule decide, and a later scan in
    the same batch then show the carrier delivered (case closed) or went out again on its own.
    Telling the carrier to reattempt a delivered parcel is wrong, and Delhivery-like carriers
    reject an NDR action for a package no longer pending, which would page an agent for nothing.
    An agent's or customer's instruction is kept when the carrier merely went out again: it may
    carry a new address or phone."""
    ins = next((i for i in case.instructions if i["seq"] == seq), None)
    if ins is None or ins.get("status") != "pending":
        return None
    if case.state == ndr.CLOSED:
        return f"the case closed before it was sent ({case.close_reason or 'closed'})"
    if case.state == ndr.CARRIER_ACTED and ins.get("source") == "merchant_rule":
        return "the carrier went out for delivery again before it was sent"
    return None


def _agent_action_error(st: ShipmentState, inp: AgentActionInput) -> tuple[bool, str] | None:
    """(is_bad_input, message) when the action is refused."""
    if inp.action not in AGENT_ACTIONS:
        return True, f"unknown action {inp.action!r}; one of {', '.join(AGENT_ACTIONS)}"
    if not inp.agent:
        return True, "agent is required"
    if inp.action == "reschedule":
        if not inp.requested_date:
            return True, "reschedule needs requested_date (YYYY-MM-DD)"
        try:
            datetime.strptime(inp.requested_date, "%Y-%m-%d")
        except ValueError:
            return True, f"requested_date must be YYYY-MM-DD, got {inp.requested_date!r}"
    if inp.action == "update_address" and not (inp.address or inp.phone):
        return True, "update_address needs address or phone"
    if inp.action == "note" and not inp.reason.strip():
        return True, "a note needs text (reason)"
    if inp.action == "snooze":
        if not inp.until:
            return True, "snooze needs until (ISO-8601 time)"
        try:
            _parse(inp.until)
        except ValueError:
            return True, f"until is not an ISO-8601 time: {inp.until!r}"
    if inp.action in ("reattempt", "reschedule", "update_address", "rto"):
        if st.profile is None:
            return False, "the shipment is not registered yet"
        if parse_milestone(st.status) in TERMINAL_MILESTONES:
            return False, f"the shipment is {st.status}; nothing to instruct"
    if inp.action == "snooze" and not st.needs_attention:
        return False, "nothing to snooze: the shipment does not need attention"
    if inp.action == "resolve" and not st.needs_attention:
        return False, "nothing to resolve: the shipment does not need attention"
    return None


def ndr_context(case: ndr.NdrCase) -> dict[str, Any]:
    """Template variables for NDR messages (no personal data: the activity adds the link)."""
    return {
        "ndr_attempt": case.attempt,
        "reason": case.reason,
        "options": ndr.menu_context(case.reason),
        "case_ref": case.ref,
        "agreed_date": case.agreed_date,
        "action": case.last_instruction["action"] if case.last_instruction else None,
        "reply_by": case.cutoff_at,
    }


def _replace_state(inp: ShipmentWorkflowInput, st: ShipmentState) -> ShipmentWorkflowInput:
    from dataclasses import replace

    return replace(inp, state=st)


def _parse(iso: str) -> datetime:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return dt
