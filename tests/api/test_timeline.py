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


def test_keyed_workflow_entries_dedupe_by_key_only() -> None:
    st = state(
        timeline=[
            TimelineEntry(
                at="2026-11-26T10:00:00+00:00", kind="notification", summary="sms", data={"key": "k-sms"}
            )
        ],
        notifications=[
            {
                "key": "k-sms",
                "purpose": "ndr_ask",
                "channel": "sms",
                "status": "delivered",
                "sent_at": "2026-11-26T10:00:00+00:00",
            },
            # Same instant, another message: still shown.
            {
                "key": "k-mail",
                "purpose": "ndr_ask",
                "channel": "email",
                "status": "bounce",
                "sent_at": "2026-11-26T10:00:00+00:00",
            },
        ],
    )
    items = build_timeline(st)
    assert [(i["kind"], i.get("key"), i["source"]) for i in items] == [
        ("notification", "k-sms", "workflow"),
        ("notification", "k-mail", "notifications"),
    ]
    assert items[1]["delivery_status"] == "bounce"


def test_unkeyed_workflow_entries_dedupe_by_kind_and_time() -> None:
    st = state(
        timeline=[TimelineEntry(at="2026-11-26T11:00:00+00:00", kind="reply", summary="customer replied 2")],
        ndr_cases=[
            {
                "attempt": 1,
                "responses": [
                    {"at": "2026-11-26T11:00:00+00:00", "channel": "sms", "kind": "choice", "text": "2"},
                    {
                        "at": "2026-11-26T11:05:00+00:00",
                        "channel": "sms",
                        "kind": "date",
                        "text": "Saturday",
                        "requested_date": "2026-11-28",
                    },
                ],
                "instructions": [],
            }
        ],
    )
    items = build_timeline(st)
    assert [(i["kind"], i["source"]) for i in items] == [("reply", "workflow"), ("reply", "ndr_case")]
    assert (
        items[1]["summary"] == "customer replied by sms: date 2026-11-28" and items[1]["text"] == "Saturday"
    )


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
