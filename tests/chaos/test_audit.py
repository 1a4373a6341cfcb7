from collections import Counter

from chaos.audit import (
    JourneyFacts,
    count_instructions,
    count_messages,
    expected_messages,
    wrong_final_states,
)

JOURNEYS = [
    JourneyFacts("S1", "T1", "normal", True, ("picked_up", "in_transit", "out_for_delivery", "delivered")),
    JourneyFacts(
        "S2",
        "T2",
        "ndr_1",
        False,
        ("picked_up", "out_for_delivery", "delivery_failed", "out_for_delivery", "delivered"),
    ),
]


def test_expected_messages_requires_delivered_and_the_ndr_question_on_the_first_channel():
    required, allowed = expected_messages(JOURNEYS)
    assert required == Counter(
        {("S1", "delivered", "whatsapp"): 1, ("S2", "delivered", "sms"): 1, ("S2", "ndr_ask", "sms"): 1}
    )
    assert allowed[("S2", "out_for_delivery", "sms")] == 2
    assert allowed[("S1", "out_for_delivery", "whatsapp")] == 1


def test_exact_once_counts_clean():
    required, allowed = expected_messages(JOURNEYS)
    sent = [
        ("S1", "picked_up", "whatsapp"),
        ("S1", "delivered", "whatsapp"),
        ("S2", "out_for_delivery", "sms"),
        ("S2", "out_for_delivery", "sms"),  # twice is right: two attempts
        ("S2", "ndr_ask", "sms"),
        ("S2", "delivered", "sms"),
    ]
    out = count_messages(required, allowed, sent)
    assert out["messages_expected"] == 3
    assert out["messages_sent"] == 3
    assert out["messages_duplicated"] == 0
    assert out["messages_lost"] == 0


def test_catches_a_duplicate_and_a_loss():
    required, allowed = expected_messages(JOURNEYS)
    sent = [
        ("S1", "delivered", "whatsapp"),
        ("S1", "delivered", "whatsapp"),  # duplicate
        ("S1", "out_for_delivery", "whatsapp"),
        ("S1", "out_for_delivery", "whatsapp"),  # one attempt only: duplicate
        ("S2", "delivered", "sms"),
        # S2's ndr_ask lost
    ]
    out = count_messages(required, allowed, sent)
    assert out["messages_sent"] == 2
    assert out["messages_duplicated"] == 2
    assert out["messages_lost"] == 1


def test_a_message_on_the_wrong_channel_is_a_loss():
    required, allowed = expected_messages(JOURNEYS[:1])
    out = count_messages(required, allowed, [("S1", "delivered", "sms")])
    assert out["messages_lost"] == 1 and out["messages_sent"] == 0


def test_instructions_duplicate_loss_and_unexpected():
    out = count_instructions(["T1", "T2", "T3"], ["T1", "T1", "T2", "T9"])
    assert out == {
        "instructions_expected": 3,
        "instructions_received": 2,
        "instructions_duplicated": 1,
        "instructions_lost": 1,
        "instructions_pending": 0,
        "instructions_unexpected": 1,
    }


def test_missing_work_of_a_shipment_still_in_flight_is_pending_not_lost():
    required, allowed = expected_messages(JOURNEYS)
    sent = [("S1", "delivered", "whatsapp"), ("S2", "delivered", "sms")]  # S2's ndr_ask missing
    out = count_messages(required, allowed, sent, pending={"S2"})
    assert (out["messages_lost"], out["messages_pending"]) == (0, 1)
    out = count_messages(required, allowed, sent, pending={"S1"})
    assert (out["messages_lost"], out["messages_pending"]) == (1, 0)
    ins = count_instructions(["T1", "T2"], ["T1"], pending={"T2"})
    assert (ins["instructions_lost"], ins["instructions_pending"]) == (0, 1)
    ins = count_instructions(["T1", "T2"], ["T1"], pending={"T1"})
    assert (ins["instructions_lost"], ins["instructions_pending"]) == (1, 0)


def test_wrong_final_states():
    assert wrong_final_states(
        {"T1": "delivered", "T2": "delivered"}, {"T1": "delivered", "T2": "out_for_delivery"}
    ) == {"T2": "out_for_delivery"}
    assert wrong_final_states({"T3": "delivered"}, {}) == {"T3": "missing"}


def test_plan_fits_the_requested_shipments_in_the_budget_or_as_many_as_the_stack_takes():
    from chaos.run import DRAIN_S, MARGIN_S, STARTUP_S, plan_shipments

    plan = plan_shipments(1000, 600.0, max_rate=2.5)
    assert plan.shipments == 1000
    assert STARTUP_S + plan.load_s + DRAIN_S + MARGIN_S <= 600.0
    short = plan_shipments(1000, 300.0, max_rate=2.5)
    assert short.rate == 2.5 and 0 < short.shipments < 1000
    assert STARTUP_S + short.load_s + DRAIN_S + MARGIN_S <= 300.0 + 1e-6
