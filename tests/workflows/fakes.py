"""Fake activities registered under the real names, recording what the workflow asked for.
Behaviour is scripted per test: a channel that fails, a carrier that rejects or is down."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from domain.events import CarrierEvent, normalise_time
from domain.instructions import (
    EMAIL_CARRIER_OPS,
    POLL_CARRIER_TRACKING,
    SEND_CARRIER_INSTRUCTION,
    EmailCarrierOpsInput,
    InstructionResult,
    PollTrackingInput,
    SendInstructionInput,
)
from workflows.ids import shipment_workflow_id
from workflows.messages import (
    CLOSE_REPLY_ROUTE,
    OPEN_REPLY_ROUTE,
    RECORD_ATTENTION,
    SEND_NOTIFICATION,
    SEND_NOTIFICATION_INLINE,
    SYNC_READ_MODEL,
    CloseReplyRouteInput,
    InlineSendInput,
    InlineSendResult,
    OpenReplyRouteInput,
    OpenReplyRouteResult,
    RecordAttentionInput,
    RegisterInput,
    SendNotificationInput,
    SendNotificationResult,
    ShipmentProfile,
    ShipmentWorkflowInput,
    SyncReadModelInput,
)
from workflows.sandbox import strict_workflow_runner
from workflows.shipment import ShipmentWorkflow
from workflows.shipment_policy import ShipmentPolicy, policy_dict


@dataclass
class Fakes:
    sent: list[SendNotificationInput] = field(default_factory=list)
    instructions: list[SendInstructionInput] = field(default_factory=list)
    emails: list[EmailCarrierOpsInput] = field(default_factory=list)
    attention: list[RecordAttentionInput] = field(default_factory=list)
    routes: list[tuple[str, int, bool]] = field(default_factory=list)
    polls: list[PollTrackingInput] = field(default_factory=list)
    read_model: list[SyncReadModelInput] = field(default_factory=list)
    # scripting
    channel_result: Callable[[SendNotificationInput], str] = lambda inp: "sent"
    channel_reason: Callable[[SendNotificationInput], str | None] = lambda inp: None
    carrier_result: Callable[[SendInstructionInput], str] = lambda inp: "accepted"
    poll_events: list[CarrierEvent] = field(default_factory=list)
    # How the inline (local activity) send behaves, per message: "send"; "decline" (no budget,
    # provider busy: the workflow must use the queue); "error" (the local activity fails before
    # sending); "send_then_error" (it sent, then failed: the worker died before the marker was
    # recorded, so the workflow will ask again).
    inline_mode: Callable[[SendNotificationInput], str] = lambda inp: "send"
    # Which path each attempt took, in order: ("inline" | "queue", key).
    attempts: list[tuple[str, str]] = field(default_factory=list)
    _keys: set[str] = field(default_factory=set)

    def _deliver(self, inp: SendNotificationInput) -> SendNotificationResult:
        status = self.channel_result(inp)
        if inp.key not in self._keys:  # the real activity is exactly-once per key
            self._keys.add(inp.key)
            self.sent.append(inp)
        return SendNotificationResult(key=inp.key, channel=inp.channel, status=status, provider_message_id=f"SM{len(self.sent)}",
                                      error_code="21211" if status == "failed" else None, reason=self.channel_reason(inp))

    @activity.defn(name=SEND_NOTIFICATION)
    def send(self, inp: SendNotificationInput) -> SendNotificationResult:
        self.attempts.append(("queue", inp.key))
        return self._deliver(inp)

    @activity.defn(name=SEND_NOTIFICATION_INLINE)
    def send_inline(self, inp: InlineSendInput) -> InlineSendResult:
        self.attempts.append(("inline", inp.send.key))
        mode = self.inline_mode(inp.send)
        if mode == "error":
            raise ApplicationError("store unavailable")
        out = InlineSendResult(result=None, synced=inp.sync is not None, routes_written=bool(inp.open_routes or inp.close_routes))
        out.routes = [self.open_route(r) for r in inp.open_routes]
        for r in inp.close_routes:
            self.close_route(r)
        if inp.sync is not None:
            self.read_model.append(inp.sync)
        if mode == "decline":
            out.why_not = "budget"
            return out
        out.result = self._deliver(inp.send)
        if mode == "send_then_error":
            raise ApplicationError("worker lost after the provider took the message")
        return out

    @activity.defn(name=SEND_CARRIER_INSTRUCTION)
    def instruct(self, inp: SendInstructionInput) -> InstructionResult:
        outcome = self.carrier_result(inp)
        if outcome == "down":
            raise ApplicationError("carrier timed out", type="CarrierUnavailable")
        if not any(i.idempotency_key == inp.idempotency_key for i in self.instructions):
            self.instructions.append(inp)
        return InstructionResult(status=outcome, carrier_reference="REF1", detail="" if outcome == "accepted" else "not eligible")

    @activity.defn(name=EMAIL_CARRIER_OPS)
    def email_ops(self, inp: EmailCarrierOpsInput) -> InstructionResult:
        self.emails.append(inp)
        return InstructionResult(status="emailed")

    @activity.defn(name=RECORD_ATTENTION)
    def record_attention(self, inp: RecordAttentionInput) -> None:
        self.attention.append(inp)

    @activity.defn(name=OPEN_REPLY_ROUTE)
    def open_route(self, inp: OpenReplyRouteInput) -> OpenReplyRouteResult:
        self.routes.append((inp.shipment_id, inp.attempt, True))
        return OpenReplyRouteResult(ref="K7QM")

    @activity.defn(name=CLOSE_REPLY_ROUTE)
    def close_route(self, inp: CloseReplyRouteInput) -> int:
        self.routes.append((inp.shipment_id, inp.attempt or 0, False))
        return 1

    @activity.defn(name=POLL_CARRIER_TRACKING)
    def poll(self, inp: PollTrackingInput) -> list[CarrierEvent]:
        self.polls.append(inp)
        events, self.poll_events = self.poll_events, []
        return events

    @activity.defn(name=SYNC_READ_MODEL)
    def sync(self, inp: SyncReadModelInput) -> None:
        self.read_model.append(inp)

    def all(self) -> list[Callable[..., Any]]:
        return [self.send, self.send_inline, self.instruct, self.email_ops, self.record_attention, self.open_route, self.close_route, self.poll, self.sync]

    def queued(self) -> list[str]:
        """Keys that went to the notify queue's activity."""
        return [key for path, key in self.attempts if path == "queue"]

    def purposes(self, channel: str | None = None) -> list[str]:
        return [s.purpose for s in self.sent if channel is None or s.channel == channel]


def worker(client: Client, task_queue: str, fakes: Fakes) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[ShipmentWorkflow], activities=fakes.all(),
                  activity_executor=ThreadPoolExecutor(8), workflow_runner=strict_workflow_runner())


def profile(sid: str, **kw: Any) -> ShipmentProfile:
    base = dict(shipment_id=sid, merchant_id="acme", carrier="generic", tracking_number="TRK1", locale="en",
                timezone="Asia/Kolkata", has_phone=True, phone_is_mobile=True, has_email=True, whatsapp_opt_in=False,
                payment_mode="cod", order_value="1299.00")
    base.update(kw)
    return ShipmentProfile(**base)  # type: ignore[arg-type]


def new_id() -> str:
    return f"shp_{uuid.uuid4().hex[:12]}"


async def start(client: Client, task_queue: str, sid: str, *, policy: ShipmentPolicy | None = None,
                grace_s: float = 3600, registered_at: str | None = None, inline: bool = True, **profile_kw: Any) -> WorkflowHandle[Any, Any]:
    """`inline=False`: messages and carrier instructions only as regular activities (queues)."""
    return await client.start_workflow(
        ShipmentWorkflow.run,
        ShipmentWorkflowInput(shipment_id=sid, completion_grace_seconds=grace_s, notify_inline=inline, instruct_inline=inline),
        id=shipment_workflow_id(sid),
        task_queue=task_queue,
        start_signal="register",
        start_signal_args=[RegisterInput(profile=profile(sid, **profile_kw), registered_at=registered_at or normalise_time("2026-11-27T00:00:00+00:00"),
                                         policy=policy_dict(policy or ShipmentPolicy()))],
        execution_timeout=timedelta(days=60),
    )


def ev(milestone: str, at: str, eid: str, reason: str | None = None) -> CarrierEvent:
    return CarrierEvent(carrier="generic", tracking_number="TRK1", milestone=milestone, occurred_at=normalise_time(at), event_id=eid, ndr_reason=reason)
