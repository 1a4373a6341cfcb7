"""NDR timing and case state machine: pure functions, plain pytest."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.instructions import InstructionResult
from domain.taxonomy import NdrAction
from workflows import ndr_policy as P
from workflows.messages import CustomerReplyInput

IST, KST = "Asia/Kolkata", "Asia/Seoul"


def ist(y, mo, d, h, mi=0):  # type: ignore[no-untyped-def]
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(IST))


def kst(y, mo, d, h, mi=0):  # type: ignore[no-untyped-def]
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(KST))


def utc_iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def reply(kind, *, at=None, attempt=1, **kw):  # type: ignore[no-untyped-def]
    at = at or ist(2026, 11, 26, 15)
    return CustomerReplyInput(attempt=attempt, channel=kw.pop("channel", "sms"), received_at=utc_iso(at), kind=kind, **kw)


def asking(reason="customer_unavailable", at=None, **kw):  # type: ignore[no-untyped-def]
    return P.open_case(attempt=kw.pop("attempt", 1), reason=reason, now=at or ist(2026, 11, 26, 14), tz=IST, **kw).case


# ---- imports ----------------------------------------------------------------------------


def test_policy_module_imports_nothing_from_temporalio_or_the_parser():
    code = (
        "import sys, workflows.ndr_policy; "
        "bad=[m for m in sys.modules if m.split('.')[0] in ('temporalio','dateparser','phonenumbers')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- timing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "tz", "expected"),
    [
        (ist(2026, 11, 26, 10), IST, [ist(2026, 11, 26, 12), ist(2026, 11, 26, 18)]),
        # +8 h = 23:00 is quiet: moves to 09:00 the next morning.
        (ist(2026, 11, 26, 15), IST, [ist(2026, 11, 26, 17), ist(2026, 11, 27, 9)]),
        # Both fall in the same quiet night: one reminder when the window opens, not two at once.
        (kst(2026, 11, 26, 20), KST, [kst(2026, 11, 27, 9)]),
        # Asked just after midnight in Seoul: +2 h 02:00 and +8 h 08:00 both wait for 09:00.
        (kst(2026, 11, 27, 0, 30), KST, [kst(2026, 11, 27, 9)]),
    ],
)
def test_reminders_respect_quiet_hours(asked, tz, expected):  # type: ignore[no-untyped-def]
    assert P.reminder_times(asked, tz) == expected


def test_reminders_at_or_after_the_cutoff_are_dropped():
    asked = ist(2026, 11, 26, 15)
    cutoff = P.decision_cutoff(asked, IST)
    assert cutoff == ist(2026, 11, 27, 9)
    assert P.reminder_times(asked, IST, cutoff=cutoff) == [ist(2026, 11, 26, 17)]


def test_quiet_hours_can_be_turned_off_or_moved():
    asked = ist(2026, 11, 26, 15)
    assert P.reminder_times(asked, IST, policy=P.NdrPolicy(quiet_hours="")) == [ist(2026, 11, 26, 17), ist(2026, 11, 26, 23)]
    lunch = P.NdrPolicy(quiet_hours="13:00-14:00", reminder_offsets_s=[3600.0])
    assert P.reminder_times(ist(2026, 11, 26, 12, 30), IST, policy=lunch) == [ist(2026, 11, 26, 14)]
    with pytest.raises(ValueError, match="21:00-09:00"):
        P.parse_quiet_hours("9pm to 9am")


def test_quiet_hours_are_the_recipients_local_time():
    t = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 18:30 in India, 22:00 in Seoul
    assert not P.in_quiet_hours(t, IST, "21:00-09:00")
    assert P.in_quiet_hours(t, KST, "21:00-09:00")
    assert P.quiet_hours_end(t, KST, "21:00-09:00") == kst(2026, 11, 27, 9)


@pytest.mark.parametrize(
    ("asked", "cutoff"),
    [
        (ist(2026, 11, 26, 19), ist(2026, 11, 27, 9)),  # evening NDR: next morning
        (ist(2026, 11, 26, 10), ist(2026, 11, 27, 9)),
        (ist(2026, 11, 26, 2), ist(2026, 11, 26, 9)),  # late carrier upload: before today's run
        (ist(2026, 11, 26, 3, 30), ist(2026, 11, 27, 9)),  # 5.5 h is too short to answer
        (ist(2026, 11, 26, 8), ist(2026, 11, 27, 9)),
    ],
)
def test_decision_cutoff(asked, cutoff):  # type: ignore[no-untyped-def]
    assert P.decision_cutoff(asked, IST) == cutoff


def test_allowed_reattempt_dates_are_tomorrow_to_six_days_in_the_customers_calendar():
    assert P.allowed_reattempt_dates(ist(2026, 11, 26, 23, 30), IST) == [date(2026, 11, 27 + i) for i in range(4)] + [
        date(2026, 12, 1), date(2026, 12, 2)
    ]
    # 19:00 UTC is already the 27th in India.
    dates = P.allowed_reattempt_dates(datetime(2026, 11, 26, 19, 0, tzinfo=UTC), IST)
    assert (dates[0], dates[-1], len(dates)) == (date(2026, 11, 28), date(2026, 12, 3), 6)
    assert len(P.allowed_reattempt_dates(ist(2026, 11, 26, 9), IST, policy=P.NdrPolicy(max_days=3))) == 3


def test_carrier_deadline_is_end_of_day_local_after_the_grace():
    at = ist(2026, 11, 26, 15)
    assert P.carrier_deadline("2026-11-28", at, IST) == ist(2026, 11, 30, 0)
    assert P.carrier_deadline(None, at, IST) == ist(2026, 11, 29, 0)  # reattempt: tomorrow + 1 day grace
    assert P.carrier_deadline("2026-11-28", at, IST, grace_days=0) == ist(2026, 11, 29, 0)


@pytest.mark.parametrize(
    ("reason", "numbers"),
    [
        ("customer_unavailable", {1: "reattempt", 2: "reschedule", 3: "update_address", 4: "rto"}),
        ("payment_issue", {1: "reattempt", 2: "reschedule", 4: "rto"}),  # numbers are not renumbered
        ("self_collect_requested", {1: "reattempt", 2: "reschedule", 4: "rto", 5: "hold_for_pickup"}),
        ("verification_failed", {1: "reattempt", 2: "reschedule", 3: "update_phone", 4: "rto"}),
        ("out_of_delivery_area", {}),
    ],
)
def test_options_offered_per_reason(reason, numbers):  # type: ignore[no-untyped-def]
    assert P.number_to_action(reason) == numbers
    keys = [o["key"] for o in P.menu_context(reason)]
    assert len(keys) == len(numbers)
    if 3 in numbers:
        assert keys[2] == ("change_phone" if numbers[3] == "update_phone" else "change_address_or_phone")
    assert [o["number"] for o in P.menu_context(reason)] == list(numbers)


def test_menu_labels_exist_in_the_template_labels():
    from templates.labels import LABELS

    for reason in ("customer_unavailable", "verification_failed", "self_collect_requested", "payment_issue"):
        for o in P.menu_context(reason):
            for lang in ("en", "hi", "ko"):
                assert o["label"] in LABELS[lang]["option"], (lang, o)


# ---- opening and deciding -----------------------------------------------------------------


def test_actionable_reason_opens_asking_with_a_cutoff():
    step = P.open_case(attempt=1, reason="customer_unavailable", now=ist(2026, 11, 26, 19), tz=IST, cod=True,
                       order_value="1299.00", event_at="2026-11-26T13:10:00.000000Z")
    c = step.case
    assert (step.notify, c.state, c.cod, c.order_value) == (P.NOTIFY_ASK, P.ASKING, True, "1299.00")
    assert c.cutoff_at == utc_iso(ist(2026, 11, 27, 9)).replace("+00:00", ".000000Z")


def test_non_actionable_reason_goes_straight_to_the_rule():
    step = P.open_case(attempt=1, reason="order_cancelled_by_customer", now=ist(2026, 11, 26, 19), tz=IST)
    assert (step.case.state, step.instruction.action, step.instruction.source, step.notify) == (
        P.DECIDED, "rto", "merchant_rule", None,
    )
    assert step.case.instructions[0]["status"] == "pending"
    assert step.case.decision_rule == "default: cancelled at the door or not serviceable"


def test_merchant_rules_travel_as_configuration_dicts():
    rules = [{"name": "ODA: one more try", "priority": 1, "action": "reattempt", "when": {"reasons": ["out_of_delivery_area"]}}]
    step = P.open_case(attempt=1, reason="out_of_delivery_area", now=ist(2026, 11, 26, 19), tz=IST, rules=rules)
    assert (step.instruction.action, step.case.decision_rule) == ("reattempt", "ODA: one more try")


def test_nobody_answers_the_rule_decides_at_the_cutoff():
    c = asking(attempt=3)
    step = P.decide_by_rule(c, P.rule_decision(c), ist(2026, 11, 27, 9))
    assert (c.state, step.instruction.action, c.decided_by) == (P.DECIDED, "rto", "merchant_rule")
    c2 = asking(attempt=1)
    assert P.decide_by_rule(c2, P.rule_decision(c2), ist(2026, 11, 27, 9)).instruction.action == "reattempt"
    # Already decided by the customer: the cutoff does nothing.
    again = P.decide_by_rule(c2, P.rule_decision(c2), ist(2026, 11, 27, 10))
    assert (again.outcome, again.instruction, len(c2.instructions)) == ("noted", None, 1)


def test_rule_asking_for_review_raises_attention():
    c = asking(reason="customer_unavailable")
    c.reason = "unknown"
    step = P.decide_by_rule(c, P.rule_decision(c), ist(2026, 11, 27, 9))
    assert (step.instruction.action, step.escalate) == ("reattempt", P.ATTN_RULE)


# ---- replies ----------------------------------------------------------------------------------


def test_pick_a_date_then_saturday():
    c = asking()
    s1 = P.apply_reply(c, reply("choice", action="reschedule", text="2", message_id="SM1"))
    assert (s1.outcome, s1.notify, c.state, s1.instruction) == ("awaiting_date", P.NOTIFY_ASK_DATE, P.AWAITING_DATE, None)
    s2 = P.apply_reply(c, reply("date", action="reschedule", requested_date="2026-11-28", time_hint="after 17:00",
                                text="Saturday", message_id="SM2"))
    assert (s2.outcome, s2.notify, c.state) == ("decided", P.NOTIFY_CONFIRM, P.DECIDED)
    assert (s2.instruction.action, s2.instruction.requested_date, s2.instruction.comments) == (
        "reschedule", "2026-11-28", "customer: after 17:00",
    )
    assert c.agreed_date == "2026-11-28"
    result = s2.result()
    assert (result.accepted, result.outcome, result.state, result.action, result.requested_date) == (
        True, "decided", "decided", "reschedule", "2026-11-28",
    )
    assert [r["outcome"] for r in c.responses] == ["awaiting_date", "decided"]


def test_change_details_then_the_address():
    c = asking(reason="address_issue")
    assert P.apply_reply(c, reply("choice", action="update_address")).outcome == "awaiting_details"
    addr = {"line1": "12 MG Road, Indiranagar", "landmark": "opp SBI ATM"}
    step = P.apply_reply(c, reply("address", action="update_address", address=addr, phone="+919812345678"))
    assert (step.instruction.action, step.instruction.address, step.instruction.phone) == ("update_address", addr, "+919812345678")


def test_one_clarification_then_escalation():
    c = asking()
    s1 = P.apply_reply(c, reply("unclear", text="hello?"))
    assert (s1.outcome, s1.notify, c.state, c.unparsed_count) == ("clarify", P.NOTIFY_CLARIFY, P.ASKING, 1)
    s2 = P.apply_reply(c, reply("unclear", text="??"))
    assert (s2.outcome, s2.notify, s2.escalate, c.state) == ("escalated", P.NOTIFY_ESCALATED, P.ATTN_UNPARSED, P.ESCALATED)
    # Escalated without an instruction: the cutoff rule still moves the parcel.
    assert P.decide_by_rule(c, P.rule_decision(c), ist(2026, 11, 27, 9)).instruction.action == "reattempt"


def test_a_date_outside_the_window_asks_for_a_date_then_escalates():
    c = asking()
    s1 = P.apply_reply(c, reply("date", action="reschedule", requested_date="2026-12-15", problem_code="date_too_far",
                                problem="too far"))
    assert (s1.outcome, s1.notify, c.state) == ("clarify", P.NOTIFY_ASK_DATE, P.AWAITING_DATE)
    s2 = P.apply_reply(c, reply("date", action="reschedule", requested_date="2026-11-20", problem_code="date_in_past"))
    assert s2.escalate == P.ATTN_UNPARSED


def test_a_retried_webhook_is_applied_once():
    c = asking()
    P.apply_reply(c, reply("choice", action="reattempt", message_id="SMabc"))
    again = P.apply_reply(c, reply("choice", action="reattempt", message_id="SMabc"))
    assert (again.outcome, len(c.instructions), len(c.responses)) == ("duplicate", 1, 1)
    assert (again.result().action, again.instruction) == ("reattempt", None)  # same answer, nothing re-sent


def test_opt_out_changes_nothing_but_the_flag_and_opt_in_asks_again():
    c = asking()
    s = P.apply_reply(c, reply("opt_out", text="STOP"))
    assert (s.outcome, s.notify, c.state, c.flags) == ("opted_out", None, P.ASKING, ["opted_out"])
    s = P.apply_reply(c, reply("opt_in", text="START"))
    assert (s.outcome, s.notify, c.flags) == ("opted_in", P.NOTIFY_ASK, [])


def test_fake_attempt_is_recorded_with_evidence_and_the_reattempt_still_goes_out():
    c = asking(event_at="2026-11-26T08:40:00.000000Z")
    step = P.apply_reply(c, reply("dispute", action="reattempt", text="I was home, nobody came", channel="whatsapp"))
    assert (step.outcome, step.escalate, step.notify) == ("dispute_recorded", P.ATTN_FAKE_ATTEMPT, P.NOTIFY_DISPUTE_ACK)
    assert (c.state, step.instruction.action) == (P.DECIDED, "reattempt")
    ev = c.evidence[0]
    assert (ev["kind"], ev["scan_at"], ev["text"], ev["channel"]) == (
        P.ATTN_FAKE_ATTEMPT, "2026-11-26T08:40:00.000000Z", "I was home, nobody came", "whatsapp",
    )
    assert ev["reply_at"].startswith("2026-11-26T09:30")
    assert P.ATTN_FAKE_ATTEMPT in c.flags


def test_dispute_after_the_rule_decided_is_still_evidence():
    c = P.open_case(attempt=1, reason="not_attempted", now=ist(2026, 11, 26, 19), tz=IST).case
    step = P.apply_reply(c, reply("dispute", text="nobody came", at=ist(2026, 11, 26, 20)))
    assert (step.escalate, c.state, step.instruction) == (P.ATTN_DISPUTE, P.DECIDED, None)


def test_replies_after_the_decision_are_answered_with_it():
    c = asking()
    P.apply_reply(c, reply("choice", action="reattempt"))
    s = P.apply_reply(c, reply("date", action="reschedule", requested_date="2026-11-29"))
    assert (s.outcome, s.notify, len(c.instructions)) == ("already_decided", P.NOTIFY_ALREADY_DECIDED, 1)


def test_validator_refuses_closed_cases_and_actions_the_reason_does_not_allow():
    c = asking(reason="payment_issue")
    assert "not allowed for reason payment_issue" in P.validate_reply(c, reply("address", action="update_address",
                                                                              address={"line1": "x"}))
    assert P.validate_reply(c, reply("choice", action="reattempt")) is None
    assert "requested_date must be YYYY-MM-DD" in P.validate_reply(c, reply("date", action="reschedule", requested_date="Sat"))
    assert "unknown reply kind" in P.validate_reply(c, reply("poem"))
    assert "no NDR case for attempt 2" in P.validate_reply(None, reply("choice", attempt=2))
    P.close_case(c, ist(2026, 11, 27, 10), "delivered")
    error = P.validate_reply(c.to_dict(), reply("choice", action="reattempt"))
    assert error and "closed (delivered)" in error
    assert P.apply_reply(c, reply("choice", action="reattempt")).outcome == "refused"


# ---- carrier side -----------------------------------------------------------------------------


def _decided():  # type: ignore[no-untyped-def]
    c = asking()
    P.apply_reply(c, reply("date", action="reschedule", requested_date="2026-11-28"))
    return c


def test_accepted_instruction_sets_the_did_it_act_deadline():
    c = _decided()
    step = P.record_instruction_result(c, 1, InstructionResult(status="accepted", carrier_reference="UPL1"),
                                       ist(2026, 11, 26, 15, 1), tz=IST)
    assert (step.outcome, c.state, c.instructions[0]["status"], c.instructions[0]["carrier_reference"]) == (
        "instructed", P.INSTRUCTED, "accepted", "UPL1",
    )
    assert c.carrier_deadline == utc_iso(ist(2026, 11, 30, 0)).replace("+00:00", ".000000Z")
    acted = P.on_milestone(c, "out_for_delivery", ist(2026, 11, 28, 9))
    assert (acted.outcome, c.state, c.carrier_deadline) == ("carrier_acted", P.CARRIER_ACTED, None)
    assert "carrier has already acted" in (P.validate_reply(c, reply("choice", action="reattempt")) or "")
    assert P.on_milestone(c, "delivered", ist(2026, 11, 28, 12)).outcome == "closed"
    assert (c.state, c.close_reason) == (P.CLOSED, "delivered")


def test_rejected_instruction_escalates():
    c = _decided()
    step = P.record_instruction_result(c, 1, InstructionResult(status="rejected", detail="date beyond 3 days", http_status=422),
                                       ist(2026, 11, 26, 15, 1), tz=IST)
    assert (step.escalate, c.state, c.instructions[0]["status"]) == (P.ATTN_CARRIER_REJECTED, P.ESCALATED, "rejected")
    c2 = _decided()
    assert P.record_instruction_failure(c2, 1, "timeout after 8 tries", ist(2026, 11, 26, 18)).escalate == P.ATTN_CARRIER_UNREACHABLE


def test_carrier_did_not_act():
    c = _decided()
    P.record_instruction_result(c, 1, InstructionResult(status="accepted"), ist(2026, 11, 26, 15, 1), tz=IST)
    assert P.on_milestone(c, "in_transit", ist(2026, 11, 27, 10)).outcome == "noted"
    step = P.carrier_did_not_act(c, ist(2026, 11, 30, 0))
    assert (step.escalate, c.state) == (P.ATTN_CARRIER_DID_NOT_ACT, P.ESCALATED)
    # A late out-for-delivery scan still counts.
    assert P.on_milestone(c, "out_for_delivery", ist(2026, 11, 30, 9)).outcome == "carrier_acted"


def test_rto_instruction_is_acted_on_by_an_rto_scan():
    c = asking()
    P.apply_reply(c, reply("rto", action="rto"))
    P.record_instruction_result(c, 1, InstructionResult(status="accepted"), ist(2026, 11, 26, 15, 1), tz=IST)
    assert c.carrier_deadline is None  # no delivery expected
    assert P.on_milestone(c, "out_for_delivery", ist(2026, 11, 27, 9)).outcome == "noted"
    assert P.on_milestone(c, "rto_initiated", ist(2026, 11, 27, 10)).outcome == "carrier_acted"


def test_next_failed_attempt_supersedes_the_case():
    c = _decided()
    P.on_new_attempt(c, ist(2026, 11, 28, 19))
    assert (c.state, c.close_reason) == (P.CLOSED, "superseded")


def test_agent_decides_an_escalated_case():
    from domain.instructions import Instruction

    c = asking()
    P.apply_reply(c, reply("unclear"))
    P.apply_reply(c, reply("unclear"))
    step = P.decide_by_agent(c, Instruction(action=NdrAction.reattempt.value), ist(2026, 11, 26, 16), who="agent:ravi")
    assert (c.state, step.instruction.source, c.escalation_reason) == (P.DECIDED, "agent", None)


# ---- the contract ----------------------------------------------------------------------------


def test_case_dict_has_the_fixed_contract_fields_and_round_trips():
    c = _decided()
    d = c.to_dict()
    for key in ("attempt", "reason", "state", "responses", "instructions"):
        assert key in d
    assert {"action", "status", "requested_date"} <= set(d["instructions"][0])
    assert (d["instructions"][0]["action"], d["instructions"][0]["status"], d["instructions"][0]["requested_date"]) == (
        "reschedule", "pending", "2026-11-28",
    )
    assert P.NdrCase.from_dict(d) == c
    assert P.NdrCase.from_dict({**d, "added_in_a_later_version": 1}) == c
    assert P.find_case([d], 1) == c and P.find_case([d], 2) is None
    assert P.instruction_key("shp_x", 1, 2) == "shp_x:ndr1:2"


def test_store_case_writes_back_into_the_workflow_state():
    cases: list[dict] = []
    first = asking(attempt=1)
    P.store_case(cases, first)
    second = asking(attempt=2)
    P.store_case(cases, second)
    P.apply_reply(second, reply("choice", action="reattempt", attempt=2))
    P.store_case(cases, second)
    assert [(c["attempt"], c["state"]) for c in cases] == [(1, "asking"), (2, "decided")]
    assert P.current_case(cases).attempt == 2 and P.current_case([]) is None
