"""From an inbound customer message to the NDR case it answers, and on to the workflow.

`route_inbound` (store lookups only) decides which case a message belongs to:
  * email: the per-case reply-to address (r+<key>@<inbound domain>) names the case exactly;
  * a verified self-service token names the case exactly;
  * otherwise the sender's open cases (by phone, or by email address): one -> that case; several ->
    the message must carry one of their reference codes ("K7QM 2"), else we ask which
    (`AskWhichCase`); a bare code sent after that question re-applies the earlier message.
`handle_inbound` is the whole path for a webhook that has already verified the provider's
signature: log once (provider message id), route, read the case (query `state`), parse the words
(domain.reply_parser) in the customer's time zone and language, and send the Temporal Update
`customer_reply`. What the customer is told comes from the workflow (confirmation, clarification);
when the workflow is not involved (`ask_which`, no open case, a closed case) the outcome names a
message purpose for the webhook to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.case_ref import extract_ref
from domain.ndr_options import DEFAULT_MAX_DAYS
from domain.reply_parser import ParsedReply, parse_reply
from domain.taxonomy import allowed_customer_actions
from store import ndr as routes
from workflows.ids import shipment_workflow_id
from workflows.messages import CUSTOMER_REPLY, CustomerReplyInput, CustomerReplyResult, ShipmentState
from workflows.ndr_policy import NOTIFY_WHICH_CASE, NdrCase, find_case

NOTIFY_NO_OPEN_CASE = "ndr_no_open_case"  # "we have no open question for you; contact <merchant>"
NOTIFY_CASE_CLOSED = "ndr_case_closed"  # "this delivery is already settled"
ASK_WHICH_WINDOW = timedelta(hours=24)  # a bare code re-applies the message that got "which one?"


@dataclass(frozen=True)
class InboundMessage:
    channel: str  # sms | whatsapp | email | web
    from_address: str  # E.164 ("whatsapp:" prefix allowed) or email address
    body: str
    provider_message_id: str = ""
    to_address: str = ""  # email: the To header (may list several addresses)
    case: tuple[str, int] | None = None  # (shipment_id, attempt) from an already verified token


@dataclass(frozen=True)
class RouteDecision:
    shipment_id: str
    attempt: int
    text: str  # what to parse (the reference code and quoted email history removed)
    case_ref: str
    via: str  # reply_to | token | only_case | ref | earlier_message


@dataclass(frozen=True)
class AskWhichCase:
    refs: list[str]  # the customer's open cases, oldest first
    text: str


@dataclass(frozen=True)
class NoOpenCase:
    reason: str = "no_open_case"  # no_open_case | case_closed
    shipment_id: str | None = None
    attempt: int | None = None


def normalise_sender(channel: str, address: str) -> str:
    addr = address.strip()
    if channel == "whatsapp" and addr.lower().startswith("whatsapp:"):
        addr = addr[len("whatsapp:") :]
    if channel == "email":
        m = re.search(r"<([^<>]+)>\s*$", addr)
        addr = (m.group(1) if m else addr).strip().lower()
    return addr


_QUOTE_HEADERS = re.compile(
    r"^(?:on .{0,200}wrote:|-{2,}\s*original message\s*-{2,}|from:\s.+|sent from my .+|.{0,80}님이 작성:|.{0,80}ने लिखा:)\s*$",
    re.IGNORECASE,
)


def strip_quoted_email(text: str) -> str:
    """The customer's new words only: drop quoted history ("> ...", "On ... wrote:") and signatures."""
    out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        s = line.strip()
        if s.startswith(">") or _QUOTE_HEADERS.match(s):
            break
        if s == "--":
            break
        out.append(line)
    return "\n".join(out).strip()


def route_inbound(
    session: Session, msg: InboundMessage, *, inbound_domain: str | None = None, inbound_id: int | None = None
) -> RouteDecision | AskWhichCase | NoOpenCase:
    channel = msg.channel.lower()
    sender = normalise_sender(channel, msg.from_address)
    text = strip_quoted_email(msg.body) if channel == "email" else msg.body.strip()

    if msg.case is not None:
        route = routes.case_route(session, shipment_id=msg.case[0], attempt=msg.case[1])
        if route is None or route.closed_at is not None:
            return NoOpenCase("case_closed", msg.case[0], msg.case[1])
        return RouteDecision(route.shipment_id, route.attempt, text, route.ref, "token")

    if channel == "email":
        for to in msg.to_address.split(","):
            key = routes.parse_reply_to(to, inbound_domain or None)
            if key is None:
                continue
            found = routes.find_by_reply_key(session, key)
            if found is None:
                continue
            if found.closed_at is not None:
                return NoOpenCase("case_closed", found.shipment_id, found.attempt)
            _, rest = extract_ref(text, {found.ref})
            return RouteDecision(found.shipment_id, found.attempt, rest, found.ref, "reply_to")

    if channel == "email":
        cases = routes.find_open_cases(session, email=sender)
    else:
        cases = routes.find_open_cases(session, phone=sender)
    if not cases:
        return NoOpenCase()

    by_ref = {c.ref: c for c in cases}
    ref, rest = extract_ref(text, set(by_ref))
    if ref is not None:
        case = by_ref[ref]
        if not rest.strip():
            # "K7QM" alone answers our "which one?": apply the message that got that question.
            earlier = routes.last_inbound(
                session, from_address=msg.from_address, outcome="ask_which", since=ASK_WHICH_WINDOW, before_id=inbound_id
            )
            if earlier is not None:
                return RouteDecision(case.shipment_id, case.attempt, earlier.body.strip(), ref, "earlier_message")
        return RouteDecision(case.shipment_id, case.attempt, rest, ref, "ref")
    if len(cases) == 1:
        c = cases[0]
        return RouteDecision(c.shipment_id, c.attempt, text, c.ref, "only_case")
    return AskWhichCase([c.ref for c in cases], text)


def reply_input_from_parsed(
    parsed: ParsedReply,
    *,
    attempt: int,
    channel: str,
    received_at: datetime,
    text: str,
    message_id: str | None = None,
    case_ref: str | None = None,
) -> CustomerReplyInput:
    """The Update payload for a parsed message. An action the reason does not allow is sent as no
    action (with its problem), so the workflow answers with a clarification instead of refusing."""
    action = parsed.action.value if parsed.action is not None and parsed.problem_code != "action_not_allowed" else None
    address = None
    if parsed.address:
        address = {"line1": parsed.address}
        if parsed.landmark:
            address["landmark"] = parsed.landmark
    return CustomerReplyInput(
        attempt=attempt,
        channel=channel,
        received_at=received_at.astimezone(UTC).isoformat(),
        kind=parsed.kind,
        action=action,
        requested_date=parsed.requested_date,
        phone=parsed.phone,
        address=address,
        time_hint=parsed.time_hint,
        text=text,
        confidence=parsed.confidence,
        problem_code=parsed.problem_code,
        problem=parsed.problem,
        case_ref=case_ref or parsed.case_ref,
        message_id=message_id,
    )


# ---- the whole inbound path ---------------------------------------------------------------------


class _Handle(Protocol):
    async def query(self, query: str, *args: Any, **kwargs: Any) -> Any: ...
    async def execute_update(self, update: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class InboundOutcome:
    outcome: str  # routed | refused | ask_which | no_open_case | case_closed | duplicate | failed
    shipment_id: str | None = None
    attempt: int | None = None
    result: CustomerReplyResult | None = None  # the workflow's answer when routed
    parsed: ParsedReply | None = None
    refs: list[str] = field(default_factory=list)  # for ask_which
    answer_purpose: str | None = None  # what the webhook should answer when the workflow does not
    detail: str = ""


def case_context(state: ShipmentState | dict[str, Any], attempt: int) -> tuple[NdrCase | None, str, str]:
    """(case, time zone, locale) from the workflow's `state` query result (object or JSON dict)."""
    if isinstance(state, dict):
        cases = state.get("ndr_cases") or []
        profile = state.get("profile") or {}
        tz, locale = profile.get("timezone") or "UTC", profile.get("locale") or "en"
    else:
        cases = state.ndr_cases
        tz = state.profile.timezone if state.profile else "UTC"
        locale = state.profile.locale if state.profile else "en"
    return find_case(cases, attempt), tz, locale


async def handle_inbound(
    *,
    temporal: Any,
    engine: Engine,
    msg: InboundMessage,
    now: datetime | None = None,
    inbound_domain: str = "",
    max_days: int = DEFAULT_MAX_DAYS,
    optout: str | None = None,
) -> InboundOutcome:
    """Log, route, parse and deliver one verified inbound message. Safe to call again for a
    provider's retry: a message already routed is not delivered twice (and the workflow also
    dedupes by message id); one that failed half-way (e.g. Temporal down) is retried.

    `optout` ("opt_out" / "opt_in"): the provider's or the keyword list's verdict on the whole
    message (channels.optout.classify, Twilio's OptOutType). It wins over the parser, so a word the
    carrier network treats as STOP ("CANCEL", a custom keyword) reaches the case as an opt-out,
    never as "4 cancel" or a return."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    now = now or datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as s:
        row, created = routes.record_inbound(
            s,
            channel=msg.channel,
            provider_message_id=msg.provider_message_id,
            from_address=msg.from_address,
            body=msg.body,
            to_address=msg.to_address,
            received_at=now,
        )
        if not created and row.outcome not in ("received", "failed"):
            return InboundOutcome("duplicate", row.shipment_id, row.attempt, detail=f"already {row.outcome}")
        decision = route_inbound(s, msg, inbound_domain=inbound_domain, inbound_id=row.id)
        assert row.id is not None
        if isinstance(decision, AskWhichCase):
            routes.set_inbound_outcome(s, row.id, outcome="ask_which", detail=",".join(decision.refs))
            return InboundOutcome("ask_which", refs=decision.refs, answer_purpose=NOTIFY_WHICH_CASE)
        if isinstance(decision, NoOpenCase):
            routes.set_inbound_outcome(s, row.id, outcome=decision.reason, shipment_id=decision.shipment_id, attempt=decision.attempt)
            purpose = NOTIFY_CASE_CLOSED if decision.reason == "case_closed" else NOTIFY_NO_OPEN_CASE
            return InboundOutcome(decision.reason, decision.shipment_id, decision.attempt, answer_purpose=purpose)

        handle: _Handle = temporal.get_workflow_handle(shipment_workflow_id(decision.shipment_id))
        try:
            state = await handle.query("state", result_type=ShipmentState)
            case, tz, locale = case_context(state, decision.attempt)
            if case is None:
                routes.set_inbound_outcome(s, row.id, outcome="case_closed", shipment_id=decision.shipment_id, attempt=decision.attempt,
                                           detail="the workflow has no such case")
                return InboundOutcome("case_closed", decision.shipment_id, decision.attempt, answer_purpose=NOTIFY_CASE_CLOSED)
            parsed = parse_reply(
                decision.text,
                reason=case.reason,
                allowed_actions=allowed_customer_actions(case.reason),
                now=now,
                tz=tz,
                locale=locale,
                max_days=max_days,
                context_state=case.state,
                channel=msg.channel,
            )
            if optout in ("opt_out", "opt_in"):
                parsed = ParsedReply(kind=optout, keyword=decision.text.strip().upper()[:32] or None, confidence=0.99)
            elif not decision.text.strip():
                # Only the code ("K7QM") and nothing to re-apply: the workflow asks that case's question again.
                parsed = ParsedReply(kind="case_ref", case_ref=decision.case_ref, confidence=0.9)
            inp = reply_input_from_parsed(
                parsed, attempt=decision.attempt, channel=msg.channel, received_at=now, text=decision.text,
                message_id=msg.provider_message_id, case_ref=decision.case_ref,
            )
            result = await handle.execute_update(CUSTOMER_REPLY, inp, result_type=CustomerReplyResult)
        except WorkflowUpdateFailedError as exc:
            why = str(exc.cause) if exc.cause else str(exc)
            routes.set_inbound_outcome(s, row.id, outcome="refused", shipment_id=decision.shipment_id, attempt=decision.attempt, detail=why)
            return InboundOutcome("refused", decision.shipment_id, decision.attempt, answer_purpose=NOTIFY_CASE_CLOSED, detail=why)
        except RPCError as exc:
            routes.set_inbound_outcome(s, row.id, outcome="failed", shipment_id=decision.shipment_id, attempt=decision.attempt,
                                       detail=f"temporal: {exc.status.name}")
            raise
        routes.set_inbound_outcome(s, row.id, outcome="routed", shipment_id=decision.shipment_id, attempt=decision.attempt,
                                   detail=f"{parsed.kind}:{result.outcome}")
        return InboundOutcome("routed", decision.shipment_id, decision.attempt, result=result, parsed=parsed)
