"""The operations-email fallback: a plain report with everything needed to act, sent through an
injected sender."""

from __future__ import annotations

from datetime import UTC, datetime

from carriers import email_ops
from tests.carriers.conftest import instruction_input, settings


def test_report_carries_what_the_desk_needs():
    inp = instruction_input(
        "delhivery",
        "update_address",
        address={
            "line1": "12 MG Road",
            "landmark": "opp. Metro",
            "city": "Bengaluru",
            "postal_code": "560001",
        },
        phone="+919876543210",
        comments="Call before coming",
        tracking_number="1490812345678",
    )
    subject, text = email_ops.render_report(
        inp, why="Delhivery API rejected: 400", now=datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
    )
    assert (
        subject
        == "NDR instruction: UPDATE THE ADDRESS below and re-attempt - AWB 1490812345678 (ref shp_01:ndr1:1)"
    )
    for expected in (
        "AWB / tracking number : 1490812345678",
        "Action                : UPDATE THE ADDRESS below and re-attempt",
        "Address line 1        : 12 MG Road",
        "Landmark              : opp. Metro",
        "PIN / postal code     : 560001",
        "New phone             : +919876543210",
        "Comments              : Call before coming",
        "Our reference         : shp_01:ndr1:1",
        "Sent                  : 2026-11-28 16:00 UTC",
        "Why by email: Delhivery API rejected: 400",
    ):
        assert expected in text


async def test_sends_to_the_carriers_ops_address_sync_or_async():
    sent = []
    cfg = settings(carrier_ops_emails={"delhivery": "ndr@delhivery.example"})
    result = await email_ops.send_instruction(
        instruction_input("delhivery", "rto"), cfg, lambda *a: sent.append(a)
    )
    assert (
        result.status == "emailed"
        and sent[0][0] == "ndr@delhivery.example"
        and "RETURN TO ORIGIN" in sent[0][2]
    )

    async def async_send(to, subject, text):
        sent.append((to, subject, text))

    result = await email_ops.send_instruction(instruction_input("easypost", "reattempt"), cfg, async_send)
    assert result.status == "emailed" and sent[1][0] == "ndr-desk@carrier.example"  # the default address


async def test_without_an_address_or_sender_it_is_unsupported():
    no_address = settings(carrier_ops_email="")
    assert (
        await email_ops.send_instruction(instruction_input("x"), no_address, lambda *a: None)
    ).status == "unsupported"
    assert (
        await email_ops.send_instruction(instruction_input("x"), settings(), None)
    ).status == "unsupported"
