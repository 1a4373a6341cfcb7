"""Inputs, results and state shared by the API (client side), the workflow and the activities.

One dataclass per message, `<Verb>Input` / `<Noun>Result`. Nothing here holds personal data:
phone numbers, emails, names and addresses stay in the store and are looked up by shipment_id
inside activities (ids and search attributes are never encrypted by a payload codec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.events import CarrierEvent

DEFAULT_TASK_QUEUE = "ndrflow"

# Activity names, so the workflow module never imports I/O code (sandbox re-imports it per run).
SYNC_READ_MODEL = "sync_read_model"


@dataclass
class ShipmentProfile:
    """What the workflow needs to decide things: no contact details, only facts about them."""

    shipment_id: str
    merchant_id: str
    carrier: str
    tracking_number: str
    order_id: str = ""
    payment_mode: str = "prepaid"  # prepaid | cod
    order_value: str = "0"
    currency: str = "INR"
    locale: str = "en"
    timezone: str = "UTC"
    has_phone: bool = False
    phone_is_mobile: bool = False
    has_email: bool = False
    whatsapp_opt_in: bool = False
    promised_delivery_date: str | None = None


@dataclass
class RegisterInput:
    profile: ShipmentProfile
    registered_at: str
    # Carrier events that arrived before the registration (kept in the store until now).
    events: list[CarrierEvent] = field(default_factory=list)
    # workflows.shipment_policy.ShipmentPolicy as a dict: the merchant's notify policy, quiet
    # hours, NDR timing and rules, stale limits (workflows cannot read configuration).
    policy: dict[str, Any] | None = None


@dataclass
class CarrierEventsInput:
    events: list[CarrierEvent]
    received_at: str = ""


@dataclass
class TimelineEntry:
    at: str  # when it happened (carrier time for scans, our time otherwise), ISO UTC
    kind: str  # registered | carrier_event | notification | reply | decision | instruction | agent_action | attention
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShipmentState:
    """All workflow state in one place so continue-as-new can carry it over."""

    shipment_id: str
    profile: ShipmentProfile | None = None
    status: str = "created"
    status_at: str | None = None  # carrier time of the scan that set `status`
    last_event_at: str | None = None
    seen_event_keys: list[str] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    ndr_cases: list[dict[str, Any]] = field(default_factory=list)
    needs_attention: bool = False
    attention_reason: str | None = None
    attention_since: str | None = None
    terminal_at: str | None = None  # our time when a terminal status was reached
    late_events: int = 0
    registered_at: str | None = None  # our time
    heard_at: str | None = None  # our time of the last carrier scan (stale-tracking check)
    polled_at: str | None = None  # our time of the last tracking poll
    policy: dict[str, Any] | None = None  # see RegisterInput.policy
    deferred: list[dict[str, Any]] = field(default_factory=list)  # messages waiting for quiet hours to end
    opted_out: list[str] = field(default_factory=list)  # channels the customer opted out of
    snoozed_until: str | None = None
    snoozed_reason: str | None = None
    attention_cleared_at: str | None = None
    agent_action_ids: list[str] = field(default_factory=list)  # applied agent actions (idempotency)


@dataclass
class ShipmentWorkflowInput:
    shipment_id: str
    # Workflows cannot read configuration, so limits travel with the input.
    completion_grace_seconds: float = 72 * 3600
    max_history_events: int = 2000
    notify_task_queue: str = ""  # provider sends run here (rate-limited worker); "" = the workflow's queue
    # Send inside the deciding workflow task (a local activity) while the shared send budget has
    # room, else on notify_task_queue (docs/performance.md). False: always the queue.
    notify_inline: bool = True
    # The carrier instruction likewise: a local activity first, the regular activity on failure.
    instruct_inline: bool = True
    state: ShipmentState | None = None  # set when continuing as new


@dataclass
class SyncReadModelInput:
    """Idempotent: sets the read-model row to these values (the workflow sends them in order)."""

    shipment_id: str
    status: str
    last_event_at: str | None
    ndr_state: str | None
    needs_attention: bool
    attention_reason: str | None
    closed: bool = False


# ---- notifications (issue 3) -------------------------------------------------------------
SEND_NOTIFICATION = "send_notification"


@dataclass
class SendNotificationInput:
    """One message to one customer on one channel. The exactly-once key is
    f"{shipment_id}:{purpose}:{occurrence}:{channel}" (see notification_key)."""

    shipment_id: str
    purpose: str  # "picked_up", "out_for_delivery", "delivered", ..., "ndr_ask", "ndr_reminder", "ndr_confirm", "ndr_clarify"
    occurrence: str  # which repeat of the purpose: the milestone's event key, NDR attempt + reminder index, ...
    channel: str  # "sms" | "whatsapp" | "email"
    context: dict[str, Any] = field(default_factory=dict)  # template variables without personal data

    @property
    def key(self) -> str:
        return notification_key(self.shipment_id, self.purpose, self.occurrence, self.channel)


def notification_key(shipment_id: str, purpose: str, occurrence: str, channel: str) -> str:
    return f"{shipment_id}:{purpose}:{occurrence}:{channel}"


@dataclass
class SendNotificationResult:
    key: str
    channel: str
    status: str  # "sent" | "skipped" | "failed"
    provider_message_id: str | None = None
    error_code: str | None = None
    reason: str | None = None
    provider: str | None = None  # twilio_sms | twilio_whatsapp | sendgrid_email | outbox


# The same send as a local activity on the workflow's worker, inside the workflow task that
# decided it (activities/notify.py `send_notification_inline`; why: docs/performance.md).
SEND_NOTIFICATION_INLINE = "send_notification_inline"


@dataclass
class InlineSendInput:
    send: SendNotificationInput
    # The shared provider budget (store/send_budget.py): the notify task queue's name.
    budget: str
    # A read-model write due in the same workflow task, done in the same local activity (one
    # history event instead of two). Written before the send, whatever the send's outcome.
    sync: SyncReadModelInput | None = None
    # Reply-route writes of the same workflow task (opened before the message that may name them).
    open_routes: list[OpenReplyRouteInput] = field(default_factory=list)
    close_routes: list[CloseReplyRouteInput] = field(default_factory=list)


@dataclass
class InlineSendResult:
    # None: not sent here (no budget, an earlier attempt may be in flight, provider busy); the
    # workflow sends it on the notify task queue, through the same exactly-once row.
    result: SendNotificationResult | None
    why_not: str = ""
    synced: bool = False
    routes_written: bool = False
    routes: list[OpenReplyRouteResult] = field(default_factory=list)  # one per open_routes entry


@dataclass
class NotificationStatusInput:
    """A provider's delivery callback, forwarded to the workflow when it matters (failures)."""

    key: str
    channel: str
    status: str  # "delivered" | "failed" | "undelivered" | "bounce" | "dropped" | ...
    error_code: str | None = None


# ---- NDR (issue 5) ------------------------------------------------------------------------
# The customer's answer to a failed delivery, as a Temporal Update named CUSTOMER_REPLY on the
# shipment workflow. The API parses the words (domain.reply_parser) and routes them to the case
# (api.reply_routing); the workflow's validator (workflows.ndr_policy.validate_reply) refuses
# replies to closed cases and actions the reason does not allow before anything reaches history.
CUSTOMER_REPLY = "customer_reply"


@dataclass
class CustomerReplyInput:
    attempt: int  # the NDR attempt (case) this answers
    channel: str  # "sms" | "whatsapp" | "email" | "web"
    received_at: str  # ISO-8601 UTC, when we received it
    kind: str  # domain.reply_parser.KINDS: choice | date | address | phone | rto | opt_out | opt_in | dispute | case_ref | unclear
    action: str | None = None  # NdrAction value; None for opt-outs, unclear replies and not-allowed actions
    requested_date: str | None = None  # YYYY-MM-DD
    phone: str | None = None  # E.164
    address: dict[str, Any] | None = None  # {"line1", "landmark", "postal_code", ...}
    time_hint: str | None = None  # "after 17:00", "morning", ... (goes to the carrier as a comment)
    text: str = ""  # the customer's words: timeline and fake-attempt evidence (encrypted by the codec)
    confidence: float = 1.0
    problem_code: str | None = None  # date_in_past | date_too_soon | date_too_far | action_not_allowed
    problem: str | None = None
    case_ref: str | None = None
    message_id: str | None = None  # provider message id or page submission id: a retried webhook is applied once


@dataclass
class CustomerReplyResult:
    accepted: bool
    outcome: str  # workflows.ndr_policy.OUTCOMES
    state: str  # the case state afterwards
    notify: str | None = None  # purpose of the answer the workflow sends the customer (None: none)
    action: str | None = None  # the decided action, when the reply decided the case
    requested_date: str | None = None
    detail: str = ""
    duplicate: bool = False  # the same message_id was applied before; nothing changed


# Reply routes: the workflow opens one when it asks the customer and closes it when the case
# leaves the waiting states; the activity looks the contact details up in the store itself.
OPEN_REPLY_ROUTE = "open_reply_route"
CLOSE_REPLY_ROUTE = "close_reply_route"


@dataclass
class OpenReplyRouteInput:
    shipment_id: str
    attempt: int


@dataclass
class OpenReplyRouteResult:
    ref: str  # the case's short reference code (NdrCase.ref; goes into messages: "reply K7QM 2")
    reply_to: str = ""  # per-case inbound email address, "" when no inbound domain is configured


@dataclass
class CloseReplyRouteInput:
    shipment_id: str
    attempt: int | None = None  # None: every open route of the shipment (terminal milestone)

# Signal name the provider webhooks use for NotificationStatusInput (api/routes/provider_webhooks.py).
NOTIFICATION_STATUS_SIGNAL = "notification_status"
# Activity returning the merchant's workflows.notify_policy.MerchantPolicy (quiet hours resolved).
GET_NOTIFY_POLICY = "get_notify_policy"


# ---- support agents (issue 6) --------------------------------------------------------------
AGENT_ACTION = "agent_action"
AGENT_ACTIONS = ("reattempt", "reschedule", "update_address", "rto", "resend_notification", "note", "snooze", "resolve")


@dataclass
class AgentActionInput:
    """An agent's action on a shipment, sent as a Temporal Update (validated, audited, in the timeline)."""

    action: str  # one of AGENT_ACTIONS
    agent: str  # who: the agent key's name or id
    reason: str = ""  # why (required for everything but note, where it is the note text)
    requested_date: str | None = None  # YYYY-MM-DD for reschedule
    address: dict[str, Any] | None = None  # for update_address
    phone: str | None = None  # E.164, for update_address (phone change)
    until: str | None = None  # ISO UTC, for snooze
    purpose: str | None = None  # for resend_notification (default: the latest message's purpose)
    action_id: str = ""  # idempotency key from the API: a retried request applies once
    requested_at: str = ""  # ISO UTC


@dataclass
class AgentActionResult:
    accepted: bool
    detail: str
    needs_attention: bool = False
    attention_reason: str | None = None
    duplicate: bool = False


# ApplicationError type for an agent action the validator refuses because of its input (missing
# or malformed field, date outside the carrier's window): the API answers 422. Any other refusal
# (case closed, nothing to resolve, ...) is answered 409. Both carry the validator's message.
INVALID_AGENT_ACTION = "InvalidAgentAction"

# What an agent's queue is filtered on: the values the workflow puts in the AttentionReason search
# attribute (and in RecordAttentionInput.reason). `GET /v1/cases?reason=` refuses anything else;
# the dashboard counts each. The NDR policy (workflows/ndr_policy.py) raises the ones it owns.
ATTENTION_REASONS = (
    "no_tracking_update",  # no carrier scan for too long at the current milestone (detail: which, how long)
    "reply_window_passed",  # the customer's reply window closed without a decision
    "carrier_rejected",  # the carrier refused the instruction (4xx)
    "carrier_unreachable",  # the instruction failed after every retry (5xx, timeouts)
    "carrier_did_not_act",  # no out-for-delivery / delivered scan by the agreed date + grace
    "channels_failed",  # every channel failed to reach the customer
    "unparsed_replies",  # two replies the parser could not understand
    "suspected_fake_attempt",  # "I was home, nobody came" on a customer_unavailable attempt
    "customer_disputes_attempt",  # the customer disputes an attempt on another reason
    "ndr_rule_review",  # a merchant rule asked a person to review the decision
    "activity_failing",  # an activity keeps failing (store, provider, carrier adapter)
)

RECORD_ATTENTION = "record_attention"


@dataclass
class RecordAttentionInput:
    """The workflow raised or cleared its attention flag; the activity mirrors it into the store
    (attention_records). Idempotent: a raise is keyed by (shipment_id, reason, at), a clear closes
    whatever is open at `at`, so retries and replays change nothing twice."""

    shipment_id: str
    reason: str  # one of ATTENTION_REASONS (when clearing: the reason being cleared, "" for any)
    raised: bool  # True: raised; False: cleared (resolved by an agent, or the cause went away)
    at: str  # ISO UTC, workflow.now() when it was raised / cleared
    detail: str = ""  # what the agent needs to know, no personal data (e.g. "in_transit for 73 h")
    by: str = ""  # who cleared it: "agent:<name>", "workflow" (cause gone), "" on raise
