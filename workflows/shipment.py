"""ShipmentWorkflow: one durable workflow per shipment, from registration to a terminal milestone.

Started by whichever comes first, the merchant's registration or a carrier event (both use
signal-with-start), so arrival order never matters. Carrier events are signals, deduplicated here
(the server does not dedupe signal-with-start across requests). All effects are activities.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.events import CarrierEvent
    from domain.status import decide, event_dedupe_key
    from domain.taxonomy import TERMINAL_MILESTONES, parse_milestone
    from workflows import search
    from workflows.ids import shipment_id_from_workflow_id
    from workflows.messages import (
        SYNC_READ_MODEL,
        CarrierEventsInput,
        RegisterInput,
        ShipmentState,
        ShipmentWorkflowInput,
        SyncReadModelInput,
        TimelineEntry,
    )

READ_MODEL_TIMEOUT = timedelta(seconds=30)
# Bounded so a long-lived shipment cannot grow its dedupe list without limit (carriers resend
# recent events, not months-old ones); continue-as-new carries it over.
MAX_SEEN_KEYS = 500


@workflow.defn
class ShipmentWorkflow:
    def __init__(self) -> None:
        self.state: ShipmentState | None = None
        self._pending: list[CarrierEvent] = []
        self._dirty = False

    # ---- messages -----------------------------------------------------------------------
    @workflow.signal
    def register(self, inp: RegisterInput) -> None:
        st = self._st()
        if st.profile is None:
            st.timeline.append(TimelineEntry(at=inp.registered_at, kind="registered", summary="registered by merchant"))
        st.profile = inp.profile
        self._pending.extend(inp.events)
        self._dirty = True

    @workflow.signal
    def carrier_events(self, inp: CarrierEventsInput) -> None:
        self._pending.extend(inp.events)

    @workflow.query
    def state(self) -> ShipmentState:
        return self._st()

    # ---- main loop ----------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ShipmentWorkflowInput) -> ShipmentState:
        if inp.state is not None:
            self.state = inp.state
        st = self._st(inp.shipment_id)
        grace = timedelta(seconds=inp.completion_grace_seconds)

        while True:
            if st.terminal_at is None:
                await workflow.wait_condition(lambda: bool(self._pending) or self._dirty)
            else:
                # Linger after a terminal milestone for late scans, then finish.
                remaining = grace - (workflow.now() - _parse(st.terminal_at))
                if remaining <= timedelta(0):
                    break
                try:
                    await workflow.wait_condition(lambda: bool(self._pending) or self._dirty, timeout=remaining)
                except TimeoutError:
                    break
            await self._apply_pending()
            if self._should_continue_as_new(inp):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ShipmentWorkflowInput(
                        shipment_id=st.shipment_id,
                        completion_grace_seconds=inp.completion_grace_seconds,
                        max_history_events=inp.max_history_events,
                        state=st,
                    )
                )

        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._sync_read_model(closed=True)
        return st

    # ---- event handling -----------------------------------------------------------------
    async def _apply_pending(self) -> None:
        st = self._st()
        batch, self._pending = self._pending, []
        # Carriers send batches in any order: apply in carrier-time order.
        batch.sort(key=lambda e: e.occurred_at)
        changed = self._dirty
        self._dirty = False
        for ev in batch:
            key = event_dedupe_key(ev.carrier, ev.event_id, ev.raw_code, ev.occurred_at, ev.milestone)
            if key in st.seen_event_keys:
                continue
            st.seen_event_keys.append(key)
            del st.seen_event_keys[:-MAX_SEEN_KEYS]
            milestone = parse_milestone(ev.milestone)
            current = parse_milestone(st.status)
            verdict = decide(current, st.status_at, milestone, ev.occurred_at)
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
            changed = True
            if verdict.applies:
                st.status = milestone.value
                st.status_at = ev.occurred_at
                if milestone in TERMINAL_MILESTONES and st.terminal_at is None:
                    st.terminal_at = workflow.now().isoformat()
        if changed:
            st.timeline.sort(key=lambda t: t.at)
            self._upsert_search_attributes()
            await self._sync_read_model(closed=False)

    def _upsert_search_attributes(self) -> None:
        st = self._st()
        updates = search.updates_for(st)
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _sync_read_model(self, *, closed: bool) -> None:
        st = self._st()
        await workflow.execute_local_activity(
            SYNC_READ_MODEL,
            SyncReadModelInput(
                shipment_id=st.shipment_id,
                status=st.status,
                last_event_at=st.last_event_at,
                ndr_state=None,
                needs_attention=st.needs_attention,
                attention_reason=st.attention_reason,
                closed=closed,
            ),
            start_to_close_timeout=READ_MODEL_TIMEOUT,
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )

    def _should_continue_as_new(self, inp: ShipmentWorkflowInput) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > inp.max_history_events

    def _st(self, shipment_id: str | None = None) -> ShipmentState:
        if self.state is None:
            # Handlers can run before `run` starts (signal-with-start); the id comes from the
            # workflow id so they never need the input.
            self.state = ShipmentState(shipment_id=shipment_id or shipment_id_from_workflow_id(workflow.info().workflow_id))
        return self.state


def _parse(iso: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00"))
