"""The fake carrier's payloads are what each adapter reads: build -> sign -> verify -> parse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carriers.base import WebhookRequest, reason_from_text
from carriers.fake import payloads
from carriers.fake.payloads import Scan
from carriers.registry import ADAPTERS
from domain.taxonomy import Milestone

WHEN = datetime(2026, 11, 28, 14, 10, 12, tzinfo=UTC)
# Where a carrier has no separate code, the milestone collapses onto a neighbour.
COLLAPSED = {("delhivery", "picked_up"): "in_transit", ("easypost", "picked_up"): "in_transit"}
BUILDABLE = [
    (carrier, m.value)
    for carrier in payloads.BUILDERS
    for m in Milestone
    if m is not Milestone.unknown
    and (carrier == "generic" or m.value in getattr(payloads, f"{carrier.upper()}_STATUS"))
]


@pytest.mark.parametrize("carrier, milestone", BUILDABLE)
def test_round_trip_milestones(carrier, milestone):
    adapter = ADAPTERS[carrier]
    body, headers = payloads.webhook(carrier, Scan("AWB1", milestone, occurred_at=WHEN), secret="s3cret")
    req = WebhookRequest(body=body, headers=headers)
    adapter.verify_webhook(req, "s3cret")
    events, problems = adapter.parse_webhook(req)
    assert [p for p in problems if p.code != "ignored_event"] == []
    assert events[-1].tracking_number == "AWB1"
    assert events[-1].milestone == COLLAPSED.get((carrier, milestone), milestone)
    assert events[-1].occurred_at == "2026-11-28T14:10:12.000000Z"


REASONS = [r for r in payloads.REASON_TEXT if r != "other"]


@pytest.mark.parametrize("carrier", list(payloads.BUILDERS))
@pytest.mark.parametrize("reason", REASONS)
def test_round_trip_ndr_reasons(carrier, reason):
    body, headers = payloads.webhook(carrier, Scan("AWB1", "delivery_failed", reason, WHEN), secret="k")
    events, _ = ADAPTERS[carrier].parse_webhook(WebhookRequest(body=body, headers=headers))
    assert (events[-1].milestone, events[-1].ndr_reason) == ("delivery_failed", reason)


@pytest.mark.parametrize("reason, text", list(payloads.REASON_TEXT.items()))
def test_reason_wording_is_understood(reason, text):
    assert reason_from_text(text) == (None if reason == "other" else reason)


def test_a_carrier_without_the_milestone_says_so():
    with pytest.raises(payloads.NoSuchCode, match="delhivery has no status code for 'lost'"):
        payloads.build("delhivery", Scan("AWB1", "lost"))


def test_delhivery_tracking_answer_lists_scans_in_order():
    scans = [
        Scan("AWB1", "out_for_delivery", occurred_at=WHEN),
        Scan("AWB1", "delivery_failed", "address_issue", WHEN),
    ]
    answer = payloads.delhivery_tracking("AWB1", scans)
    shipment = answer["ShipmentData"][0]["Shipment"]
    assert [s["ScanDetail"]["Scan"] for s in shipment["Scans"]] == ["Dispatched", "Pending"]
    assert shipment["NSLCode"] == "EOD-74"
