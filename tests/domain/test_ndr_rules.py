"""The merchant's default rule for unanswered NDRs: data in, one decision out."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from domain.ndr_rules import (
    DEFAULT_RULES,
    NdrRule,
    RuleError,
    evaluate,
    load_rules,
    merchant_rules,
    rules_to_dicts,
)
from domain.taxonomy import NdrAction, NdrReason

R = NdrReason


def decide(rules=(), reason=R.customer_unavailable, payment="prepaid", attempt=1, value="999"):  # type: ignore[no-untyped-def]
    return evaluate(rules, reason=reason, payment_mode=payment, attempt=attempt, order_value=value)


@pytest.mark.parametrize(
    ("reason", "attempt", "action", "escalate"),
    [
        (R.customer_unavailable, 1, NdrAction.reattempt, False),
        (R.customer_unavailable, 2, NdrAction.reattempt, False),
        (R.customer_unavailable, 3, NdrAction.rto, False),
        (R.address_issue, 4, NdrAction.rto, False),
        (R.order_cancelled_by_customer, 1, NdrAction.rto, False),
        (R.out_of_delivery_area, 1, NdrAction.rto, False),
        (R.customer_refused, 1, NdrAction.rto, False),
        (R.not_attempted, 1, NdrAction.reattempt, True),
        (R.not_attempted, 3, NdrAction.reattempt, True),  # carrier's fault: never a reason to return
        (R.unknown, 1, NdrAction.reattempt, True),
        (R.other, 3, NdrAction.rto, False),
    ],
)
def test_defaults(reason, attempt, action, escalate):  # type: ignore[no-untyped-def]
    d = decide(reason=reason, attempt=attempt)
    assert (d.action, d.escalate) == (action, escalate), d.rule


MERCHANT = json.dumps(
    [
        {"name": "expensive COD returns after 2", "priority": 10, "action": "rto",
         "when": {"payment": "cod", "attempt_at_least": 2, "order_value_at_least": "5000"}},
        {"name": "cheap prepaid keeps trying", "priority": 50, "action": "reattempt",
         "when": {"payment": "prepaid", "order_value_below": "500", "attempt_at_most": 4}},
        {"name": "self-collect goes to the counter", "priority": 40, "action": "hold_for_pickup",
         "when": {"reasons": ["self_collect_requested"]}},
    ]
)


@pytest.mark.parametrize(
    ("payment", "attempt", "value", "reason", "action", "rule"),
    [
        ("cod", 2, "5000", R.customer_unavailable, NdrAction.rto, "expensive COD returns after 2"),
        ("cod", 2, "4999.99", R.customer_unavailable, NdrAction.reattempt, "default: reattempt"),
        ("cod", 1, "9000", R.customer_unavailable, NdrAction.reattempt, "default: reattempt"),
        ("COD", 2, "9000", R.customer_unavailable, NdrAction.rto, "expensive COD returns after 2"),
        ("prepaid", 4, "499", R.customer_unavailable, NdrAction.reattempt, "cheap prepaid keeps trying"),
        ("prepaid", 4, "500", R.customer_unavailable, NdrAction.rto, "default: return after the third attempt"),
        ("prepaid", 5, "100", R.customer_unavailable, NdrAction.rto, "default: return after the third attempt"),
        ("prepaid", 1, "100", R.self_collect_requested, NdrAction.hold_for_pickup, "self-collect goes to the counter"),
        # Same priority (10) as the default ODA rule: the merchant's rule comes first on a tie.
        ("cod", 2, "6000", R.out_of_delivery_area, NdrAction.rto, "expensive COD returns after 2"),
    ],
)
def test_merchant_rules_in_priority_order(payment, attempt, value, reason, action, rule):  # type: ignore[no-untyped-def]
    d = decide(load_rules(MERCHANT), reason=reason, payment=payment, attempt=attempt, value=value)
    assert (d.action, d.rule) == (action, rule)


def test_a_merchant_rule_replaces_the_default_of_the_same_name():
    rules = load_rules([{"name": "default: return after the third attempt", "priority": 90, "action": "rto",
                         "when": {"attempt_at_least": 5}}])
    assert decide(rules, attempt=3).action == NdrAction.reattempt
    assert decide(rules, attempt=5).action == NdrAction.rto


def test_non_actionable_reasons_can_be_routed_per_rule():
    rules = load_rules([{"name": "ODA: try once more", "priority": 5, "action": "reattempt",
                         "when": {"reasons": ["out_of_delivery_area"], "attempt_at_most": 1}}])
    assert decide(rules, reason=R.out_of_delivery_area, attempt=1).action == NdrAction.reattempt
    assert decide(rules, reason=R.out_of_delivery_area, attempt=2).action == NdrAction.rto
    rules = load_rules([{"name": "anything the customer cannot fix", "priority": 1, "action": "rto",
                         "when": {"customer_actionable": False}}])
    assert decide(rules, reason=R.not_attempted).action == NdrAction.rto
    assert decide(rules, reason=R.customer_unavailable).action == NdrAction.reattempt


def test_rules_round_trip_through_their_configuration_form():
    rules = load_rules(MERCHANT)
    again = load_rules(json.dumps(rules_to_dicts(rules)))
    assert again == rules
    assert load_rules(rules_to_dicts(DEFAULT_RULES)) == list(DEFAULT_RULES)


def test_per_merchant_configuration():
    cfg = {"acme": json.loads(MERCHANT), "*": [{"name": "everyone else: return after 2", "priority": 1,
                                                 "action": "rto", "when": {"attempt_at_least": 2}}]}
    assert len(merchant_rules(cfg, "acme")) == 3
    assert decide(merchant_rules(cfg, "zeta"), attempt=2).action == NdrAction.rto
    assert merchant_rules(None, "acme") == []
    assert merchant_rules(json.dumps(cfg), "acme") == load_rules(MERCHANT)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[{", "not valid JSON"),
        ('{"x": 1}', 'must be a list of rules or {"rules"'),
        ([{"action": "explode"}], "action must be one of"),
        ([{"action": "reschedule"}], "needs the customer's details"),
        ([{"action": "rto", "when": {"atempt_at_least": 2}}], "unknown condition(s) ['atempt_at_least']"),
        ([{"action": "rto", "colour": "red"}], "unknown field(s) ['colour']"),
        ([{"action": "rto", "when": {"reasons": ["not_home"]}}], "unknown reason 'not_home'"),
        ([{"action": "rto", "when": {"reasons": "address_issue"}}], "must be a list of NDR reasons"),
        ([{"action": "rto", "when": {"payment": "card"}}], "'cod' or 'prepaid'"),
        ([{"action": "rto", "when": {"attempt_at_least": 0}}], "positive integer"),
        ([{"action": "rto", "when": {"order_value_below": "lots"}}], "must be a number"),
        ([{"action": "rto", "when": {"order_value_below": "NaN"}}], "finite"),
        ([{"action": "rto", "priority": "high"}], "priority must be an integer"),
        ([{"name": "x", "action": "rto", "escalate": "yes"}], "NDR rule 0 ('x'): escalate must be true or false"),
    ],
)
def test_invalid_rules_are_refused_with_the_field_named(data, message):  # type: ignore[no-untyped-def]
    with pytest.raises(RuleError) as exc:
        load_rules(data)
    assert message in str(exc.value)


def test_an_unreadable_order_value_does_not_fail_the_evaluation():
    rules = [NdrRule(NdrAction.rto, "cheap", 1, order_value_below=Decimal(100))]
    assert decide(rules, value="not-a-number").rule == "cheap"
