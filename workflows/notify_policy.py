"""What to tell the customer, on which channel, and when: pure decisions the workflow calls.

Imports nothing from temporalio and does no I/O (the workflow sandbox re-imports it, and the
unit tests call it directly). Configuration is parsed here from plain dicts; reading the file or
environment happens in channels/settings.py, outside the workflow.

The shapes are dataclasses of str/bool/list/dict so they travel in workflow inputs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHANNELS = ("whatsapp", "sms", "email")
PHONE_CHANNELS = frozenset({"sms", "whatsapp"})
# Email is read when the customer chooses; only phone channels wait for the quiet hours to end.
DEFERRABLE_CHANNELS = PHONE_CHANNELS

# Milestones that notify by default. Every in-transit scan does not: customers call that spam.
MILESTONE_PURPOSES = (
    "picked_up",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "on_hold",
    "rto_initiated",
)
# Every message of the NDR conversation: what workflows/ndr_policy.py asks for (NOTIFY_*) and what
# the API answers itself (api/reply_routing.py). Each has templates in every channel and locale
# (templates.NDR_PURPOSES; a test keeps the three lists equal).
NDR_PURPOSES = (
    "ndr_ask",
    "ndr_reminder",
    "ndr_ask_date",
    "ndr_ask_details",
    "ndr_confirm",
    "ndr_clarify",
    "ndr_escalated",
    "ndr_dispute_ack",
    "ndr_already_decided",
    "ndr_which_case",
    "ndr_no_open_case",
    "ndr_case_closed",
)
# An NDR purpose a merchant's policy does not name follows the merchant's rule for the question
# itself: a merchant who asks only by SMS gets the follow-ups by SMS too.
NDR_RULE_FALLBACK = "ndr_ask"
# Milestones a merchant may opt in to on top of the defaults.
OPTIONAL_MILESTONE_PURPOSES = (
    "in_transit",
    "ready_for_pickup",
    "rto_delivered",
    "pickup_failed",
    "cancelled",
    "lost",
    "damaged",
)
KNOWN_PURPOSES = frozenset(MILESTONE_PURPOSES + NDR_PURPOSES + OPTIONAL_MILESTONE_PURPOSES)
TERMINAL_STATUSES = frozenset({"delivered", "rto_delivered", "cancelled", "lost", "damaged"})

# Outcomes after which the workflow tries the next channel (send result or delivery callback).
FAILURE_STATUSES = frozenset({"failed", "skipped", "undelivered", "bounce", "dropped"})

DEFAULT_QUIET_HOURS = "21:00-09:00"


class ContactFacts(Protocol):
    """What channels_for needs; workflows.messages.ShipmentProfile has these attributes."""

    has_phone: bool
    phone_is_mobile: bool
    has_email: bool
    whatsapp_opt_in: bool


@dataclass
class PurposeRule:
    # Channels in order of preference. An empty list turns the purpose off.
    channels: list[str] = field(default_factory=list)
    # False: send on the first available channel and move to the next one only on failure.
    # True: send on every available channel at once (e.g. an emailed receipt plus an SMS).
    fan_out: bool = False


def _chain() -> PurposeRule:
    return PurposeRule(channels=["whatsapp", "sms", "email"])


def default_rules() -> dict[str, PurposeRule]:
    return {p: _chain() for p in MILESTONE_PURPOSES + NDR_PURPOSES}


@dataclass
class MerchantPolicy:
    merchant_id: str = "*"
    merchant_name: str = ""  # shown in messages; empty = the merchant id
    default_region: str = "IN"  # for phone numbers written without +<country>
    # None = the global NDRFLOW_QUIET_HOURS; "" = no quiet hours for this merchant.
    quiet_hours: str | None = None
    rules: dict[str, PurposeRule] = field(default_factory=default_rules)
    # Try the next channel once the chosen one fails (send error or failure callback).
    fallback: bool = True
    # Tracking link; may use {tracking_number}, {shipment_id}, {order_id}, {carrier}. "" = ours.
    tracking_url: str = ""


@dataclass
class NotifyPlan:
    purpose: str
    order: list[str]  # every usable channel, in the merchant's order of preference
    send_now: list[str]  # the first channel, or all of them when the rule fans out
    fallback: bool


# ---- configuration -----------------------------------------------------------------------
def _rule_from(value: Any, purpose: str) -> PurposeRule:
    if isinstance(value, PurposeRule):
        return value
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        channels, fan_out = list(value), False
    elif isinstance(value, Mapping):
        channels = list(value.get("channels", []))
        fan_out = bool(value.get("fan_out", False))
    else:
        raise ValueError(f"notify.{purpose}: expected a list of channels or {{channels, fan_out}}")
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise ValueError(
            f"notify.{purpose}: unknown channel(s) {', '.join(map(str, bad))} (use {', '.join(CHANNELS)})"
        )
    if len(set(channels)) != len(channels):
        raise ValueError(f"notify.{purpose}: a channel is listed twice")
    return PurposeRule(channels=channels, fan_out=fan_out)


def policy_from_dict(
    data: Mapping[str, Any], merchant_id: str = "*", base: MerchantPolicy | None = None
) -> MerchantPolicy:
    """Merge a merchant's configuration over `base` (default: built-in defaults).

    {"merchant_name": "Acme", "default_region": "IN", "quiet_hours": "22:00-08:00",
     "fallback": true, "tracking_url": "https://acme.in/track/{tracking_number}",
     "notify": {"picked_up": ["sms"], "in_transit": [], "delivered": {"channels": ["email", "sms"], "fan_out": true}}}
    """
    base = base or MerchantPolicy()
    unknown = set(data) - {
        "merchant_name",
        "default_region",
        "quiet_hours",
        "fallback",
        "tracking_url",
        "notify",
    }
    if unknown:
        raise ValueError(f"merchant policy {merchant_id!r}: unknown key(s) {', '.join(sorted(unknown))}")
    rules = {k: PurposeRule(list(v.channels), v.fan_out) for k, v in base.rules.items()}
    given = dict(data.get("notify") or {})
    for purpose, value in given.items():
        if purpose not in KNOWN_PURPOSES:
            raise ValueError(f"merchant policy {merchant_id!r}: unknown purpose {purpose!r}")
        rules[purpose] = _rule_from(value, purpose)
    asked = base.rules.get(NDR_RULE_FALLBACK)
    if NDR_RULE_FALLBACK in given:
        # The follow-ups of the conversation go where the question went, unless configured
        # themselves (or set apart from the question in the base policy).
        for purpose in NDR_PURPOSES:
            if purpose in given or purpose == NDR_RULE_FALLBACK:
                continue
            if asked is None or base.rules.get(purpose) in (None, asked):
                rule = rules[NDR_RULE_FALLBACK]
                rules[purpose] = PurposeRule(list(rule.channels), rule.fan_out)
    quiet = data.get("quiet_hours", base.quiet_hours)
    if quiet:
        parse_quiet_hours(quiet)  # fail at load time, not at 9 p.m.
    return replace(
        base,
        merchant_id=merchant_id,
        merchant_name=str(data.get("merchant_name", base.merchant_name)),
        default_region=str(data.get("default_region", base.default_region)).upper(),
        quiet_hours=quiet,
        fallback=bool(data.get("fallback", base.fallback)),
        tracking_url=str(data.get("tracking_url", base.tracking_url)),
        rules=rules,
    )


@dataclass
class PolicyBook:
    default: MerchantPolicy = field(default_factory=MerchantPolicy)
    merchants: dict[str, MerchantPolicy] = field(default_factory=dict)

    def policy_for(self, merchant_id: str) -> MerchantPolicy:
        found = self.merchants.get(merchant_id)
        if found is not None:
            return found
        return replace(self.default, merchant_id=merchant_id)


def policy_book_from_dict(data: Mapping[str, Any]) -> PolicyBook:
    """{"default": {...}, "merchants": {"acme": {...}}}; merchants inherit from "default"."""
    unknown = set(data) - {"default", "merchants"}
    if unknown:
        raise ValueError(
            f"notify policy: unknown top-level key(s) {', '.join(sorted(unknown))} (use default, merchants)"
        )
    default = policy_from_dict(data.get("default") or {}, "*")
    merchants = {
        str(mid): policy_from_dict(conf or {}, str(mid), base=default)
        for mid, conf in dict(data.get("merchants") or {}).items()
    }
    return PolicyBook(default=default, merchants=merchants)


# ---- what and where ----------------------------------------------------------------------
def purpose_for_milestone(policy: MerchantPolicy, milestone: str) -> str | None:
    """The message purpose a new milestone triggers, or None when the merchant does not notify it."""
    rule = policy.rules.get(milestone)
    if rule is None or not rule.channels or milestone in NDR_PURPOSES:
        return None
    return milestone


def _rule(policy: MerchantPolicy, purpose: str) -> PurposeRule | None:
    rule = policy.rules.get(purpose)
    if rule is None and purpose in NDR_PURPOSES:
        # e.g. a policy snapshot taken before a purpose existed, or a merchant config naming ndr_ask only
        rule = policy.rules.get(NDR_RULE_FALLBACK)
    return rule


def channel_usable(channel: str, profile: ContactFacts) -> bool:
    if channel == "email":
        return bool(profile.has_email)
    if channel == "sms":
        return bool(profile.has_phone and profile.phone_is_mobile)  # never text a landline
    if channel == "whatsapp":
        return bool(profile.has_phone and profile.phone_is_mobile and profile.whatsapp_opt_in)
    return False


def channels_for(
    policy: MerchantPolicy, purpose: str, profile: ContactFacts, exclude: Iterable[str] = ()
) -> list[str]:
    """Usable channels for `purpose`, in the merchant's order of preference.

    `exclude`: channels known not to work for this customer (opted out, failed before)."""
    rule = _rule(policy, purpose)
    if rule is None:
        return []
    skip = set(exclude)
    return [c for c in rule.channels if c not in skip and channel_usable(c, profile)]


def plan(
    policy: MerchantPolicy, purpose: str, profile: ContactFacts, exclude: Iterable[str] = ()
) -> NotifyPlan:
    order = channels_for(policy, purpose, profile, exclude)
    rule = _rule(policy, purpose) or PurposeRule()
    send_now = list(order) if rule.fan_out else order[:1]
    # Fan-out already uses every channel: nothing left to fall back to.
    return NotifyPlan(
        purpose=purpose, order=order, send_now=send_now, fallback=policy.fallback and not rule.fan_out
    )


def next_fallback_channel(order: Iterable[str], tried: Iterable[str]) -> str | None:
    """The next channel in `order` not tried yet (each channel at most once per message)."""
    done = set(tried)
    for channel in order:
        if channel not in done:
            return channel
    return None


def is_failure(status: str) -> bool:
    """Whether a send result or delivery callback status means "try the next channel"."""
    return status in FAILURE_STATUSES


# ---- quiet hours -------------------------------------------------------------------------
def parse_quiet_hours(spec: str | None) -> tuple[time, time] | None:
    """ "21:00-09:00" -> (21:00, 09:00); "" / None / "off" / equal ends -> None (no quiet hours)."""
    if spec is None:
        return None
    text = spec.strip()
    if text.lower() in ("", "off", "none"):
        return None
    try:
        start_s, end_s = (p.strip() for p in text.split("-"))
        start = time.fromisoformat(start_s if len(start_s) > 2 else f"{start_s}:00")
        end = time.fromisoformat(end_s if len(end_s) > 2 else f"{end_s}:00")
    except ValueError:
        raise ValueError(f"quiet hours {spec!r}: expected HH:MM-HH:MM, e.g. 21:00-09:00") from None
    if start == end:
        return None
    return start, end


def effective_quiet_hours(
    policy: MerchantPolicy, global_default: str | None = DEFAULT_QUIET_HOURS
) -> str | None:
    return global_default if policy.quiet_hours is None else policy.quiet_hours


def _zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_hours_deadline(
    now_utc: datetime, tz: str | None, quiet: str | None = DEFAULT_QUIET_HOURS
) -> datetime | None:
    """None when a message may go now; otherwise the UTC instant the quiet window ends in the
    recipient's zone (the workflow sleeps until then with a durable timer).

    Windows may cross midnight ("21:00-09:00": 23:30 and 02:00 both wait for 09:00)."""
    window = parse_quiet_hours(quiet)
    if window is None:
        return None
    if now_utc.tzinfo is None:
        raise ValueError("now_utc must be timezone-aware")
    start, end = window
    zone = _zone(tz)
    local = now_utc.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    crosses_midnight = start > end
    if crosses_midnight:
        quiet_now = t >= start or t < end
    else:
        quiet_now = start <= t < end
    if not quiet_now:
        return None
    day = local.date()
    if crosses_midnight and t >= start:
        day += timedelta(days=1)  # evening: the window ends tomorrow morning
    opens = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
    if opens <= now_utc:  # DST gap edge: never return a time in the past
        opens = now_utc + timedelta(minutes=1)
    return opens


def send_after(
    now_utc: datetime, channel: str, tz: str | None, quiet: str | None = DEFAULT_QUIET_HOURS
) -> datetime | None:
    """quiet_hours_deadline for phone channels; email is never deferred."""
    if channel not in DEFERRABLE_CHANNELS:
        return None
    return quiet_hours_deadline(now_utc, tz, quiet)


# ---- after a deferral --------------------------------------------------------------------
_NDR_ASKING = frozenset(
    {"ndr_ask", "ndr_reminder", "ndr_ask_date", "ndr_ask_details", "ndr_clarify", "ndr_which_case"}
)
_NDR_DECIDED = frozenset({"ndr_confirm", "ndr_already_decided"})


def still_true(purpose: str, current_status: str, notified: Iterable[str] = MILESTONE_PURPOSES) -> bool:
    """Whether a message written for `purpose` still describes the shipment now.

    A milestone message goes stale once the shipment has reached another milestone the
    customer is told about, or a terminal one: "out for delivery" is wrong after "delivered".
    Silent progress (in_transit after picked_up) keeps it true. Questions about a failed
    delivery are stale once the shipment moved on (delivered, out again, returning)."""
    if purpose in _NDR_ASKING:
        return current_status in ("delivery_failed", "on_hold")
    if purpose in _NDR_DECIDED:
        return current_status not in TERMINAL_STATUSES and not current_status.startswith("rto_")
    if purpose not in MILESTONE_PURPOSES and purpose not in OPTIONAL_MILESTONE_PURPOSES:
        return True
    if current_status == purpose:
        return True
    notified_set = set(notified)
    return current_status not in notified_set and current_status not in TERMINAL_STATUSES


def after_deferral(
    pending: Iterable[str], current_status: str, notified: Iterable[str] = MILESTONE_PURPOSES
) -> list[str]:
    """Of the purposes deferred overnight (oldest first), those still worth sending, each once:
    a shipment delivered overnight gets "delivered", not the stale "out for delivery" too."""
    notified_list = list(notified)
    out: list[str] = []
    for purpose in pending:
        if purpose not in out and still_true(purpose, current_status, notified_list):
            out.append(purpose)
    return out
