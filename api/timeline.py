"""One ordered list of everything that happened to a shipment, for agents (and its merchant).

Sources, merged by time:
- the workflow's own timeline (carrier events, registration, and whatever the workflow records:
  notifications, replies, decisions, instructions, agent actions, attention);
- `notifications` (each message and its delivery status), and each NDR case's responses
  (customer replies) and instructions (decisions sent to the carrier), from the same query;
- the store's audit of agent actions (refused ones too, which never reach workflow history) and
  attention records (raised, cleared, by whom).

What the workflow already records is not repeated. For a kind the workflow's timeline holds at
all (reply, instruction, attention, agent_action) the workflow's entries are the record, and the
derived items of that kind are left out, except refused or unanswered agent actions, which never
reach the workflow. Notifications are matched one by one (by key, else by time, purpose and
channel): a match gets the message's current `delivery_status` (delivery callbacks arrive after
the send the workflow logged), anything unmatched is added. Pure: takes the state and rows,
returns dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from store.agents import AgentActionRecord, AttentionRecord
from workflows.messages import ShipmentState

_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
# Where a notification dict keeps its time, most specific first.
_NOTIFICATION_TIME_KEYS = ("sent_at", "at", "queued_at", "created_at", "updated_at", "status_at")


def build_timeline(
    state: ShipmentState,
    *,
    actions: Iterable[AgentActionRecord] = (),
    attention: Iterable[AttentionRecord] = (),
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {**(t.data or {}), "at": t.at, "kind": t.kind, "summary": t.summary, "source": "workflow"}
        for t in state.timeline
    ]
    recorded = {i["kind"] for i in items}
    sends = _Sends(items)

    for n in state.notifications:
        item = _notification(n)
        match = sends.find(item)
        if match is not None:
            match["delivery_status"] = item["delivery_status"]
        else:
            items.append(item)
    for case in state.ndr_cases:
        items += [i for i in _ndr_case(case) if i["kind"] not in recorded]
    for a in actions:
        if a.status != "accepted" or "agent_action" not in recorded:
            items.append(_action(a))
    if "attention" not in recorded:
        for rec in attention:
            items += _attention(rec)

    # Stable: equal times keep source order (workflow entries first, as the workflow saw them).
    return sorted(items, key=lambda i: _sort_time(i.get("at")))


class _Sends:
    """The workflow's notification entries, by key when it logs one, else by (time, purpose, channel)."""

    def __init__(self, workflow_items: list[dict[str, Any]]) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.by_when: dict[tuple[datetime, Any, Any], dict[str, Any]] = {}
        for i in workflow_items:
            if i["kind"] != "notification":
                continue
            if i.get("key"):
                self.by_key[str(i["key"])] = i
            if i.get("at"):
                self.by_when.setdefault((_sort_time(i["at"]), i.get("purpose"), i.get("channel")), i)

    def find(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if item.get("key") and str(item["key"]) in self.by_key:
            return self.by_key[str(item["key"])]
        if not item.get("at"):
            return None
        return self.by_when.get((_sort_time(item["at"]), item.get("purpose"), item.get("channel")))


def _notification(n: Mapping[str, Any]) -> dict[str, Any] | None:
    at = next((n[k] for k in _NOTIFICATION_TIME_KEYS if n.get(k)), None)
    purpose = n.get("purpose") or "message"
    channel = n.get("channel") or "?"
    status = n.get("status") or "pending"
    summary = f"{purpose.replace('_', ' ')} by {channel}: {status}"
    if n.get("error_code") or n.get("reason"):
        summary += f" ({n.get('error_code') or n.get('reason')})"
    return {
        **n,
        "at": at,
        "kind": "notification",
        "summary": summary,
        "delivery_status": status,
        "source": "notifications",
    }


def _ndr_case(case: Mapping[str, Any]) -> list[dict[str, Any]]:
    attempt = case.get("attempt")
    out: list[dict[str, Any]] = []
    for r in case.get("responses") or []:
        words = (r.get("text") or "").strip()
        what = r.get("action") or r.get("kind") or "reply"
        summary = f"customer replied by {r.get('channel') or '?'}: {what}"
        if r.get("requested_date"):
            summary += f" {r['requested_date']}"
        out.append(
            {
                **r,
                "at": r.get("at"),
                "kind": "reply",
                "summary": summary,
                "text": words,
                "attempt": attempt,
                "source": "ndr_case",
            }
        )
    for ins in case.get("instructions") or []:
        summary = f"{ins.get('action')} decided by {ins.get('source') or '?'}; carrier: {ins.get('status') or 'pending'}"
        if ins.get("requested_date"):
            summary += f" (for {ins['requested_date']})"
        # Contact details stay out of the list; it says which ones changed.
        item = {k: v for k, v in ins.items() if k not in ("phone", "address")}
        item["changes"] = [k for k in ("phone", "address") if ins.get(k)]
        item.update(
            at=ins.get("decided_at"), kind="instruction", summary=summary, attempt=attempt, source="ndr_case"
        )
        out.append(item)
    return out


def _action(a: AgentActionRecord) -> dict[str, Any]:
    summary = f"{a.agent}: {a.action}"
    if a.status != "accepted":
        summary += f" ({a.status}{': ' + a.detail if a.detail else ''})"
    return {
        "at": a.requested_at.isoformat(),
        "kind": "agent_action",
        "summary": summary,
        "action_id": a.action_id,
        "agent": a.agent,
        "action": a.action,
        "reason": a.reason,
        "status": a.status,
        "detail": a.detail,
        "params": {k: v for k, v in a.params.items() if k not in ("phone", "address")},
        "source": "audit",
    }


def _attention(rec: AttentionRecord) -> list[dict[str, Any]]:
    out = [
        {
            "at": rec.raised_at.isoformat(),
            "kind": "attention",
            "summary": f"needs attention: {rec.reason.replace('_', ' ')}"
            + (f" ({rec.detail})" if rec.detail else ""),
            "reason": rec.reason,
            "detail": rec.detail,
            "source": "attention",
        }
    ]
    if rec.cleared_at is not None:
        out.append(
            {
                "at": rec.cleared_at.isoformat(),
                "kind": "attention_cleared",
                "summary": f"attention cleared ({rec.reason.replace('_', ' ')})"
                + (f" by {rec.cleared_by}" if rec.cleared_by else ""),
                "reason": rec.reason,
                "cleared_by": rec.cleared_by,
                "source": "attention",
            }
        )
    return out


def _sort_time(value: Any) -> datetime:
    if not value:
        return _FAR_FUTURE
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return _FAR_FUTURE
    return t if t.tzinfo else t.replace(tzinfo=UTC)
