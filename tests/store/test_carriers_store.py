"""Carrier tables on SQLite and PostgreSQL: one row per idempotency key, atomic code counters."""

from __future__ import annotations

import threading

from sqlmodel import Session

from domain.instructions import Instruction, InstructionResult, SendInstructionInput
from store import carriers as store


def inp(key: str = "shp_1:ndr1:1", **kw) -> SendInstructionInput:
    return SendInstructionInput(
        shipment_id="shp_1",
        carrier="delhivery",
        tracking_number="AWB1",
        attempt=1,
        idempotency_key=key,
        instruction=Instruction(
            action=kw.pop("action", "reschedule"), requested_date="2026-12-01", phone="+919876543210"
        ),
    )


def test_begin_twice_keeps_one_row_and_counts_attempts(engine):
    with Session(engine) as s:
        first = store.begin_instruction(s, inp=inp())
        again = store.begin_instruction(s, inp=inp())
        assert first.id == again.id
        assert (again.status, again.attempts) == ("requested", 2)
        assert store.instructions_for(s, shipment_id="shp_1") == [again]


def test_summary_has_no_contact_details(engine):
    with Session(engine) as s:
        row = store.begin_instruction(s, inp=inp())
    assert row.request_summary == {
        "tracking_number": "AWB1",
        "attempt": 1,
        "action": "reschedule",
        "requested_date": "2026-12-01",
        "changes": ["phone"],
        "source": "customer",
    }
    assert "+919876543210" not in str(row.request_summary)


def test_finish_records_the_outcome_and_acknowledgement(engine):
    with Session(engine) as s:
        store.begin_instruction(s, inp=inp())
        store.set_instruction_reference(s, idempotency_key="shp_1:ndr1:1", carrier_reference="UPL1")
        pending = store.finish_instruction(
            s,
            idempotency_key="shp_1:ndr1:1",
            result=InstructionResult(status="requested", detail="attempt 1: 503"),
        )
        assert pending.acknowledged_at is None and pending.carrier_reference == "UPL1"
        done = store.finish_instruction(
            s,
            idempotency_key="shp_1:ndr1:1",
            result=InstructionResult(status="accepted", detail="ok", http_status=200),
        )
        assert (done.status, done.carrier_reference, done.http_status) == ("accepted", "UPL1", 200)
        assert done.acknowledged_at is not None and done.acknowledged_at.tzinfo is not None
        assert done.result() == InstructionResult(
            status="accepted", carrier_reference="UPL1", detail="ok", http_status=200
        )


def test_keys_are_independent(engine):
    with Session(engine) as s:
        store.begin_instruction(s, inp=inp("k1"))
        store.begin_instruction(s, inp=inp("k2"))
        assert store.get_instruction(s, idempotency_key="k3") is None
        assert [r.idempotency_key for r in store.instructions_for(s, shipment_id="shp_1")] == ["k1", "k2"]


def test_unknown_codes_are_counted_per_carrier_and_code(engine):
    with Session(engine) as s:
        for carrier, code in [
            ("delhivery", "XX/New"),
            ("delhivery", "XX/New"),
            ("clickpost", "99"),
            ("delhivery", "EOD-999"),
            ("delhivery", "XX/New"),
        ]:
            store.record_unknown_code(s, carrier, code)
        rows = store.unknown_code_counts(s)
        assert [(r.carrier, r.code, r.count) for r in rows] == [
            ("delhivery", "XX/New", 3),
            ("clickpost", "99", 1),
            ("delhivery", "EOD-999", 1),
        ]
        assert rows[0].last_seen >= rows[0].first_seen
        assert [r.code for r in store.unknown_code_counts(s, carrier="clickpost")] == ["99"]


def test_concurrent_counting_loses_nothing(engine):
    def bump() -> None:
        for _ in range(10):
            with Session(engine) as s:
                store.record_unknown_code(s, "shiprocket", "999")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engine) as s:
        assert [(r.code, r.count) for r in store.unknown_code_counts(s)] == [("999", 40)]
