"""The merchant's rule for an NDR nobody answered (pure: rules are data, evaluation is a lookup).

A rule is a JSON object, so merchants keep them in configuration and the workflow can carry them in
its input (workflows cannot read configuration):

    {"name": "high-value COD goes back after 2 tries", "priority": 10, "action": "rto",
     "when": {"payment": "cod", "attempt_at_least": 2, "order_value_at_least": "5000"}}

`when` keys (all optional; a rule without `when` matches everything):
    reasons               list of NdrReason values
    payment               "cod" | "prepaid"
    attempt_at_least      int, the NDR attempt number (1 = first failed attempt)
    attempt_at_most       int
    order_value_at_least  decimal string, inclusive
    order_value_below     decimal string, exclusive (so ranges [0, 1000) and [1000, ...) do not overlap)
    customer_actionable   bool (taxonomy.is_customer_actionable of the reason)

`action` is one an instruction can carry without the customer: "reattempt", "rto" or
"hold_for_pickup". `escalate: true` also puts the case in the agents' queue.

Evaluation: the merchant's rules and the built-in DEFAULT_RULES form one list, sorted by
`priority` (ascending; on a tie the merchant's rule first); the first rule whose every condition
holds decides. A merchant rule with the same `name` as a default replaces it. The defaults end in
a catch-all, so there is always a decision:
    reattempt on attempts 1 and 2, return to origin from the 3rd; order cancelled at the door or
    out of delivery area -> return to origin; refused at the door and not confirmed -> return;
    carrier did not attempt -> reattempt and escalate (carrier fault); unmapped reasons ->
    reattempt and escalate (manual review).
Unknown keys are refused: a typo ("atempt_at_least") would otherwise silently widen a rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.taxonomy import NdrAction, NdrReason, is_customer_actionable

RULE_ACTIONS = frozenset({NdrAction.reattempt, NdrAction.rto, NdrAction.hold_for_pickup})
_WHEN_KEYS = frozenset(
    {"reasons", "payment", "attempt_at_least", "attempt_at_most", "order_value_at_least", "order_value_below", "customer_actionable"}
)
_RULE_KEYS = frozenset({"name", "priority", "action", "when", "escalate"})


class RuleError(ValueError):
    """A rule in configuration is invalid; the message names the rule and the field."""


@dataclass(frozen=True)
class NdrRule:
    action: NdrAction
    name: str = ""
    priority: int = 100
    reasons: tuple[NdrReason, ...] = ()  # empty: any reason
    payment: str | None = None  # "cod" | "prepaid" | None: either
    attempt_at_least: int | None = None
    attempt_at_most: int | None = None
    order_value_at_least: Decimal | None = None
    order_value_below: Decimal | None = None
    customer_actionable: bool | None = None
    escalate: bool = False

    def matches(self, *, reason: NdrReason, payment_mode: str, attempt: int, order_value: Decimal) -> bool:
        if self.reasons and reason not in self.reasons:
            return False
        if self.payment is not None and payment_mode != self.payment:
            return False
        if self.attempt_at_least is not None and attempt < self.attempt_at_least:
            return False
        if self.attempt_at_most is not None and attempt > self.attempt_at_most:
            return False
        if self.order_value_at_least is not None and order_value < self.order_value_at_least:
            return False
        if self.order_value_below is not None and order_value >= self.order_value_below:
            return False
        if self.customer_actionable is not None and is_customer_actionable(reason) != self.customer_actionable:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The configuration form (JSON-safe), which `load_rules` reads back."""
        when: dict[str, Any] = {}
        if self.reasons:
            when["reasons"] = [r.value for r in self.reasons]
        for key in ("payment", "attempt_at_least", "attempt_at_most", "customer_actionable"):
            if getattr(self, key) is not None:
                when[key] = getattr(self, key)
        for key in ("order_value_at_least", "order_value_below"):
            if getattr(self, key) is not None:
                when[key] = str(getattr(self, key))
        out: dict[str, Any] = {"name": self.name, "priority": self.priority, "action": self.action.value}
        if when:
            out["when"] = when
        if self.escalate:
            out["escalate"] = True
        return out


@dataclass(frozen=True)
class RuleDecision:
    action: NdrAction
    rule: str  # the name of the rule that decided, for the timeline ("decided by rule ...")
    escalate: bool = False
    source: str = field(default="merchant_rule")  # Instruction.source


DEFAULT_RULES: tuple[NdrRule, ...] = (
    NdrRule(
        NdrAction.rto, "default: cancelled at the door or not serviceable", 10,
        reasons=(NdrReason.order_cancelled_by_customer, NdrReason.out_of_delivery_area),
    ),
    NdrRule(NdrAction.reattempt, "default: carrier did not attempt", 20, reasons=(NdrReason.not_attempted,), escalate=True),
    NdrRule(NdrAction.rto, "default: refused and not confirmed", 30, reasons=(NdrReason.customer_refused,)),
    NdrRule(NdrAction.rto, "default: return after the third attempt", 90, attempt_at_least=3),
    NdrRule(
        NdrAction.reattempt, "default: unmapped reason, reattempt and review", 95,
        reasons=(NdrReason.other, NdrReason.unknown), escalate=True,
    ),
    NdrRule(NdrAction.reattempt, "default: reattempt", 1000),
)


def evaluate(
    rules: Iterable[NdrRule],
    *,
    reason: NdrReason | str,
    payment_mode: str,
    attempt: int,
    order_value: Decimal | str | int | float,
    defaults: Iterable[NdrRule] = DEFAULT_RULES,
) -> RuleDecision:
    """The action for an unanswered (or non-actionable) NDR. Always decides (defaults end in a catch-all)."""
    reason_e = _reason(reason)
    try:
        value = _decimal(order_value, "order_value")
    except RuleError:
        # Called from workflow code, which must not fail on a bad stored value: an unreadable
        # amount counts as 0 (value conditions then only match rules for cheap orders).
        value = Decimal(0)
    merchant = list(rules)
    names = {r.name for r in merchant if r.name}
    ordered = [(r.priority, 0, i, r) for i, r in enumerate(merchant)]
    ordered += [(r.priority, 1, i, r) for i, r in enumerate(defaults) if r.name not in names]
    ordered.sort(key=lambda t: t[:3])
    for _, _, _, rule in ordered:
        if rule.matches(reason=reason_e, payment_mode=payment_mode.lower(), attempt=attempt, order_value=value):
            return RuleDecision(rule.action, rule.name or f"rule {rule.priority}", rule.escalate)
    # Only reachable when a caller passes defaults without a catch-all.
    return RuleDecision(NdrAction.reattempt, "fallback: reattempt", True)


def load_rules(data: str | bytes | Iterable[Mapping[str, Any]] | Mapping[str, Any] | None) -> list[NdrRule]:
    """Rules from configuration: a JSON string, a list of rule objects, or {"rules": [...]}."""
    if data is None or data == "" or data == b"":
        return []
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise RuleError(f"NDR rules are not valid JSON: {exc}") from exc
    if isinstance(data, Mapping):
        if "rules" not in data:
            raise RuleError('NDR rules must be a list of rules or {"rules": [...]}')
        data = data["rules"]
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise RuleError("NDR rules must be a list of rule objects")
    return [_rule(i, item) for i, item in enumerate(data)]


def merchant_rules(config: Mapping[str, Any] | str | None, merchant_id: str) -> list[NdrRule]:
    """Per-merchant rules from {"<merchant_id>": [...], "*": [...]} ("*" applies to merchants
    without their own list)."""
    if config is None or config == "":
        return []
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise RuleError(f"NDR rules configuration is not valid JSON: {exc}") from exc
    if not isinstance(config, Mapping):
        raise RuleError('NDR rules configuration must be an object {"<merchant_id>": [rules], "*": [rules]}')
    return load_rules(config.get(merchant_id, config.get("*")))


def rules_to_dicts(rules: Iterable[NdrRule]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in rules]


# ---- validation ------------------------------------------------------------------------


def _rule(index: int, item: Any) -> NdrRule:
    where = f"NDR rule {index}"
    if not isinstance(item, Mapping):
        raise RuleError(f"{where} must be an object")
    if item.get("name"):
        where += f" ({item['name']!r})"
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
    try:
        action = NdrAction(item.get("action"))
    except ValueError:
        raise RuleError(f"{where}: action must be one of {sorted(a.value for a in RULE_ACTIONS)}, got {item.get('action')!r}") from None
    if action not in RULE_ACTIONS:
        raise RuleError(f"{where}: action {action.value!r} needs the customer's details; use one of {sorted(a.value for a in RULE_ACTIONS)}")
    priority = item.get("priority", 100)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise RuleError(f"{where}: priority must be an integer")
    when = item.get("when", {}) or {}
    if not isinstance(when, Mapping):
        raise RuleError(f"{where}: when must be an object")
    unknown = set(when) - _WHEN_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown condition(s) {sorted(unknown)}; allowed: {sorted(_WHEN_KEYS)}")
    reasons_raw = when.get("reasons", [])
    if isinstance(reasons_raw, str) or not isinstance(reasons_raw, list):
        raise RuleError(f"{where}: when.reasons must be a list of NDR reasons")
    reasons = []
    for r in reasons_raw:
        try:
            reasons.append(NdrReason(r))
        except ValueError:
            raise RuleError(f"{where}: when.reasons has unknown reason {r!r}") from None
    payment = when.get("payment")
    if payment is not None and payment not in ("cod", "prepaid"):
        raise RuleError(f"{where}: when.payment must be 'cod' or 'prepaid', got {payment!r}")
    ints = {}
    for key in ("attempt_at_least", "attempt_at_most"):
        v = when.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise RuleError(f"{where}: when.{key} must be a positive integer")
        ints[key] = v
    decs = {}
    for key in ("order_value_at_least", "order_value_below"):
        v = when.get(key)
        decs[key] = None if v is None else _decimal(v, f"{where}: when.{key}")
    actionable = when.get("customer_actionable")
    if actionable is not None and not isinstance(actionable, bool):
        raise RuleError(f"{where}: when.customer_actionable must be true or false")
    escalate = item.get("escalate", False)
    if not isinstance(escalate, bool):
        raise RuleError(f"{where}: escalate must be true or false")
    return NdrRule(
        action=action,
        name=str(item.get("name") or f"rule {index}"),
        priority=priority,
        reasons=tuple(reasons),
        payment=payment,
        attempt_at_least=ints["attempt_at_least"],
        attempt_at_most=ints["attempt_at_most"],
        order_value_at_least=decs["order_value_at_least"],
        order_value_below=decs["order_value_below"],
        customer_actionable=actionable,
        escalate=escalate,
    )


def _decimal(v: Any, what: str) -> Decimal:
    if isinstance(v, bool):
        raise RuleError(f"{what} must be a number")
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        raise RuleError(f"{what} must be a number, got {v!r}") from None
    if not d.is_finite():
        raise RuleError(f"{what} must be a finite number")
    return d


def _reason(reason: NdrReason | str) -> NdrReason:
    try:
        return NdrReason(reason)
    except ValueError:
        return NdrReason.unknown
