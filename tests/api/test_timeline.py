"""The merged timeline (pure): ordering across time zones, what counts as already shown by the
workflow, contact details kept out."""

from __future__ import annotations

from datetime import UTC, datetime

from api.timeline import build_timeline
from store.agents import AgentActionRecord, AttentionRecord
from workflows.messages import ShipmentState, TimelineEntry


def state(**kw) -> ShipmentState:
    return ShipmentState(shipment_id="shp_1", **kw)


def test_orders_by_instant_not_by_string_across_offsets() -> None:
    st = state(
        timeline=[
            TimelineEntry(
                at="2026-11-26T15:10:00+05:30", kind="carrier_event", summary="failed"
            ),  # 09:40 UTC
            TimelineEntry(at="2026-11-26T09:00:00Z", kind="carrier_event", summary="out for delivery"),
        ]
    )
    assert [i["summary"] for i in build_timeline(st)] == ["out for delivery", "failed"]


def test_notifications_match_the_workflows_sends_and_bring_their_delivery_status() -> None:
    st = state(
        timeline=[
            # Keyed entry, and one logged the way the shipment workflow does (purpose and channel).
            TimelineEntry(
                at="2026-11-26T10:00:00+00:00", kind="notification", summary="sms", data={"key": "k-sms"}
            ),
            TimelineEntry(
                at="2026-11-26T10:02:00+00:00",
                kind="notification",
                summary="ndr_ask by whatsapp: sent",
                data={"purpose": "ndr_ask", "channel": "whatsapp", "status": "sent"},
            ),
        ],
        notifications=[
            {
                "key": "k-sms",
                "purpose": "ndr_ask",
                "channel": "sms",
                "status": "delivered",
                "at": "2026-11-26T10:00:00+00:00",
            },
            {
                "key": "k-wa",
                "purpose": "ndr_ask",
                "channel": "whatsapp",
                "status": "read",
                "at": "2026-11-26T10:02:00+00:00",
            },
            # Same instant as the first, another message: not the same send, still shown.
            {
                "key": "k-mail",
                "purpose": "ndr_ask",
                "channel": "email",
                "status": "bounce",
                "at": "2026-11-26T10:00:00+00:00",
            },
        ],
    )
    items = build_timeline(st)
    assert [(i.get("channel"), i["source"], i["delivery_status"]) for i in items] == [
        (None, "workflow", "delivered"),
        ("email", "notifications", "bounce"),
        ("whatsapp", "workflow", "read"),
    ]
    assert items[2]["status"] == "sent"  # what the send answered stays; delivery_status is now


def test_kinds_the_workflow_records_are_not_repeated_from_its_state() -> None:
    st = state(
        timeline=[
            TimelineEntry(
                at="2026-11-26T11:00:00+00:00", kind="reply", summary="customer replied by sms: awaiting_date"
            ),
            TimelineEntry(
                at="2026-11-26T11:06:00+00:00",
                kind="instruction",
                summary="reschedule sent to generic: accepted",
            ),
            TimelineEntry(
                at="2026-11-26T11:07:00+00:00",
                kind="attention",
                summary="needs attention: carrier_did_not_act",
            ),
            TimelineEntry(
                at="2026-11-26T11:08:00+00:00", kind="agent_action", summary="priya#1: note (called)"
            ),
        ],
        ndr_cases=[
            {
                "attempt": 1,
                "responses": [
                    {"at": "2026-11-26T11:00:00+00:00", "channel": "sms", "kind": "choice", "text": "2"},
                    {"at": "2026-11-26T11:05:00+00:00", "channel": "sms", "kind": "date", "text": "Saturday"},
                ],
                "instructions": [
                    {
                        "seq": 1,
                        "action": "reschedule",
                        "status": "accepted",
                        "decided_at": "2026-11-26T11:05:00+00:00",
                    }
                ],
            }
        ],
    )
    t = datetime(2026, 11, 26, 11, 8, 1, tzinfo=UTC)
    actions = [
        AgentActionRecord(
            action_id="ok",
            shipment_id="shp_1",
            agent="priya#1",
            action="note",
            reason="called",
            status="accepted",
            requested_at=t,
        ),
        AgentActionRecord(
            action_id="no",
            shipment_id="shp_1",
            agent="priya#1",
            action="rto",
            reason="asked",
            status="rejected",
            detail="case closed",
            requested_at=t,
        ),
    ]
    attention = [
        AttentionRecord(
            shipment_id="shp_1",
            reason="carrier_did_not_act",
            raised_at=datetime(2026, 11, 26, 11, 7, 0, 5, tzinfo=UTC),
        )
    ]
    items = build_timeline(st, actions=actions, attention=attention)
    assert [(i["kind"], i["source"]) for i in items] == [
        ("reply", "workflow"),
        ("instruction", "workflow"),
        ("attention", "workflow"),
        ("agent_action", "workflow"),
        ("agent_action", "audit"),  # refused: only the audit knows
    ]
    assert items[-1]["action_id"] == "no" and "case closed" in items[-1]["summary"]


def test_audit_and_attention_rows_and_no_contact_details() -> None:
    st = state(
        ndr_cases=[
            {
                "attempt": 2,
                "responses": [],
                "instructions": [
                    {
                        "seq": 1,
                        "action": "update_address",
                        "status": "pending",
                        "source": "agent",
                        "decided_at": "2026-11-26T12:00:00+00:00",
                        "address": {"line1": "4 Elm St"},
                        "phone": "+919876543210",
                    }
                ],
            }
        ]
    )
    actions = [
        AgentActionRecord(
            action_id="a1",
            shipment_id="shp_1",
            agent="priya#1",
            action="update_address",
            reason="called",
            params={"address": {"line1": "4 Elm St"}, "phone": "+919876543210"},
            status="accepted",
            requested_at=datetime(2026, 11, 26, 11, 59, tzinfo=UTC),
        )
    ]
    attention = [
        AttentionRecord(
            shipment_id="shp_1",
            reason="carrier_rejected",
            raised_at=datetime(2026, 11, 26, 11, 0, tzinfo=UTC),
            cleared_at=datetime(2026, 11, 26, 12, 1, tzinfo=UTC),
            cleared_by="agent:priya#1",
        )
    ]
    items = build_timeline(st, actions=actions, attention=attention)
    assert [i["kind"] for i in items] == ["attention", "agent_action", "instruction", "attention_cleared"]
    assert "Elm" not in repr(items) and "98765" not in repr(items)
    assert items[2]["changes"] == ["phone", "address"] and items[3]["cleared_by"] == "agent:priya#1"
