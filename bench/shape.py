"""What Temporal work one journey costs, read from a real ShipmentWorkflow history (pure).

The engine baseline must make the same Temporal calls as the pipeline; rather than hand-copy
today's workflow (which changes every week), the benchmark runs one calibration journey of each
kind through the real stack, reads its history and derives a *plan*: for every incoming message
(a signal or an update, keyed like `signal:carrier_events:out_for_delivery#2`), the commands the
workflow issued in response, in order:

    ["upsert"]                      upsert search attributes
    ["la", name]                    a local activity (recorded as a marker)
    ["act", name, group, queue]     an activity; consecutive ones of one workflow task share a
                                    group and run concurrently in the baseline; queue is "main"
                                    (the workflow's own task queue) or "notify" (another one: the
                                    rate-limited provider queue)
    ["timer", seconds]              a durable timer
    ["cancel_timer"]                a timer cancelled (wait_condition(timeout=...) woken early)
    ["child", workflow_type]        a child workflow
    ["signal_external"]             a signal to another workflow

The baseline workflow (bench/baseline.py) replays exactly these commands with empty bodies.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import PayloadCodec

E = EventType
NOTIFY_HINTS = ("send_notification", "notif", "message", "sms", "email")
INSTRUCT_HINTS = ("send_carrier_instruction", "instruction", "instruct")


def classify_activity(name: str) -> str:
    """'instruction', 'notification' or 'other' (which latencies an activity's start closes)."""
    low = name.lower()
    if any(h in low for h in INSTRUCT_HINTS):
        return "instruction"
    if any(h in low for h in NOTIFY_HINTS):
        return "notification"
    return "other"


def trigger_key(kind: str, name: str, milestone: str | None = None, ordinal: int = 1) -> str:
    """`kind` is signal or update. Carrier events carry their milestone; others their ordinal."""
    if milestone:
        return f"{kind}:{name}:{milestone}#{ordinal}"
    if name == "register":
        return f"{kind}:{name}"
    return f"{kind}:{name}#{ordinal}"


@dataclass
class Shape:
    """One journey's history, summarised."""

    history_length: int = 0
    event_types: Counter[str] = field(default_factory=Counter)
    triggers: dict[str, list[list[Any]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # triggers in arrival order
    reply: dict[str, str] | None = None  # {"via": "update"|"signal", "name": ...} for customer replies
    undecodable: int = 0  # signal payloads we could not read (a codec we do not hold)
    # Whether the reply update completed in the task that accepted it (None: no update seen).
    update_at_once: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "history_length": self.history_length,
            "event_types": dict(self.event_types),
            "triggers": self.triggers,
            "order": self.order,
            "reply": self.reply,
            "undecodable": self.undecodable,
            "update_at_once": self.update_at_once,
        }

    @property
    def activities(self) -> Counter[str]:
        return Counter(c[1] for cmds in self.triggers.values() for c in cmds if c[0] == "act")

    @property
    def local_activities(self) -> int:
        return sum(1 for cmds in self.triggers.values() for c in cmds if c[0] == "la")


async def decode_history(events: Iterable[HistoryEvent], codec: PayloadCodec | None) -> None:
    """Decode, in place, the payloads `shape_of` reads (signal inputs, local-activity markers).

    ndrflow seals every payload it sends to Temporal (ndrflow/codec.py): without this the plan
    could not tell which milestone a signal carried, and the baseline would match none of its
    messages (its histories came out half as long as the real ones)."""
    if codec is None:
        return
    for ev in events:
        if ev.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            await codec.decode_wrapper(ev.workflow_execution_signaled_event_attributes.input)
        elif ev.event_type == E.EVENT_TYPE_MARKER_RECORDED:
            details = ev.marker_recorded_event_attributes.details
            if "data" in details:
                await codec.decode_wrapper(details["data"])


def _payload_json(payloads: Iterable[Any]) -> Any:
    for p in payloads:
        if p.metadata.get("encoding", b"") in (b"json/plain", b"json/protobuf"):
            return json.loads(p.data)
        raise ValueError("not plain JSON")
    return None


def _milestones_of(data: Any) -> list[str]:
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        return [str(e.get("milestone")) for e in data["events"] if isinstance(e, dict)]
    return []


def shape_of(events: Iterable[HistoryEvent], reply_signal_names: tuple[str, ...] = ()) -> Shape:
    """Attribute each command to the message that caused it.

    A signal takes effect from the next workflow task that starts after it (signals arriving
    while a task runs belong to the next task); an accepted update takes effect at once (its
    handler's commands follow it in the same task completion). Commands of a task are the
    events after its WORKFLOW_TASK_COMPLETED.
    """
    shape = Shape()
    ordinals: Counter[str] = Counter()
    current = "start"
    pending: str | None = None
    task_trigger = "start"
    group = 0
    last_cmd_was_act = False
    in_commands = False
    update_open = False

    def add(cmd: list[Any]) -> None:
        shape.triggers.setdefault(task_trigger, []).append(cmd)

    main_queue = ""
    for ev in events:
        shape.history_length += 1
        et = ev.event_type
        if et == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            main_queue = ev.workflow_execution_started_event_attributes.task_queue.name
        shape.event_types[E.Name(et).removeprefix("EVENT_TYPE_")] += 1
        if et == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            a = ev.workflow_execution_signaled_event_attributes
            name = a.signal_name
            try:
                data = _payload_json(a.input.payloads)
            except (ValueError, UnicodeDecodeError):
                data = None
                shape.undecodable += 1
            milestones = _milestones_of(data)
            milestone = "+".join(milestones) if milestones else None
            base = f"{name}:{milestone}" if milestone else name
            ordinals[base] += 1
            key = trigger_key("signal", name, milestone, ordinals[base])
            if name in reply_signal_names:
                shape.reply = {"via": "signal", "name": name}
            pending = key
            shape.order.append(key)
            in_commands = False
        elif et == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            name = ev.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            ordinals[f"update:{name}"] += 1
            key = trigger_key("update", name, None, ordinals[f"update:{name}"])
            shape.reply = shape.reply or {"via": "update", "name": name}
            shape.order.append(key)
            current = task_trigger = key
            last_cmd_was_act = False
            update_open = True
        elif et == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            if update_open and shape.update_at_once is None:
                # Completed in the task that accepted it: the handler answers before the
                # commands it caused have run (the caller does not wait for them).
                shape.update_at_once = True
            update_open = False
        elif et == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            if update_open and shape.update_at_once is None:
                shape.update_at_once = False
            update_open = False
            if pending is not None:
                current, pending = pending, None
            in_commands = False
        elif et == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            task_trigger = current
            in_commands = True
            group += 1
            last_cmd_was_act = False
        elif in_commands:
            cmd: list[Any] | None = None
            if et == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                if not last_cmd_was_act:
                    group += 1
                a = ev.activity_task_scheduled_event_attributes
                queue = "main" if not a.task_queue.name or a.task_queue.name == main_queue else "notify"
                cmd = ["act", a.activity_type.name, group, queue]
            elif et == E.EVENT_TYPE_MARKER_RECORDED:
                m = ev.marker_recorded_event_attributes
                if m.marker_name == "core_local_activity":
                    cmd = ["la", _local_activity_name(m)]
            elif et == E.EVENT_TYPE_TIMER_STARTED:
                cmd = [
                    "timer",
                    ev.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds(),
                ]
            elif et == E.EVENT_TYPE_TIMER_CANCELED:
                cmd = ["cancel_timer"]
            elif et == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                cmd = ["upsert"]
            elif et == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                cmd = [
                    "child",
                    ev.start_child_workflow_execution_initiated_event_attributes.workflow_type.name,
                ]
            elif et == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                cmd = ["signal_external"]
            elif et == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                pass
            else:
                # Activity results, timer fires, child results: not commands; the next command
                # (if any) comes from a later task.
                in_commands = et in (E.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,)
            if cmd is not None:
                add(cmd)
                last_cmd_was_act = cmd[0] == "act"
    return shape


def _local_activity_name(marker: Any) -> str:
    try:
        data = _payload_json(marker.details["data"].payloads)
        return str(data.get("activity_type") or data.get("activityType") or "local")
    except Exception:  # noqa: BLE001 - the name is only a label
        return "local"


def lookup(triggers: dict[str, list[list[Any]]], key: str) -> list[list[Any]]:
    """The commands for `key`; for a repeat beyond the calibration (in_transit#4 when the
    calibration saw two), the highest calibrated ordinal of the same message."""
    if key in triggers:
        return triggers[key]
    base, _, n = key.rpartition("#")
    if not base:
        return []
    best: tuple[int, str] | None = None
    for k in triggers:
        b, _, m = k.rpartition("#")
        if b == base and m.isdigit() and int(m) <= int(n or 0) and (best is None or int(m) > best[0]):
            best = (int(m), k)
    return triggers[best[1]] if best else []
