"""NDR case: timing decisions and the case state machine (pure; imports nothing from temporalio).

The shipment workflow owns one `NdrCase` per failed attempt (kept as a dict in
`ShipmentState.ndr_cases`, which is also the `ndr_cases` field of `GET /v1/shipments/{id}`) and
calls these functions with `workflow.now()`; they change the case in place and return a `Step`
saying what the workflow must do next: send an instruction to the carrier, answer the customer
(a message purpose), or raise an attention flag. Nothing here sleeps, reads a clock or does I/O.

States
    asking            question sent, waiting for the customer
    awaiting_date     the customer chose "2 pick a date"; the next message should be a date
    awaiting_details  the customer chose "3 change address or phone"; the next should be the details
    decided           an action is decided (customer, merchant rule or agent); instruction being sent
    instructed        the carrier acknowledged the instruction
    carrier_acted     an out-for-delivery / delivered (or RTO) scan followed the instruction
    escalated         a person must look (two unparsed replies, carrier rejected, did not act)
    closed            finished: delivered, returned, superseded by the next attempt, or resolved

    asking -> awaiting_date | awaiting_details -> decided -> instructed -> carrier_acted -> closed
    any open state -> escalated (agents) -> decided (agent action) | closed

Replies (`apply_reply`): in the waiting states an understood answer decides the case or asks for
its missing half; an unclear one gets one clarification, the second escalates. Replies to decided,
instructed or escalated cases are recorded and answered with the current decision (a dispute is
still recorded as evidence and escalated); replies to carrier_acted or closed cases are refused
by `validate_reply` (the Update validator), so they never reach history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.events import normalise_time
from domain.instructions import Instruction, InstructionResult
from domain.ndr_options import DEFAULT_MAX_DAYS, REPLY_KINDS, MenuOption, allowed_dates, options_for
from domain.ndr_rules import NdrRule, RuleDecision, evaluate, load_rules
from domain.taxonomy import Milestone, NdrAction, NdrReason, allowed_customer_actions, is_customer_actionable
from workflows import notify_policy
from workflows.messages import CustomerReplyInput, CustomerReplyResult

# ---- states -----------------------------------------------------------------------------
ASKING = "asking"
AWAITING_DATE = "awaiting_date"
AWAITING_DETAILS = "awaiting_details"
DECIDED = "decided"
INSTRUCTED = "instructed"
CARRIER_ACTED = "carrier_acted"
ESCALATED = "escalated"
CLOSED = "closed"
STATES = (ASKING, AWAITING_DATE, AWAITING_DETAILS, DECIDED, INSTRUCTED, CARRIER_ACTED, ESCALATED, CLOSED)
WAITING_STATES = frozenset({ASKING, AWAITING_DATE, AWAITING_DETAILS})  # waiting for the customer
FINISHED_STATES = frozenset({CARRIER_ACTED, CLOSED})  # replies refused

# What a reply did (CustomerReplyResult.outcome, Step.outcome).
OUTCOMES = (
    "decided", "awaiting_date", "awaiting_details", "clarify", "escalated", "dispute_recorded",
    "opted_out", "opted_in", "asked_again", "already_decided", "noted", "duplicate", "refused",
)

# Message purposes the workflow sends in answer (templates: <channel>/<purpose>.<locale>.j2).
NOTIFY_ASK = "ndr_ask"
NOTIFY_REMINDER = "ndr_reminder"
NOTIFY_ASK_DATE = "ndr_ask_date"
NOTIFY_ASK_DETAILS = "ndr_ask_details"
NOTIFY_CONFIRM = "ndr_confirm"
NOTIFY_CLARIFY = "ndr_clarify"
NOTIFY_ESCALATED = "ndr_escalated"  # "a person from <merchant> will contact you"
NOTIFY_DISPUTE_ACK = "ndr_dispute_ack"
NOTIFY_ALREADY_DECIDED = "ndr_already_decided"
NOTIFY_WHICH_CASE = "ndr_which_case"  # sent by the API when a customer has two open cases

# Attention reasons (search attribute AttentionReason).
ATTN_UNPARSED = "unparsed_replies"
ATTN_FAKE_ATTEMPT = "suspected_fake_attempt"
ATTN_DISPUTE = "customer_disputes_attempt"
ATTN_CARRIER_REJECTED = "carrier_rejected"
ATTN_CARRIER_UNREACHABLE = "carrier_unreachable"
ATTN_CARRIER_DID_NOT_ACT = "carrier_did_not_act"
ATTN_RULE = "ndr_rule_review"  # a merchant rule asked for review (e.g. unmapped reason)

# "I was home, nobody came" on these reasons is a suspected fake attempt (agents see the evidence);
# the issue names customer_unavailable, and the same claim disproves "not reachable" and "door locked".
FAKE_ATTEMPT_REASONS = frozenset({NdrReason.customer_unavailable, NdrReason.customer_unreachable, NdrReason.premises_closed})

REPLY_CHANNELS = frozenset({"sms", "whatsapp", "email", "web", "agent"})
MAX_TEXT_KEPT = 500  # of a reply's words in the case (timeline, evidence)


# ---- policy settings ------------------------------------------------------------------------


@dataclass
class NdrPolicy:
    """Timing knobs; travels in the workflow input (workflows cannot read configuration)."""

    reminder_offsets_s: list[float] = field(default_factory=lambda: [2 * 3600.0, 8 * 3600.0])
    quiet_hours: str = "21:00-09:00"  # recipient local; "" turns quiet hours off
    cutoff_time: str = "09:00"  # decide by this local time, before the carrier's next run
    cutoff_min_window_s: float = 6 * 3600.0  # the customer gets at least this long to answer
    max_days: int = DEFAULT_MAX_DAYS  # the latest reattempt date the carrier takes
    carrier_grace_days: int = 1  # after the agreed date, before "carrier did not act"


# ---- the case -----------------------------------------------------------------------------


@dataclass
class NdrCase:
    attempt: int  # 1 for the first failed delivery, 2 for the second, ...
    reason: str  # NdrReason value
    state: str = ASKING
    opened_at: str = ""  # ISO UTC, our time
    cod: bool = False
    order_value: str = "0"
    ref: str = ""  # short reference code ("K7QM") from the reply-route store, "" until known
    event_at: str | None = None  # carrier time of the failed-attempt scan (fake-attempt evidence)
    asked_at: str | None = None
    cutoff_at: str | None = None
    decided_at: str | None = None
    decided_by: str | None = None  # "customer" | "merchant_rule" | "agent"
    decision_rule: str | None = None
    agreed_date: str | None = None  # YYYY-MM-DD the carrier is expected to deliver on
    carrier_deadline: str | None = None  # ISO UTC: no scan by then -> "carrier did not act"
    responses: list[dict[str, Any]] = field(default_factory=list)
    instructions: list[dict[str, Any]] = field(default_factory=list)
    unparsed_count: int = 0
    reminders_sent: int = 0
    flags: list[str] = field(default_factory=list)  # e.g. "suspected_fake_attempt", "opted_out"
    evidence: list[dict[str, Any]] = field(default_factory=list)
    escalation_reason: str | None = None
    closed_at: str | None = None
    close_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NdrCase:
        """Tolerates unknown keys (newer workflow code) and missing ones (older histories)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def waiting(self) -> bool:
        return self.state in WAITING_STATES

    @property
    def last_instruction(self) -> dict[str, Any] | None:
        return self.instructions[-1] if self.instructions else None


@dataclass
class Step:
    """What the workflow does after a transition."""

    case: NdrCase
    outcome: str
    instruction: Instruction | None = None  # send to the carrier (seq = case.instructions[-1]["seq"])
    notify: str | None = None  # message purpose to send the customer
    escalate: str | None = None  # AttentionReason to raise
    detail: str = ""

    def result(self, *, accepted: bool = True, duplicate: bool = False) -> CustomerReplyResult:
        # A duplicate repeats the standing decision, so a retried request gets the same answer.
        last = self.case.last_instruction if self.instruction is not None or self.outcome == "duplicate" else None
        return CustomerReplyResult(
            accepted=accepted,
            outcome=self.outcome,
            state=self.case.state,
            notify=self.notify,
            action=last["action"] if last else None,
            requested_date=last.get("requested_date") if last else None,
            detail=self.detail,
            duplicate=duplicate,
        )


def instruction_key(shipment_id: str, attempt: int, seq: int) -> str:
    """SendInstructionInput.idempotency_key: one key per instruction, never re-sent once acknowledged."""
    return f"{shipment_id}:ndr{attempt}:{seq}"


def as_case(case: NdrCase | Mapping[str, Any]) -> NdrCase:
    return case if isinstance(case, NdrCase) else NdrCase.from_dict(case)


def store_case(cases: list[dict[str, Any]], case: NdrCase) -> None:
    """Write `case` back into ShipmentState.ndr_cases (replacing its attempt, else appending)."""
    for i, c in enumerate(cases):
        if c.get("attempt") == case.attempt:
            cases[i] = case.to_dict()
            return
    cases.append(case.to_dict())


def current_case(cases: list[dict[str, Any]]) -> NdrCase | None:
    """The latest attempt's case (the only one that can still be open)."""
    return NdrCase.from_dict(max(cases, key=lambda c: c.get("attempt", 0))) if cases else None


def find_case(cases: Iterable[NdrCase | Mapping[str, Any]], attempt: int) -> NdrCase | None:
    for c in cases:
        c = as_case(c)
        if c.attempt == attempt:
            return c
    return None


# ---- opening and deciding -----------------------------------------------------------------


def open_case(
    *,
    attempt: int,
    reason: str,
    now: datetime,
    tz: str,
    cod: bool = False,
    order_value: str = "0",
    event_at: str | None = None,
    rules: Iterable[NdrRule | Mapping[str, Any]] = (),
    policy: NdrPolicy | None = None,
) -> Step:
    """A new case for a delivery_failed event. Customer-actionable reasons ask the customer
    (cutoff set); the others go straight to the merchant's rule."""
    policy = policy or NdrPolicy()
    case = NdrCase(
        attempt=attempt, reason=str(reason), opened_at=_iso(now), cod=cod, order_value=str(order_value), event_at=event_at
    )
    if is_customer_actionable(reason):
        case.state = ASKING
        case.asked_at = _iso(now)
        case.cutoff_at = _iso(decision_cutoff(now, tz, policy=policy))
        return Step(case, "asking", notify=NOTIFY_ASK)
    return decide_by_rule(case, rule_decision(case, rules), now)


def rule_decision(case: NdrCase, rules: Iterable[NdrRule | Mapping[str, Any]] = ()) -> RuleDecision:
    """The merchant's rule for this case (rules as NdrRule or their configuration dicts)."""
    rules = list(rules)
    parsed = [r for r in rules if isinstance(r, NdrRule)] + load_rules([r for r in rules if not isinstance(r, NdrRule)])
    return evaluate(
        parsed, reason=case.reason, payment_mode="cod" if case.cod else "prepaid", attempt=case.attempt, order_value=case.order_value
    )


def decide_by_rule(case: NdrCase, decision: RuleDecision, now: datetime) -> Step:
    """Nobody answered by the cutoff (or the reason is not the customer's to fix)."""
    # Waiting for the customer, or escalated without any instruction yet (two unclear replies):
    # the carrier's next run does not wait for the agent, the rule keeps the parcel moving.
    if not (case.state in WAITING_STATES or (case.state == ESCALATED and not case.instructions)):
        return Step(case, "noted", detail=f"already {case.state}")
    step = _decide(case, Instruction(action=decision.action.value, source="merchant_rule"), now, by="merchant_rule")
    case.decision_rule = decision.rule
    step.notify = None  # the customer did not answer; the milestone notification tells them what happens
    if decision.escalate:
        step.escalate = ATTN_RULE
        _flag(case, ATTN_RULE)
    step.detail = f"rule: {decision.rule}"
    return step


def decide_by_agent(case: NdrCase, instruction: Instruction, now: datetime, *, who: str = "") -> Step:
    """An agent's action (issue 6): decides whatever the state, except a finished case."""
    if case.state == CLOSED:
        return Step(case, "refused", detail="case is closed")
    instruction.source = "agent"
    step = _decide(case, instruction, now, by="agent")
    step.detail = f"agent {who}".strip()
    case.escalation_reason = None
    return step


def _decide(case: NdrCase, instruction: Instruction, now: datetime, *, by: str) -> Step:
    seq = len(case.instructions) + 1
    case.instructions.append(
        {
            "seq": seq,
            "action": instruction.action,
            "status": "pending",
            "requested_date": instruction.requested_date,
            "phone": instruction.phone,
            "address": instruction.address,
            "comments": instruction.comments,
            "source": instruction.source,
            "decided_at": _iso(now),
        }
    )
    case.state = DECIDED
    case.decided_at = _iso(now)
    case.decided_by = by
    case.agreed_date = instruction.requested_date
    return Step(case, "decided", instruction=instruction, notify=NOTIFY_CONFIRM)


# ---- replies ------------------------------------------------------------------------------


def validate_reply(case: NdrCase | Mapping[str, Any] | None, reply: CustomerReplyInput) -> str | None:
    """Error text when the workflow must refuse the reply (Update validator), else None."""
    if case is None:
        return f"there is no NDR case for attempt {reply.attempt}"
    case = as_case(case)
    if case.state == CLOSED:
        return f"NDR case {case.attempt} is closed ({case.close_reason or 'finished'}); replies are no longer accepted"
    if case.state == CARRIER_ACTED:
        return f"NDR case {case.attempt} is finished: the carrier has already acted on the instruction"
    if reply.kind not in REPLY_KINDS:
        return f"unknown reply kind {reply.kind!r}"
    if reply.channel not in REPLY_CHANNELS:
        return f"unknown reply channel {reply.channel!r}"
    try:
        _parse_iso(reply.received_at)
    except (TypeError, ValueError):
        return f"received_at is not an ISO-8601 time: {reply.received_at!r}"
    if reply.action is not None:
        try:
            action = NdrAction(reply.action)
        except ValueError:
            return f"unknown action {reply.action!r}"
        if action not in allowed_customer_actions(case.reason):
            return f"action {action.value} is not allowed for reason {case.reason}"
    if reply.requested_date is not None:
        try:
            date.fromisoformat(reply.requested_date)
        except (TypeError, ValueError):
            return f"requested_date must be YYYY-MM-DD, got {reply.requested_date!r}"
    if reply.kind == "date" and reply.requested_date is None:
        return "a date reply needs requested_date"
    if reply.kind == "phone" and reply.problem_code is None and not reply.phone:
        return "a phone reply needs phone"
    if reply.kind == "address" and reply.problem_code is None and not reply.address:
        return "an address reply needs address"
    return None


def apply_reply(case: NdrCase, reply: CustomerReplyInput) -> Step:
    """Apply a validated reply. Idempotent per `reply.message_id` (retried webhooks)."""
    if reply.message_id and any(r.get("message_id") == reply.message_id for r in case.responses):
        return Step(case, "duplicate", detail="this message was applied before")
    error = validate_reply(case, reply)
    if error:
        return Step(case, "refused", detail=error)
    now = _parse_iso(reply.received_at)
    response = {
        "at": reply.received_at,
        "channel": reply.channel,
        "kind": reply.kind,
        "action": reply.action,
        "requested_date": reply.requested_date,
        "text": reply.text[:MAX_TEXT_KEPT],
        "confidence": reply.confidence,
        "problem_code": reply.problem_code,
        "message_id": reply.message_id,
        "state_before": case.state,
    }
    case.responses.append(response)
    step = _apply(case, reply, now)
    response["outcome"] = step.outcome
    return step


def _apply(case: NdrCase, reply: CustomerReplyInput, now: datetime) -> Step:
    kind = reply.kind
    if kind == "opt_out":
        _flag(case, "opted_out")
        return Step(case, "opted_out")  # nothing more is sent on that channel; the cutoff still applies
    if kind == "opt_in":
        case.flags = [f for f in case.flags if f != "opted_out"]
        return Step(case, "opted_in", notify=NOTIFY_ASK if case.waiting else None)
    if kind == "dispute":
        return _dispute(case, reply, now)
    if kind == "case_ref":
        return Step(case, "asked_again", notify=NOTIFY_ASK if case.waiting else NOTIFY_ALREADY_DECIDED)

    if not case.waiting:
        # Decided, instructed or with an agent: keep the words for the agent, repeat the decision.
        if case.state == ESCALATED:
            return Step(case, "noted", notify=None, detail="recorded for the agent")
        return Step(case, "already_decided", notify=NOTIFY_ALREADY_DECIDED)

    if kind == "unclear" or reply.problem_code is not None:
        return _miss(case, reply)

    action = NdrAction(reply.action) if reply.action else None
    if action is None:
        return _miss(case, reply)
    if action == NdrAction.reschedule and not reply.requested_date:
        case.state = AWAITING_DATE
        return Step(case, "awaiting_date", notify=NOTIFY_ASK_DATE)
    if action == NdrAction.update_address and not reply.address:
        case.state = AWAITING_DETAILS
        return Step(case, "awaiting_details", notify=NOTIFY_ASK_DETAILS)
    if action == NdrAction.update_phone and not reply.phone:
        case.state = AWAITING_DETAILS
        return Step(case, "awaiting_details", notify=NOTIFY_ASK_DETAILS)
    return _decide(case, _instruction(reply, action), now, by="customer")


def _miss(case: NdrCase, reply: CustomerReplyInput) -> Step:
    """One clarification per case; the second miss goes to a person."""
    case.unparsed_count += 1
    if case.unparsed_count >= 2:
        case.state = ESCALATED
        case.escalation_reason = ATTN_UNPARSED
        return Step(case, "escalated", notify=NOTIFY_ESCALATED, escalate=ATTN_UNPARSED, detail=reply.problem or "")
    if reply.problem_code and reply.problem_code.startswith("date_"):
        case.state = AWAITING_DATE
        return Step(case, "clarify", notify=NOTIFY_ASK_DATE, detail=reply.problem or "")
    return Step(case, "clarify", notify=NOTIFY_CLARIFY, detail=reply.problem or "")


def _dispute(case: NdrCase, reply: CustomerReplyInput, now: datetime) -> Step:
    fake = _reason(case.reason) in FAKE_ATTEMPT_REASONS
    attention = ATTN_FAKE_ATTEMPT if fake else ATTN_DISPUTE
    case.evidence.append(
        {
            "kind": attention,
            "reason": case.reason,
            "scan_at": case.event_at,
            "reply_at": reply.received_at,
            "channel": reply.channel,
            "text": reply.text[:MAX_TEXT_KEPT],
        }
    )
    _flag(case, attention)
    if case.waiting and reply.action and reply.problem_code is None:
        # The customer still wants the parcel: send the reattempt now, and let agents look.
        step = _decide(case, _instruction(reply, NdrAction(reply.action)), now, by="customer")
        step.outcome, step.notify, step.escalate = "dispute_recorded", NOTIFY_DISPUTE_ACK, attention
        return step
    if case.state not in (DECIDED, INSTRUCTED):
        case.state = ESCALATED
        case.escalation_reason = attention
    return Step(case, "dispute_recorded", notify=NOTIFY_DISPUTE_ACK, escalate=attention)


def _instruction(reply: CustomerReplyInput, action: NdrAction) -> Instruction:
    comments = f"customer: {reply.time_hint}" if reply.time_hint else ""
    return Instruction(
        action=action.value,
        requested_date=reply.requested_date,
        phone=reply.phone,
        address=reply.address,
        comments=comments,
        source="customer",
    )


# ---- the carrier's side -------------------------------------------------------------------


def record_instruction_result(
    case: NdrCase, seq: int, result: InstructionResult, now: datetime, *, tz: str, policy: NdrPolicy | None = None
) -> Step:
    """The carrier adapter's answer. Accepted -> instructed (with the "did it act" deadline);
    rejected or unsupported -> escalated."""
    policy = policy or NdrPolicy()
    ins = _instruction_by_seq(case, seq)
    ins.update(status=result.status, answered_at=_iso(now), detail=result.detail,
               carrier_reference=result.carrier_reference, http_status=result.http_status)
    if result.status == "accepted":
        if case.state == DECIDED:
            case.state = INSTRUCTED
        if ins["action"] != NdrAction.rto.value:
            case.carrier_deadline = _iso(carrier_deadline(ins.get("requested_date"), now, tz, grace_days=policy.carrier_grace_days))
        return Step(case, "instructed")
    case.state = ESCALATED
    case.escalation_reason = ATTN_CARRIER_REJECTED
    return Step(case, "escalated", escalate=ATTN_CARRIER_REJECTED, detail=result.detail)


def record_instruction_failure(case: NdrCase, seq: int, detail: str, now: datetime) -> Step:
    """The instruction activity failed after all retries (carrier unreachable)."""
    _instruction_by_seq(case, seq).update(status="failed", answered_at=_iso(now), detail=detail)
    case.state = ESCALATED
    case.escalation_reason = ATTN_CARRIER_UNREACHABLE
    return Step(case, "escalated", escalate=ATTN_CARRIER_UNREACHABLE, detail=detail)


FORWARD_PROGRESS = frozenset({Milestone.out_for_delivery, Milestone.delivered})
RETURN_PROGRESS = frozenset({Milestone.rto_initiated, Milestone.rto_in_transit, Milestone.rto_delivered})
CLOSING_MILESTONES = frozenset({Milestone.delivered, Milestone.rto_delivered, Milestone.cancelled, Milestone.lost, Milestone.damaged})


def on_milestone(case: NdrCase, milestone: str, now: datetime) -> Step:
    """A carrier scan after the case opened. Out-for-delivery / delivered (or an RTO scan after an
    RTO instruction) is the carrier acting; a terminal milestone closes the case."""
    try:
        m = Milestone(milestone)
    except ValueError:
        m = Milestone.unknown
    if case.state == CLOSED:
        return Step(case, "noted")
    ins = case.last_instruction
    is_rto = bool(ins and ins["action"] == NdrAction.rto.value)
    acted = (m in RETURN_PROGRESS) if is_rto else (m in FORWARD_PROGRESS)
    if m in RETURN_PROGRESS and not is_rto:
        acted = True  # the carrier returned it anyway: nothing more to ask or wait for
    if m in CLOSING_MILESTONES:
        _close(case, now, m.value)
        return Step(case, "closed")
    if acted:
        if ins is not None and ins["status"] in ("pending", "accepted"):
            ins["carrier_acted_at"] = _iso(now)
        case.state = CARRIER_ACTED
        case.carrier_deadline = None
        return Step(case, "carrier_acted")
    return Step(case, "noted")


def on_new_attempt(case: NdrCase, now: datetime) -> Step:
    """The next delivery_failed opens a new case; this one is superseded."""
    if case.state != CLOSED:
        if case.last_instruction and case.last_instruction.get("status") in ("pending", "accepted"):
            case.last_instruction["carrier_acted_at"] = case.last_instruction.get("carrier_acted_at") or _iso(now)
        _close(case, now, "superseded")
    return Step(case, "closed")


def carrier_did_not_act(case: NdrCase, now: datetime) -> Step:
    """Called when `case.carrier_deadline` passes without a scan."""
    if case.state not in (DECIDED, INSTRUCTED):
        return Step(case, "noted")
    case.state = ESCALATED
    case.escalation_reason = ATTN_CARRIER_DID_NOT_ACT
    _flag(case, ATTN_CARRIER_DID_NOT_ACT)
    return Step(case, "escalated", escalate=ATTN_CARRIER_DID_NOT_ACT)


def close_case(case: NdrCase, now: datetime, reason: str) -> Step:
    _close(case, now, reason)
    return Step(case, "closed")


def note_reminder(case: NdrCase) -> None:
    case.reminders_sent += 1


def _close(case: NdrCase, now: datetime, reason: str) -> None:
    case.state = CLOSED
    case.closed_at = _iso(now)
    case.close_reason = reason
    case.carrier_deadline = None


def _flag(case: NdrCase, flag: str) -> None:
    if flag not in case.flags:
        case.flags.append(flag)


def _instruction_by_seq(case: NdrCase, seq: int) -> dict[str, Any]:
    for ins in case.instructions:
        if ins["seq"] == seq:
            return ins
    raise KeyError(f"NDR case {case.attempt} has no instruction {seq}")


# ---- timing ---------------------------------------------------------------------------------


# Quiet hours are the notification policy's (one definition for every message the customer gets).
parse_quiet_hours = notify_policy.parse_quiet_hours


def in_quiet_hours(t: datetime, tz: str, quiet: str | None) -> bool:
    return notify_policy.quiet_hours_deadline(t, tz, quiet) is not None


def quiet_hours_end(t: datetime, tz: str, quiet: str | None) -> datetime:
    """`t` itself when outside quiet hours, else the moment the window opens (recipient local)."""
    opens = notify_policy.quiet_hours_deadline(t, tz, quiet)
    return t if opens is None else opens.astimezone(t.tzinfo)


def reminder_times(
    asked_at: datetime, tz: str, *, cutoff: datetime | None = None, policy: NdrPolicy | None = None
) -> list[datetime]:
    """When to remind (defaults +2 h and +8 h). A reminder in quiet hours moves to the window's
    opening; reminders that would coincide with an earlier one, or come at or after the cutoff,
    are dropped (a reminder after the decision is noise)."""
    policy = policy or NdrPolicy()
    out: list[datetime] = []
    for offset in policy.reminder_offsets_s:
        t = quiet_hours_end(asked_at + timedelta(seconds=offset), tz, policy.quiet_hours)
        if cutoff is not None and t >= cutoff:
            continue
        if out and t <= out[-1]:
            continue
        out.append(t)
    return out


def decision_cutoff(asked_at: datetime, tz: str, *, policy: NdrPolicy | None = None) -> datetime:
    """The next `cutoff_time` (default 09:00 local) that leaves the customer at least
    `cutoff_min_window_s` (6 h): an ask at 19:00 decides at 09:00 the next day, an ask at 02:00
    (a late carrier upload) at 09:00 the same morning, before the carrier's next run."""
    policy = policy or NdrPolicy()
    zone = ZoneInfo(tz)
    local = asked_at.astimezone(zone)
    at = time.fromisoformat(policy.cutoff_time)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    while candidate - local < timedelta(seconds=policy.cutoff_min_window_s):
        candidate = datetime.combine(candidate.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(asked_at.tzinfo)


def allowed_reattempt_dates(now: datetime, tz: str, *, policy: NdrPolicy | None = None) -> list[date]:
    """Tomorrow .. +max_days in the customer's calendar (the self-service page offers only these)."""
    policy = policy or NdrPolicy()
    return allowed_dates(now, tz, max_days=policy.max_days)


def carrier_deadline(agreed_date: str | None, instructed_at: datetime, tz: str, *, grace_days: int = 1) -> datetime:
    """End of the day (customer local) `grace_days` after the agreed date; without an agreed date
    (plain reattempt) the carrier's next day counts as agreed."""
    zone = ZoneInfo(tz)
    day = date.fromisoformat(agreed_date) if agreed_date else instructed_at.astimezone(zone).date() + timedelta(days=1)
    end = datetime.combine(day + timedelta(days=grace_days + 1), time(0, 0), tzinfo=zone)  # midnight ending the grace day
    return end.astimezone(instructed_at.tzinfo)


# ---- what to offer ----------------------------------------------------------------------------


def offered_options(reason: str) -> list[MenuOption]:
    """Numbered options for the reason (fixed numbers; missing ones are not offered)."""
    return options_for(reason)


def menu_context(reason: str) -> list[dict[str, Any]]:
    """Template context: [{"number": 1, "key": "deliver_tomorrow", "action": "reattempt",
    "label": "reattempt"}, ...]. Render `number` (fixed: a reason without option 3 shows
    "1 ..., 2 ..., 4 cancel"; never loop.index, or "3" would mean cancel in the message but a
    change of address to the parser) and the text for `label` (templates/labels.py "option")."""
    return [{"number": o.number, "key": o.key, "action": o.action.value, "label": o.label} for o in offered_options(reason)]


def number_to_action(reason: str) -> dict[int, str]:
    return {o.number: o.action.value for o in offered_options(reason)}


# ---- helpers ---------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return normalise_time(t)


def _parse_iso(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("naive time")
    return dt


def _reason(value: str) -> NdrReason:
    try:
        return NdrReason(value)
    except ValueError:
        return NdrReason.unknown
